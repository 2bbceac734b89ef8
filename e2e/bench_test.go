package e2e

// Benchmarks of the real `sluice serve` binary at 1,000 and 10,000 services × 2 revisions. They
// run only with -bench (and not in -short mode); all setup lives inside them.
//
//	go test -run '^$' -bench BenchmarkTrafficUpdate -benchtime 50x -timeout 30m ./e2e/
//
// Shape: Service svc-NNNNN in namespace default has revisions svc-NNNNN-v1 and svc-NNNNN-v2 (named
// by the template), each with one static instance (sluice.dev/endpoints), split 80/20, no tags:
// two hosts per Service, NAME.default.example.com on Envoy's "external" route configuration and
// NAME.default.svc.cluster.local on "internal". They are loaded through POST /api/v1/apply, 500
// Services (1,000 documents: both generations of each) per request.
//
// For each size, one sluice holds the services and two raw delta ADS clients are connected:
//   - a gRPC-like client (user agent "gRPC Go") that subscribed the way gRPC-Go's xDS client does:
//     LDS for the middle service's host, then the RouteConfiguration that listener names;
//   - an Envoy-like client: wildcard LDS and CDS, EDS for every cluster CDS announced, RDS
//     "external" and "internal".
//
// Sub-benchmarks:
//   - change=none: POST /api/v1/apply of the Service exactly as stored (nothing changes): the API's
//     HTTP + YAML + store round trip, the baseline.
//   - change=split: the same POST flipping the split 80/20 ↔ 20/80 (what `sluice service update`
//     sends), timed until the gRPC-like client has the RouteConfiguration with the new weights.
//     Reports bytes pushed per update to each client and the server's VmRSS/VmHWM.
//   - restart: SIGTERM, then the time from starting `sluice serve` on the data dir holding the
//     services until the gRPC-like client has its route (store load + first full translation and
//     push). Reports the restarted process's VmRSS.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

var benchSizes = []int{1000, 10000}

const (
	benchBatch = 500 // Services per apply request while loading
	// benchWait bounds every wait of a benchmark; it only keeps a broken run from hanging.
	benchWait = 3 * time.Minute
)

// benchSluice is `sluice serve` with a data dir and ports kept across restarts. (The harness's
// sluiceServer takes a *testing.T, so benchmarks have their own.)
type benchSluice struct {
	b                         *testing.B
	dataDir, xdsAddr, apiAddr string
	cmd                       *exec.Cmd
	done                      chan struct{}
	logPath                   string
	starts                    int
}

func newBenchSluice(b *testing.B) *benchSluice {
	b.Helper()
	needBinaries(b)
	s := &benchSluice{b: b, dataDir: filepath.Join(b.TempDir(), "data"),
		xdsAddr: loopback(freePort(b)), apiAddr: loopback(freePort(b))}
	b.Cleanup(func() {
		s.stop()
		if b.Failed() {
			if log, err := os.ReadFile(s.logPath); err == nil {
				b.Logf("---- sluice log (last 16 KiB) ----\n%s", log[max(0, len(log)-16<<10):])
			}
		}
	})
	return s
}

// start runs sluice and returns once its API answers /healthz.
func (s *benchSluice) start() {
	b := s.b
	b.Helper()
	s.starts++
	s.logPath = filepath.Join(b.TempDir(), fmt.Sprintf("sluice-%d.log", s.starts))
	logf, err := os.Create(s.logPath)
	if err != nil {
		b.Fatal(err)
	}
	s.cmd = exec.Command(binaries.sluice, "serve", "--data-dir", s.dataDir, "--xds-addr", s.xdsAddr,
		"--api-addr", s.apiAddr, "--domain", "example.com", "--activator-addr", loopback(freePort(b)))
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		b.Fatal(err)
	}
	done := make(chan struct{})
	s.done = done
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); logf.Close(); close(done) }(s.cmd)
	deadline := time.Now().Add(startTimeout)
	for {
		if code, _, err := httpGet("http://" + s.apiAddr + "/healthz"); err == nil && code == http.StatusOK {
			return
		}
		select {
		case <-done:
			b.Fatalf("sluice exited during start-up: %v", s.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("sluice not healthy within %v", startTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits (SIGKILL after stopTimeout); the benchmark fails on an unclean exit.
func (s *benchSluice) stop() {
	if s.cmd == nil {
		return
	}
	cmd, done := s.cmd, s.done
	s.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(stopTimeout):
		s.b.Errorf("sluice (pid %d) did not exit within %v of SIGTERM; killing it", cmd.Process.Pid, stopTimeout)
		_ = cmd.Process.Kill()
		<-done
	}
	if !cmd.ProcessState.Success() {
		s.b.Errorf("sluice exited with %v, want a clean exit on SIGTERM", cmd.ProcessState)
	}
}

// memMB reads VmRSS and VmHWM of the running sluice from /proc, in MB (2^20 bytes).
func (s *benchSluice) memMB() (rss, hwm float64) {
	s.b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		s.b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || fields[2] != "kB" {
			continue
		}
		kb, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	if rss == 0 || hwm == 0 {
		s.b.Fatalf("no VmRSS/VmHWM in /proc/%d/status", s.cmd.Process.Pid)
	}
	return rss, hwm
}

// apply POSTs a YAML stream to /api/v1/apply and returns the action of each object.
func (s *benchSluice) apply(yaml []byte) []string {
	s.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchWait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.apiAddr+"/api/v1/apply?source=bench.yaml", bytes.NewReader(yaml))
	if err != nil {
		s.b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.b.Fatalf("apply: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.b.Fatalf("apply: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		s.b.Fatalf("apply: HTTP %d: %s", resp.StatusCode, body)
	}
	var out struct {
		Results []struct{ Action string } `json:"results"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		s.b.Fatalf("apply: decode %s: %v", body, err)
	}
	actions := make([]string, len(out.Results))
	for i, r := range out.Results {
		actions[i] = r.Action
	}
	return actions
}

func benchName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// benchServiceYAML is Service i at generation gen (1 creates NAME-v1, 2 creates NAME-v2); at gen 2
// the split is v1Percent to NAME-v1, the rest to NAME-v2.
func benchServiceYAML(w io.Writer, i, gen, v1Percent int) {
	name := benchName(i)
	fmt.Fprintf(w, `---
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: %s
  namespace: default
spec:
  template:
    metadata:
      name: %s-v%d
      annotations:
        sluice.dev/endpoints: "10.%d.%d.%d:8080"
    spec:
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
          env:
            - name: TARGET
              value: "v%d"
`, name, name, gen, gen, i>>8&255, i&255, gen)
	if gen == 2 {
		fmt.Fprintf(w, `  traffic:
    - revisionName: %s-v1
      percent: %d
    - revisionName: %s-v2
      percent: %d
`, name, v1Percent, name, 100-v1Percent)
	}
}

func (s *benchSluice) load(n int) {
	s.b.Helper()
	for lo := 0; lo < n; lo += benchBatch {
		var buf bytes.Buffer
		for i := lo; i < min(lo+benchBatch, n); i++ {
			benchServiceYAML(&buf, i, 1, 0)
			benchServiceYAML(&buf, i, 2, 80)
		}
		s.apply(buf.Bytes())
	}
}

// adsConn dials sluice's xDS port; large responses (every cluster at once) are allowed.
func adsConn(b *testing.B, addr string) *grpc.ClientConn {
	b.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.WaitForReady(true)))
	if err != nil {
		b.Fatal(err)
	}
	return conn
}

// hostClient is the gRPC-like delta client of one host.
type hostClient struct {
	b      *testing.B
	stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	node   *core.Node
	resps  chan *discovery.DeltaDiscoveryResponse
	errc   chan error
	stopc  func()
}

func newHostClient(b *testing.B, conn *grpc.ClientConn) *hostClient {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	c := &hostClient{b: b, stream: s, node: &core.Node{Id: "bench-grpc", UserAgentName: "gRPC Go"},
		resps: make(chan *discovery.DeltaDiscoveryResponse, 16), errc: make(chan error, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			r, err := s.Recv()
			if err != nil {
				c.errc <- err
				return
			}
			select {
			case c.resps <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	c.stopc = func() { cancel(); <-done }
	b.Cleanup(c.stopc)
	return c
}

func (c *hostClient) send(req *discovery.DeltaDiscoveryRequest) {
	c.b.Helper()
	req.Node = c.node
	if err := c.stream.Send(req); err != nil {
		c.b.Fatalf("send: %v", err)
	}
}

// await reads (and ACKs) responses until one of typeURL carries name and ok accepts it; it
// returns the encoded size of every response read.
func (c *hostClient) await(typeURL, name string, ok func(*discovery.Resource) bool) int {
	c.b.Helper()
	total := 0
	timeout := time.After(benchWait)
	for {
		select {
		case r := <-c.resps:
			total += proto.Size(r)
			c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
			if r.GetTypeUrl() != typeURL {
				continue
			}
			for _, res := range r.GetResources() {
				if res.GetName() == name && ok(res) {
					return total
				}
			}
		case err := <-c.errc:
			c.b.Fatalf("recv: %v", err)
		case <-timeout:
			c.b.Fatalf("%s %s not received within %v", typeURL, name, benchWait)
		}
	}
}

// subscribeHost subscribes like gRPC-Go: LDS host, then RDS for the name that listener gives
// (the host). It returns once the route has v1Weight want.
func (c *hostClient) subscribeHost(host, v1Cluster string, want uint32) {
	c.b.Helper()
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType, ResourceNamesSubscribe: []string{host}})
	c.await(resource.ListenerType, host, func(*discovery.Resource) bool { return true })
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResourceNamesSubscribe: []string{host}})
	c.await(resource.RouteType, host, func(r *discovery.Resource) bool { return v1Weight(c.b, r, host, v1Cluster) == want })
}

func v1Weight(b *testing.B, res *discovery.Resource, host, cluster string) uint32 {
	b.Helper()
	rc := &routev3.RouteConfiguration{}
	if err := res.GetResource().UnmarshalTo(rc); err != nil {
		b.Fatal(err)
	}
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() != host {
			continue
		}
		for _, w := range vh.GetRoutes()[0].GetRoute().GetWeightedClusters().GetClusters() {
			if w.GetName() == cluster {
				return w.GetWeight().GetValue()
			}
		}
	}
	return 0
}

// envoyClient is the Envoy-like delta client. Its goroutine ACKs everything, subscribes EDS for
// every cluster CDS announces, and counts bytes and RouteConfiguration arrivals.
type envoyClient struct {
	mu       sync.Mutex
	bytes    int64
	routes   map[string]int // times each RouteConfiguration arrived
	clas     map[string]bool
	err      error
	changed  chan struct{} // signalled (coalescing) on every response
	stop     func()
	clusters int
}

func newEnvoyClient(b *testing.B, conn *grpc.ClientConn) *envoyClient {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	e := &envoyClient{routes: map[string]int{}, clas: map[string]bool{}, changed: make(chan struct{}, 1)}
	node := &core.Node{Id: "bench-envoy", UserAgentName: "envoy"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := func() error {
			for _, r := range []*discovery.DeltaDiscoveryRequest{
				{TypeUrl: resource.ListenerType, ResourceNamesSubscribe: []string{"*"}},
				{TypeUrl: resource.ClusterType, ResourceNamesSubscribe: []string{"*"}},
				{TypeUrl: resource.RouteType, ResourceNamesSubscribe: []string{"external", "internal"}},
			} {
				r.Node = node
				if err := s.Send(r); err != nil {
					return err
				}
			}
			subscribed := map[string]bool{}
			for {
				r, err := s.Recv()
				if err != nil {
					return err
				}
				if err := s.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}); err != nil {
					return err
				}
				var newClusters []string
				e.mu.Lock()
				e.bytes += int64(proto.Size(r))
				for _, res := range r.GetResources() {
					switch r.GetTypeUrl() {
					case resource.RouteType:
						e.routes[res.GetName()]++
					case resource.EndpointType:
						e.clas[res.GetName()] = true
					case resource.ClusterType:
						if !subscribed[res.GetName()] {
							subscribed[res.GetName()] = true
							newClusters = append(newClusters, res.GetName())
						}
					}
				}
				e.clusters = len(subscribed)
				e.mu.Unlock()
				if len(newClusters) > 0 {
					if err := s.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNamesSubscribe: newClusters}); err != nil {
						return err
					}
				}
				select {
				case e.changed <- struct{}{}:
				default:
				}
			}
		}()
		e.mu.Lock()
		e.err = err
		e.mu.Unlock()
		select {
		case e.changed <- struct{}{}:
		default:
		}
	}()
	e.stop = func() { cancel(); <-done }
	b.Cleanup(e.stop)
	return e
}

// wait blocks until cond holds on the client's counters.
func (e *envoyClient) wait(b *testing.B, what string, cond func(e *envoyClient) bool) {
	b.Helper()
	timeout := time.After(benchWait)
	for {
		e.mu.Lock()
		ok, err := cond(e), e.err
		e.mu.Unlock()
		if ok {
			return
		}
		if err != nil {
			b.Fatalf("envoy-like client: %v (waiting for %s)", err, what)
		}
		select {
		case <-e.changed:
		case <-timeout:
			b.Fatalf("envoy-like client: no %s within %v", what, benchWait)
		}
	}
}

func (e *envoyClient) counts() (bytes int64, external, internal int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.bytes, e.routes["external"], e.routes["internal"]
}

// BenchmarkTrafficUpdate: see the top of this file.
func BenchmarkTrafficUpdate(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			s := newBenchSluice(b)
			s.start()
			loadStart := time.Now()
			s.load(n)
			b.Logf("services=%d: loaded %d services (%d apply requests) in %v", n, n, (n+benchBatch-1)/benchBatch, time.Since(loadStart).Round(time.Millisecond))

			svc := n / 2
			name := benchName(svc)
			host := name + ".default.example.com"
			v1Cluster := "default/" + name + "-v1"
			conn := adsConn(b, s.xdsAddr)
			b.Cleanup(func() { conn.Close() })
			gc := newHostClient(b, conn)
			gc.subscribeHost(host, v1Cluster, 80)
			ec := newEnvoyClient(b, conn)
			ec.wait(b, "every cluster's load assignment and both route configurations", func(e *envoyClient) bool {
				return e.clusters == 2*n && len(e.clas) == 2*n && e.routes["external"] > 0 && e.routes["internal"] > 0
			})

			yamlOf := func(v1Percent int) []byte {
				var buf bytes.Buffer
				benchServiceYAML(&buf, svc, 2, v1Percent)
				return buf.Bytes()
			}
			split := [2][]byte{yamlOf(80), yamlOf(20)}
			cur := 0 // index into split of what is stored
			// flip applies the other split and waits for the gRPC-like client; it returns the bytes
			// that client received.
			flip := func() int {
				cur = 1 - cur
				want := uint32(80)
				if cur == 1 {
					want = 20
				}
				if a := s.apply(split[cur]); len(a) != 1 || a[0] != "configured" {
					b.Fatalf("split flip: actions %v, want [configured]", a)
				}
				return gc.await(resource.RouteType, host, func(r *discovery.Resource) bool { return v1Weight(b, r, host, v1Cluster) == want })
			}
			// waitEnvoy waits until the Envoy-like client got both route configurations again.
			waitEnvoy := func(ext, in int) {
				ec.wait(b, "the changed route configurations", func(e *envoyClient) bool {
					return e.routes["external"] > ext && e.routes["internal"] > in
				})
			}
			// Settle: two round trips make sure every pass the load caused is behind us.
			for range 2 {
				_, ext, in := ec.counts()
				flip()
				waitEnvoy(ext, in)
			}

			b.Run("change=none", func(b *testing.B) {
				for b.Loop() {
					if a := s.apply(split[cur]); len(a) != 1 || a[0] != "unchanged" {
						b.Fatalf("re-apply: actions %v, want [unchanged]", a)
					}
				}
			})

			b.Run("change=split", func(b *testing.B) {
				var grpcBytes int64
				var lat []time.Duration
				envoyStart, _, _ := ec.counts()
				for b.Loop() {
					_, ext, in := ec.counts()
					start := time.Now()
					grpcBytes += int64(flip())
					lat = append(lat, time.Since(start))
					// The Envoy-like client is pushed concurrently; wait for it outside the timing so
					// that the next iteration starts with both clients up to date.
					b.StopTimer()
					waitEnvoy(ext, in)
					b.StartTimer()
				}
				envoyEnd, _, _ := ec.counts()
				rss, hwm := s.memMB()
				b.ReportMetric(float64(grpcBytes)/float64(b.N), "grpc-B/op")
				b.ReportMetric(float64(envoyEnd-envoyStart)/float64(b.N), "envoy-B/op")
				b.ReportMetric(rss, "rss-MB")
				b.ReportMetric(hwm, "hwm-MB")
				// A mean on a shared 2-core machine is mostly the iterations a GC lands on; the
				// target is about what an update usually takes, so the median and tail go along.
				slices.Sort(lat)
				for _, q := range []struct {
					name string
					at   float64
				}{{"p50-ms", 0.5}, {"p90-ms", 0.9}, {"max-ms", 1}} {
					b.ReportMetric(float64(lat[int(q.at*float64(len(lat)-1))])/float64(time.Millisecond), q.name)
				}
			})

			// The restarts end the clients' streams: this goes last.
			b.Run("restart", func(b *testing.B) {
				gc.stopc()
				ec.stop()
				conn.Close()
				var rss float64
				for b.Loop() {
					b.StopTimer()
					s.stop()
					b.StartTimer()
					s.start()
					conn := adsConn(b, s.xdsAddr)
					c := newHostClient(b, conn)
					want := uint32(80)
					if cur == 1 {
						want = 20
					}
					c.subscribeHost(host, v1Cluster, want)
					b.StopTimer()
					rss, _ = s.memMB()
					c.stopc()
					conn.Close()
					b.StartTimer()
				}
				b.ReportMetric(rss, "rss-MB")
			})
		})
	}
}
