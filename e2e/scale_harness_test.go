package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/sluice-dev/sluice/wire"
)

// Scale-from-zero tests run sluice with the shortest windows Knative allows, so that a revision
// goes idle → zero in about stableWindow + grace and a decision follows load within seconds.
const (
	scaleStableWindow = 6 * time.Second
	// scaleWait bounds a wait for the autoscaler: several stable windows and cold starts of a
	// -race build on a busy 2-core machine. A deadline, not an expectation.
	scaleWait = 90 * time.Second
)

// scaleEnv is sluice serving one local, autoscaled revision.
type scaleEnv struct {
	s *sluiceServer
	// activatorAddr is where the activator listens (the in-process one, or a standalone one).
	activatorAddr string
}

// startScaleSluice starts `sluice serve` with the test autoscaler flags and its in-process
// activator on a free port.
func startScaleSluice(t *testing.T, extra ...string) *scaleEnv {
	t.Helper()
	act := loopback(freePort(t))
	flags := append(append(scaleFlags(), "--activator-addr", act), extra...)
	return &scaleEnv{s: startSluice(t, flags...), activatorAddr: act}
}

// scaleFlags are serve's autoscaler flags for these tests, plus --log-level from
// SLUICE_E2E_LOG_LEVEL (debug shows every scale decision in the log a failed test prints).
func scaleFlags() []string {
	flags := []string{
		"--stable-window", scaleStableWindow.String(),
		"--scale-to-zero-grace-period", "1s",
		"--autoscaler-tick-interval", "1s",
	}
	if lvl := os.Getenv("SLUICE_E2E_LOG_LEVEL"); lvl != "" {
		flags = append(flags, "--log-level", lvl)
	}
	return flags
}

// scaledApp is the helloworld Service "hello", run by sluice as local processes.
type scaledApp struct {
	target       string
	delay        time.Duration     // DELAY: how long each request takes
	startupDelay time.Duration     // STARTUP_DELAY: how long the process waits before it listens
	annotations  map[string]string // autoscaling.knative.dev/ keys without the prefix
}

// scaledRevision is the revision of the first (and only) template of scaledApp.
const scaledRevision = "hello-00001"

func (a scaledApp) yaml() string {
	keys := make([]string, 0, len(a.annotations))
	for k := range a.annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ann strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&ann, "        autoscaling.knative.dev/%s: %q\n", k, a.annotations[k])
	}
	env := func(name string, d time.Duration) string {
		if d == 0 {
			return ""
		}
		return fmt.Sprintf("            - name: %s\n              value: %q\n", name, d.String())
	}
	return fmt.Sprintf(`# helloworld run by sluice as local processes, scaled by its KPA autoscaler.
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
  namespace: default
spec:
  template:
    metadata:
      annotations:
%s    spec:
      containers:
        - command: [%q]
          ports:
            - name: h2c
              containerPort: 8080
          env:
            - name: TARGET
              value: %q
            - name: HOST
              value: "127.0.0.1"
%s%s`, ann.String(), binaries.helloworld, a.target, env("DELAY", a.delay), env("STARTUP_DELAY", a.startupDelay))
}

// revScale is a revision's scale as the API reports it.
type revScale struct {
	Desired, Actual, Ready int32
	Mode, Reason           string
	Restarts               int32
	LastCrash              string
	Known                  bool // the autoscaler reports a scale for the revision
}

func (r revScale) String() string {
	if !r.Known {
		return "no scale reported"
	}
	return fmt.Sprintf("desired=%d actual=%d ready=%d restarts=%d mode=%s reason=%q lastCrash=%q", r.Desired, r.Actual, r.Ready, r.Restarts, r.Mode, r.Reason, r.LastCrash)
}

// revisionScale reads the revision from the API (not the CLI: it is polled).
func (e *scaleEnv) revisionScale(name string) (revScale, error) {
	code, body, err := httpGet(e.s.serverURL() + "/api/v1/namespaces/default/revisions/" + name)
	if err != nil {
		return revScale{}, err
	}
	if code != http.StatusOK {
		return revScale{}, fmt.Errorf("GET revision %s: HTTP %d: %s", name, code, body)
	}
	var rev struct {
		Status struct {
			DesiredReplicas *int32 `json:"desiredReplicas"`
			ActualReplicas  *int32 `json:"actualReplicas"`
			Scale           *struct {
				ReadyReplicas int32  `json:"readyReplicas"`
				Mode          string `json:"mode"`
				Reason        string `json:"reason"`
				Restarts      int32  `json:"restarts"`
				LastCrash     string `json:"lastCrash"`
			} `json:"scale"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(body), &rev); err != nil {
		return revScale{}, fmt.Errorf("decode revision %s: %w", name, err)
	}
	st := rev.Status
	if st.Scale == nil {
		return revScale{}, nil
	}
	out := revScale{Ready: st.Scale.ReadyReplicas, Mode: st.Scale.Mode, Reason: st.Scale.Reason,
		Restarts: st.Scale.Restarts, LastCrash: st.Scale.LastCrash, Known: true}
	if st.DesiredReplicas != nil {
		out.Desired = *st.DesiredReplicas
	}
	if st.ActualReplicas != nil {
		out.Actual = *st.ActualReplicas
	}
	return out, nil
}

// waitScale waits until the revision's scale satisfies ok and returns it.
func (e *scaleEnv) waitScale(t *testing.T, name, what string, ok func(revScale) bool) revScale {
	t.Helper()
	var last revScale
	waitFor(t, scaleWait, name+" to be "+what, func() (bool, string) {
		sc, err := e.revisionScale(name)
		if err != nil {
			return false, err.Error()
		}
		last = sc
		return sc.Known && ok(sc), sc.String()
	})
	return last
}

// revisionRow is the revision's row of `sluice get revisions`, as column name → value.
func (e *scaleEnv) revisionRow(t *testing.T, name string) map[string]string {
	t.Helper()
	r := e.s.mustCLI("get", "revisions")
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("sluice get revisions: no rows:\n%s", r.stdout)
	}
	// Columns are separated by at least 3 spaces (tabwriter padding 3); some names have one space.
	split := regexp.MustCompile(`\s{3,}`)
	header := split.Split(strings.TrimSpace(lines[0]), -1)
	for _, line := range lines[1:] {
		// An empty cell (REASON) collapses into the padding: read the row by the header's offsets.
		row := map[string]string{}
		for i, col := range header {
			start := strings.Index(lines[0], col)
			end := len(line)
			if i+1 < len(header) {
				end = min(end, strings.Index(lines[0], header[i+1]))
			}
			if start < len(line) {
				row[col] = strings.TrimSpace(line[start:min(end, len(line))])
			}
		}
		if row["NAME"] == name {
			return row
		}
	}
	t.Fatalf("sluice get revisions: no row for %s:\n%s", name, r.stdout)
	return nil
}

// instance is one process of a revision, as its log tells: helloworld logs its pid when it listens.
type instance struct {
	name string // the supervisor's instance name, e.g. hello-00001-1
	pid  int
	addr string
}

var listeningLine = regexp.MustCompile(`^(?:\[([^\]]+)\] )?.*helloworld listening.* addr=(\S+) .*pid=(\d+)`)

// instances are the processes `sluice logs` says the revision started, latest per instance
// name, in order of appearance.
func (e *scaleEnv) instances(t *testing.T, rev string) []instance {
	t.Helper()
	r := e.s.mustCLI("logs", rev)
	var out []instance
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		m := listeningLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[3])
		in := instance{name: m[1], pid: pid, addr: m[2]}
		if i := slices.IndexFunc(out, func(o instance) bool { return o.name == in.name }); i >= 0 {
			out[i] = in
		} else {
			out = append(out, in)
		}
	}
	return out
}

// processAlive says whether pid is a running process: not gone, and not a zombie (a dead child
// sluice has not reaped yet; its sockets are already closed).
func processAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil // no /proc (not Linux): signal 0 is the best we have
	}
	// pid (comm) state ...; comm may contain spaces and parentheses: the state follows the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return true
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// liveInstances are the revision's instances whose process runs.
func (e *scaleEnv) liveInstances(t *testing.T, rev string) []instance {
	t.Helper()
	var out []instance
	for _, in := range e.instances(t, rev) {
		if processAlive(in.pid) {
			out = append(out, in)
		}
	}
	return out
}

// ---- the activator as a data plane ----

// activatorPlane sends plain HTTP/1.1 straight to an activator, with the headers a gateway sets
// for one revision.
type activatorPlane struct {
	addr, namespace, revision string
	client                    *http.Client
}

func newActivatorPlane(t *testing.T, addr, revision string) *activatorPlane {
	tr := &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 0}
	t.Cleanup(tr.CloseIdleConnections)
	return &activatorPlane{addr: addr, namespace: "default", revision: revision, client: &http.Client{Transport: tr}}
}

// activatorAnswer is one response of the activator, parsed.
type activatorAnswer struct {
	status  int
	refused string // X-Sluice-Activator
	body    string
}

func (a *activatorPlane) do(ctx context.Context, host string) (activatorAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.addr+"/", nil)
	if err != nil {
		return activatorAnswer{}, err
	}
	req.Host = host
	req.Header.Set(wire.HeaderNamespace, a.namespace)
	req.Header.Set(wire.HeaderRevision, a.revision)
	resp, err := a.client.Do(req)
	if err != nil {
		return activatorAnswer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return activatorAnswer{}, err
	}
	return activatorAnswer{status: resp.StatusCode, refused: resp.Header.Get(wire.HeaderRefused), body: string(body)}, nil
}

func (a *activatorPlane) call(ctx context.Context, host, tag string) (string, error) {
	if tag != "" {
		return "", errors.New("activatorPlane: tags are the gateway's business")
	}
	ans, err := a.do(ctx, host)
	if err != nil {
		return "", err
	}
	if ans.status != http.StatusOK {
		return "", fmt.Errorf("HTTP %d from the activator (X-Sluice-Activator %q): %q", ans.status, ans.refused, ans.body)
	}
	if !strings.HasPrefix(ans.body, "Hello ") || !strings.HasSuffix(ans.body, "!\n") {
		return "", fmt.Errorf("unexpected body: %q", ans.body)
	}
	return strings.TrimSuffix(strings.TrimPrefix(ans.body, "Hello "), "!\n"), nil
}

// ---- load ----

// burst sends n requests at once (one goroutine each) and returns the errors, keyed by message.
func burst(dp dataPlane, host string, n int, timeout time.Duration) (ok int, errs map[string]int) {
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	errs = map[string]int{}
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			_, err := callOnce(dp, host, "", timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[err.Error()]++
				return
			}
			ok++
		})
	}
	close(start)
	wg.Wait()
	return ok, errs
}

// failure is one failed request of a timedLoad, with when it started.
type failure struct {
	start time.Time
	err   error
}

func (f failure) String() string {
	return fmt.Sprintf("started %s: %v", f.start.Format("15:04:05.000"), f.err)
}

// timedLoad is a fixed number of workers each sending one request after the other, like
// loadLoop, keeping every failure with its start time so a test can tell requests in flight at
// an event from those started after it.
type timedLoad struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	ok       int
	byID     counts
	failures []failure
}

func startTimedLoad(t *testing.T, dp dataPlane, host string, workers int) *timedLoad {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), maxLoad)
	l := &timedLoad{cancel: cancel, byID: counts{}}
	for range workers {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				cctx, ccancel := context.WithTimeout(ctx, callTimeout)
				id, err := dp.call(cctx, host, "")
				ccancel()
				if ctx.Err() != nil {
					return // stopped mid-request: not a failure of the data plane
				}
				l.mu.Lock()
				if err != nil {
					l.failures = append(l.failures, failure{start: start, err: err})
				} else {
					l.ok++
					l.byID[id]++
				}
				l.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(loadPause):
				}
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

// stop ends the load and waits for its workers; idempotent.
func (l *timedLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *timedLoad) snapshot() (ok int, byID counts, failures []failure) {
	l.mu.Lock()
	defer l.mu.Unlock()
	byID = counts{}
	for k, v := range l.byID {
		byID[k] = v
	}
	return l.ok, byID, slices.Clone(l.failures)
}

// waitMore waits until n more requests have succeeded.
func (l *timedLoad) waitMore(t *testing.T, n int) {
	t.Helper()
	ok, _, _ := l.snapshot()
	target := ok + n
	waitFor(t, waitTimeout, fmt.Sprintf("%d more successful requests", n), func() (bool, string) {
		ok, _, fs := l.snapshot()
		return ok >= target, fmt.Sprintf("%d of %d, %d failures", ok, target, len(fs))
	})
}

// requireNoFailures stops the load and fails the test for any failed request.
func (l *timedLoad) requireNoFailures(t *testing.T, what string) {
	t.Helper()
	l.stop()
	ok, byID, fs := l.snapshot()
	if len(fs) > 0 {
		t.Errorf("%s: %d of %d requests failed; first: %s", what, len(fs), len(fs)+ok, firstFailures(fs, 5))
	}
	t.Logf("%s: %d requests answered (%s), %d failed", what, ok, byID, len(fs))
}

func firstFailures(fs []failure, n int) string {
	var b strings.Builder
	for i, f := range fs {
		if i == n {
			fmt.Fprintf(&b, "\n  ... and %d more", len(fs)-n)
			break
		}
		b.WriteString("\n  " + f.String())
	}
	return b.String()
}

// grpcCode is the gRPC status code of err as text ("OK" for nil, "non-gRPC" for other errors).
func grpcCode(err error) string {
	if err == nil {
		return "OK"
	}
	if s, ok := status.FromError(err); ok {
		return s.Code().String()
	}
	return "non-gRPC"
}

// mustScale is the revision's scale now, failing the test if the API does not answer.
func (e *scaleEnv) mustScale(t *testing.T, name string) revScale {
	t.Helper()
	sc, err := e.revisionScale(name)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// waitSettled waits until the revision's desired and ready counts both stay within [lo, hi] for
// hold without a break, and returns the scale then and every distinct scale seen on the way.
func (e *scaleEnv) waitSettled(t *testing.T, name string, lo, hi int32, hold time.Duration) (revScale, []string) {
	t.Helper()
	var (
		since   time.Time
		last    revScale
		history []string
	)
	in := func(n int32) bool { return n >= lo && n <= hi }
	waitFor(t, scaleWait, fmt.Sprintf("%s to stay at %d..%d instances for %v", name, lo, hi, hold), func() (bool, string) {
		sc, err := e.revisionScale(name)
		if err != nil {
			since = time.Time{}
			return false, err.Error()
		}
		if key := fmt.Sprintf("desired=%d ready=%d", sc.Desired, sc.Ready); len(history) == 0 || history[len(history)-1] != key {
			history = append(history, key)
		}
		last = sc
		if !in(sc.Desired) || !in(sc.Ready) {
			since = time.Time{}
			return false, sc.String()
		}
		if since.IsZero() {
			since = time.Now()
		}
		return time.Since(since) >= hold, fmt.Sprintf("%s for %v", sc, time.Since(since).Round(time.Millisecond))
	})
	return last, history
}

// grpcHostPlane is grpcPlane answering with the instance that served the call (its listen
// address, helloworld's Hostname) rather than the revision's TARGET.
type grpcHostPlane struct{ *grpcPlane }

func (g grpcHostPlane) call(ctx context.Context, host, tag string) (string, error) {
	if tag != "" {
		return "", errors.New("grpcHostPlane: no tags")
	}
	c, err := g.client(host)
	if err != nil {
		return "", err
	}
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{FillServerId: true})
	if err != nil {
		return "", err
	}
	return resp.GetHostname(), nil
}
