package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds"

	"github.com/sluice-dev/sluice/wire"
)

// callTimeout bounds one request through a data plane.
const callTimeout = 10 * time.Second

// dataPlane sends one request to a host, optionally with a Knative-Serving-Tag header, and returns
// which backend answered (its TARGET).
type dataPlane interface {
	call(ctx context.Context, host, tag string) (string, error)
}

// ---- gRPC-Go proxyless xDS client ----

// grpcPlane dials xds:///HOST with gRPC-Go's xDS resolver, configured by a bootstrap of its own
// (no process-wide environment), one channel per host, and calls grpc.testing.TestService/UnaryCall.
type grpcPlane struct {
	t       *testing.T
	xdsAddr string

	mu      sync.Mutex
	clients map[string]testgrpc.TestServiceClient
}

func newGRPCPlane(t *testing.T, xdsAddr string) *grpcPlane {
	return &grpcPlane{t: t, xdsAddr: xdsAddr, clients: map[string]testgrpc.TestServiceClient{}}
}

// grpcBootstrap is the xDS bootstrap of one client: sluice's xDS address, insecure, xDS v3.
func grpcBootstrap(xdsAddr, nodeID string) []byte {
	b, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      xdsAddr,
			"channel_creds":   []any{map[string]any{"type": "insecure"}},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{
			"id":      nodeID,
			"cluster": "sluice-e2e",
		},
	})
	if err != nil {
		panic(err)
	}
	return b
}

func (g *grpcPlane) client(host string) (testgrpc.TestServiceClient, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.clients[host]; ok {
		return c, nil
	}
	nodeID := fmt.Sprintf("e2e-grpc/%s/%s", g.t.Name(), host)
	builder, err := xds.NewXDSResolverWithConfigForTesting(grpcBootstrap(g.xdsAddr, nodeID))
	if err != nil {
		return nil, fmt.Errorf("xds resolver: %w", err)
	}
	conn, err := grpc.NewClient("xds:///"+host,
		grpc.WithResolvers(builder),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial xds:///%s: %w", host, err)
	}
	g.t.Cleanup(func() { conn.Close() })
	c := testgrpc.NewTestServiceClient(conn)
	g.clients[host] = c
	return c, nil
}

func (g *grpcPlane) call(ctx context.Context, host, tag string) (string, error) {
	c, err := g.client(host)
	if err != nil {
		return "", err
	}
	if tag != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, wire.HeaderTagLower, tag)
	}
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{FillServerId: true})
	if err != nil {
		return "", err
	}
	return resp.GetServerId(), nil
}

// ---- Envoy over HTTP ----

// envoyPlane sends HTTP/1.1 requests to an Envoy listener with the service's Host header.
type envoyPlane struct {
	addr   string
	client *http.Client
}

func (e *envoyPlane) call(ctx context.Context, host, tag string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.addr+"/", nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	if tag != "" {
		req.Header.Set(wire.HeaderTag, tag)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d from envoy for %s: %q", resp.StatusCode, host, body)
	}
	s := string(body)
	if !strings.HasPrefix(s, "Hello ") || !strings.HasSuffix(s, "!\n") {
		return "", fmt.Errorf("unexpected body for %s: %q", host, s)
	}
	return strings.TrimSuffix(strings.TrimPrefix(s, "Hello "), "!\n"), nil
}

// ---- measuring ----

// counts is how many requests each backend answered.
type counts map[string]int

func (c counts) total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

func (c counts) String() string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%d", k, c[k])
	}
	return b.String()
}

// measure sends n sequential requests and fails the test on any failed request.
func measure(t *testing.T, dp dataPlane, host, tag string, n int) counts {
	t.Helper()
	got := counts{}
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		id, err := dp.call(ctx, host, tag)
		cancel()
		if err != nil {
			t.Fatalf("request %d of %d to %s (tag %q) failed after %s: %v", i+1, n, host, tag, got, err)
		}
		got[id]++
	}
	return got
}

// waitAnswers waits until host (with tag) answers at all, and then only with want for n requests in a row.
func waitAnswers(t *testing.T, dp dataPlane, host, tag, want string, n int) {
	t.Helper()
	streak := 0
	waitFor(t, waitTimeout, fmt.Sprintf("%d answers in a row from %s for %s (tag %q)", n, want, host, tag), func() (bool, string) {
		for streak < n {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			id, err := dp.call(ctx, host, tag)
			cancel()
			if err != nil {
				streak = 0
				return false, err.Error()
			}
			if id != want {
				streak = 0
				return false, "answered by " + id
			}
			streak++
		}
		return true, ""
	})
}

// loadLoop keeps requests flowing to one host in the background so that a change can be shown to
// happen without a single failed request. It is stopped by the test (and at the latest by its
// cleanup or maxLoad).
type loadLoop struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	ok        int
	byID      counts
	lastID    string
	streak    int // consecutive answers from lastID
	failures  int
	firstErrs []string
}

// maxLoad bounds a background load loop even if a test forgets to stop it; loadPause is each
// worker's pause between requests.
const (
	maxLoad   = 5 * time.Minute
	loadPause = 2 * time.Millisecond
)

func startLoad(t *testing.T, dp dataPlane, host string, workers int) *loadLoop {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), maxLoad)
	l := &loadLoop{cancel: cancel, byID: counts{}}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				cctx, ccancel := context.WithTimeout(ctx, callTimeout)
				id, err := dp.call(cctx, host, "")
				ccancel()
				if ctx.Err() != nil {
					return // stopped mid-request: not a failure of the data plane
				}
				l.record(id, err)
				// Pace the loop: enough requests to catch a gap, without starving the
				// processes under test of CPU.
				select {
				case <-ctx.Done():
				case <-time.After(loadPause):
				}
			}
		}()
	}
	t.Cleanup(l.stop)
	return l
}

func (l *loadLoop) record(id string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failures++
		if len(l.firstErrs) < 5 {
			l.firstErrs = append(l.firstErrs, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
		}
		return
	}
	l.ok++
	l.byID[id]++
	if id == l.lastID {
		l.streak++
	} else {
		l.lastID, l.streak = id, 1
	}
}

// stop ends the loop and waits for its workers; idempotent.
func (l *loadLoop) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *loadLoop) succeeded() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok
}

// waitStreak waits until the last n answers all came from want.
func (l *loadLoop) waitStreak(t *testing.T, want string, n int) {
	t.Helper()
	waitFor(t, waitTimeout, fmt.Sprintf("%d answers in a row from %s", n, want), func() (bool, string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.lastID == want && l.streak >= n, fmt.Sprintf("last %s x%d, total %s, %d failures", l.lastID, l.streak, l.byID, l.failures)
	})
}

// waitMore waits until n more requests have succeeded.
func (l *loadLoop) waitMore(t *testing.T, n int) {
	t.Helper()
	target := l.succeeded() + n
	waitFor(t, waitTimeout, fmt.Sprintf("%d more successful requests", n), func() (bool, string) {
		got := l.succeeded()
		return got >= target, fmt.Sprintf("%d of %d", got, target)
	})
}

// requireNoFailures stops the loop and fails the test if any request failed.
func (l *loadLoop) requireNoFailures(t *testing.T) {
	t.Helper()
	l.stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failures > 0 {
		t.Errorf("%d of %d background requests failed; first errors:\n%s", l.failures, l.failures+l.ok, strings.Join(l.firstErrs, "\n"))
	}
	t.Logf("background load: %d requests, all answered (%s)", l.ok, l.byID)
}

// callOnce is one bounded request.
func callOnce(dp dataPlane, host, tag string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return dp.call(ctx, host, tag)
}
