package controlplane

// In-process benchmarks of the control-plane loop at 1,000 and 10,000 services × 2 revisions: a
// real store in a temp dir, a real Loop and a real xds.Server served on a loopback gRPC listener,
// and a raw delta ADS client subscribed the way gRPC-Go's xDS client subscribes. Nothing here runs
// without -bench; all setup lives inside the Benchmark functions.
//
//	go test -run '^$' -bench . -benchtime 200x -timeout 30m ./controlplane/
//
// The shape is the common case: every Service has two revisions split 80/20 and no tags, so two
// hosts each (NAME.default.example.com and NAME.default.svc.cluster.local). Endpoints come from
// benchEndpoints, a test source standing in for a dynamic one (local processes, Kubernetes).

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/envoy"
	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/routing/store"
	v1 "github.com/sluice-dev/sluice/routing/v1"
	"github.com/sluice-dev/sluice/xds"
)

var benchSizes = []int{1000, 10000}

const (
	benchNamespace = "default"
	benchDomain    = "example.com"
	// benchWait bounds every wait for the client; it only keeps a broken benchmark from hanging.
	benchWait = 2 * time.Minute
)

func benchServiceName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// benchService is Service i at its second generation: revisions NAME-v1 and NAME-v2 split
// v1Percent / 100-v1Percent, no tags. gen 1 is the first generation, which creates NAME-v1.
func benchService(i, gen int, v1Percent int64) *v1.Service {
	name := benchServiceName(i)
	svc := &v1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindService},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchNamespace},
		Spec: v1.ServiceSpec{ConfigurationSpec: v1.ConfigurationSpec{Template: v1.RevisionTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("%s-v%d", name, gen),
				// The store's Revisions carry it; benchEndpoints ignores it (it is a different source).
				Annotations: map[string]string{v1.AnnotationEndpoints: benchAddr(i, gen, 8080)},
			},
			Spec: v1.RevisionSpec{PodSpec: &corev1.PodSpec{Containers: []corev1.Container{{
				Image: "ghcr.io/knative/helloworld-go:latest",
				Env:   []corev1.EnvVar{{Name: "TARGET", Value: fmt.Sprintf("v%d", gen)}},
			}}}},
		}}},
	}
	if gen == 2 {
		p1, p2 := v1Percent, 100-v1Percent
		svc.Spec.Traffic = []v1.TrafficTarget{
			{RevisionName: name + "-v1", Percent: &p1},
			{RevisionName: name + "-v2", Percent: &p2},
		}
	}
	return svc
}

func benchAddr(i, gen int, port int) string {
	return fmt.Sprintf("10.%d.%d.%d:%d", gen, i>>8&255, i&255, port)
}

// benchEndpoints is a dynamic endpoint source: every revision is ready with one instance, which
// set changes and signals like a watch of processes or Kubernetes endpoints would.
type benchEndpoints struct {
	mu      sync.Mutex
	eps     map[routing.Key][]routing.Endpoint
	changed []routing.Key
	changes chan struct{}
}

func newBenchEndpoints() *benchEndpoints {
	return &benchEndpoints{eps: make(map[routing.Key][]routing.Endpoint), changes: make(chan struct{}, 1)}
}

func (e *benchEndpoints) Instances(rev *v1.Revision) routing.Instances {
	k := routing.Key{Namespace: rev.Namespace, Name: rev.Name}
	e.mu.Lock()
	eps, ok := e.eps[k]
	if !ok {
		// First sight: one instance derived from the name, stable from then on.
		eps = []routing.Endpoint{{Host: fmt.Sprintf("10.99.%d.%d", len(e.eps)>>8&255, len(e.eps)&255), Port: 8080}}
		e.eps[k] = eps
	}
	e.mu.Unlock()
	return routing.Instances{Ready: true, Endpoints: eps}
}

func (e *benchEndpoints) Changes() <-chan struct{} { return e.changes }

func (e *benchEndpoints) Changed() []routing.Key {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.changed
	e.changed = nil
	return out
}

// set replaces k's instances and signals the change.
func (e *benchEndpoints) set(k routing.Key, eps []routing.Endpoint) {
	e.mu.Lock()
	e.eps[k] = eps
	e.changed = append(e.changed, k)
	e.mu.Unlock()
	select {
	case e.changes <- struct{}{}:
	default:
	}
}

// loadStore opens a store in a temp dir holding n services with two revisions each, applied in
// batches of 500 services as the API would receive them.
func loadStore(b *testing.B, n int) *store.Store {
	b.Helper()
	st, err := store.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	const batch = 500
	for lo := 0; lo < n; lo += batch {
		var objs []v1.Object
		for i := lo; i < min(lo+batch, n); i++ {
			objs = append(objs, benchService(i, 1, 0), benchService(i, 2, 80))
		}
		if _, err := st.Apply(context.Background(), objs, false); err != nil {
			b.Fatalf("load services %d-%d: %v", lo, lo+batch-1, err)
		}
	}
	return st
}

// benchEnv is a loaded store, the loop over it and its xDS server on loopback.
type benchEnv struct {
	st   *store.Store
	eps  *benchEndpoints
	srv  *xds.Server
	loop *Loop
	conn *grpc.ClientConn
}

func newBenchEnv(b *testing.B, n int) *benchEnv {
	b.Helper()
	e := &benchEnv{st: loadStore(b, n), eps: newBenchEndpoints()}
	ctx, cancel := context.WithCancel(context.Background())
	var err error
	e.srv, err = xds.NewServer(ctx, xds.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer()
	e.srv.Register(g)
	// The first pass pushes, then stores every status (50,000 at 10k); an iteration started
	// before that write ends would wait for it and be timed as if it were the change's cost.
	firstPass := make(chan struct{})
	var once sync.Once
	e.loop = New(e.st, e.eps, envoy.NewTranslator(envoy.Options{}), e.srv, Options{
		Routing: routing.Config{Domain: benchDomain},
		Logger:  slog.New(slog.DiscardHandler),
		Synced:  func(context.Context, SyncStats) { once.Do(func() { close(firstPass) }) },
	})
	var wg sync.WaitGroup
	wg.Go(func() { _ = g.Serve(lis) })
	wg.Go(func() { _ = e.loop.Run(ctx) })
	select {
	case <-firstPass:
	case <-time.After(benchWait):
		b.Fatal("the loop's first pass did not finish")
	}
	e.conn, err = grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cancel()
		e.conn.Close()
		g.Stop()
		wg.Wait()
	})
	return e
}

// deltaClient is a raw ADS delta stream. A reader goroutine hands responses to next.
type deltaClient struct {
	b      *testing.B
	stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	node   *core.Node
	resps  chan *discovery.DeltaDiscoveryResponse
	errc   chan error
}

// grpcClient connects like gRPC-Go's xDS client (user agent "gRPC Go").
func (e *benchEnv) grpcClient(b *testing.B) *deltaClient {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := discovery.NewAggregatedDiscoveryServiceClient(e.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		b.Fatal(err)
	}
	c := &deltaClient{b: b, stream: s, node: &core.Node{Id: "bench-grpc", UserAgentName: "gRPC Go"},
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
			c.resps <- r
		}
	}()
	b.Cleanup(func() { cancel(); <-done })
	return c
}

func (c *deltaClient) subscribe(typeURL string, names ...string) {
	c.b.Helper()
	if err := c.stream.Send(&discovery.DeltaDiscoveryRequest{Node: c.node, TypeUrl: typeURL, ResourceNamesSubscribe: names}); err != nil {
		c.b.Fatalf("subscribe %s: %v", typeURL, err)
	}
}

// next returns the next response and ACKs it, as a client that accepted it would.
func (c *deltaClient) next() *discovery.DeltaDiscoveryResponse {
	c.b.Helper()
	select {
	case r := <-c.resps:
		if err := c.stream.Send(&discovery.DeltaDiscoveryRequest{Node: c.node, TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}); err != nil {
			c.b.Fatalf("ack: %v", err)
		}
		return r
	case err := <-c.errc:
		c.b.Fatalf("recv: %v", err)
	case <-time.After(benchWait):
		c.b.Fatalf("no xDS response within %v", benchWait)
	}
	return nil
}

// await reads responses until one of typeURL carries name and ok accepts it; it returns the
// encoded bytes of all responses read.
func (c *deltaClient) await(typeURL, name string, ok func(*discovery.Resource) bool) int {
	c.b.Helper()
	total := 0
	for {
		r := c.next()
		total += proto.Size(r)
		if r.GetTypeUrl() != typeURL {
			continue
		}
		for _, res := range r.GetResources() {
			if res.GetName() == name && ok(res) {
				return total
			}
		}
	}
}

// v1Weight is the weight of cluster in res, a RouteConfiguration for host.
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

func endpointPort(b *testing.B, res *discovery.Resource) uint32 {
	b.Helper()
	cla := &endpointv3.ClusterLoadAssignment{}
	if err := res.GetResource().UnmarshalTo(cla); err != nil {
		b.Fatal(err)
	}
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			return e.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
		}
	}
	return 0
}

// target is the service the benchmarks change: one in the middle.
func target(n int) (svc int, host, v1Cluster string, v1Rev routing.Key) {
	svc = n / 2
	name := benchServiceName(svc)
	host = fmt.Sprintf("%s.%s.%s", name, benchNamespace, benchDomain)
	v1Rev = routing.Key{Namespace: benchNamespace, Name: name + "-v1"}
	return svc, host, routing.ClusterName(benchNamespace, name+"-v1"), v1Rev
}

// latencies are per-iteration times. The mean (ns/op) of a latency on a shared 2-core machine is
// dominated by the few iterations a garbage collection or another process lands on, so the
// median and the tail are reported too: targets are about what a change usually takes.
type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	s := slices.Clone(l)
	slices.Sort(s)
	at := func(q float64) float64 { return float64(s[int(q*float64(len(s)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(at(0.5), "p50-ms")
	b.ReportMetric(at(0.9), "p90-ms")
	b.ReportMetric(at(1), "max-ms")
}

// BenchmarkEndpointChange: one revision's instances change in the endpoint source → the loop's
// pass → a gRPC client subscribed to that revision's ClusterLoadAssignment receives it.
func BenchmarkEndpointChange(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			e := newBenchEnv(b, n)
			_, _, cluster, rev := target(n)
			c := e.grpcClient(b)
			c.subscribe(resource.EndpointType, cluster)
			c.await(resource.EndpointType, cluster, func(*discovery.Resource) bool { return true })
			var bytes int64
			var lat latencies
			i := 0
			for b.Loop() {
				i++
				port := uint32(9000 + i%2)
				start := time.Now()
				e.eps.set(rev, []routing.Endpoint{{Host: "10.200.0.1", Port: port}})
				bytes += int64(c.await(resource.EndpointType, cluster, func(r *discovery.Resource) bool {
					return endpointPort(b, r) == port
				}))
				lat = append(lat, time.Since(start))
			}
			b.ReportMetric(float64(bytes)/float64(b.N), "pushed-B/op")
			lat.report(b)
		})
	}
}

// BenchmarkTrafficUpdateInProcess: store.Apply of one Service's split flip (80/20 ↔ 20/80) →
// the loop's pass → a gRPC client watching that Service's host receives the new
// RouteConfiguration. Compare with e2e's BenchmarkTrafficUpdate, which adds HTTP, YAML and the
// process boundary.
func BenchmarkTrafficUpdateInProcess(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			e := newBenchEnv(b, n)
			svc, host, cluster, _ := target(n)
			c := e.grpcClient(b)
			c.subscribe(resource.ListenerType, host)
			c.await(resource.ListenerType, host, func(*discovery.Resource) bool { return true })
			c.subscribe(resource.RouteType, host)
			c.await(resource.RouteType, host, func(r *discovery.Resource) bool { return v1Weight(b, r, host, cluster) == 80 })
			var bytes int64
			var lat latencies
			i := 0
			for b.Loop() {
				i++
				want := int64(80)
				if i%2 == 1 {
					want = 20
				}
				start := time.Now()
				res, err := e.st.Apply(context.Background(), []v1.Object{benchService(svc, 2, want)}, false)
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Change.Put) == 0 {
					b.Fatalf("apply of a split change wrote nothing: %+v", res.Objects)
				}
				bytes += int64(c.await(resource.RouteType, host, func(r *discovery.Resource) bool {
					return int64(v1Weight(b, r, host, cluster)) == want
				}))
				lat = append(lat, time.Since(start))
			}
			b.ReportMetric(float64(bytes)/float64(b.N), "pushed-B/op")
			lat.report(b)
		})
	}
}

// BenchmarkFullSync is the loop's first pass over a store of n services, from an empty xDS
// server and a new translator: Reconcile, BuildTable, Translate and Update of every resource, as
// after a restart. The statuses are already stored (a warm-up pass wrote them, as a previous run
// of sluice would have), so the pass writes none.
func BenchmarkFullSync(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st := loadStore(b, n)
			eps := newBenchEndpoints()
			pass := func() SyncStats {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				srv, err := xds.NewServer(ctx, xds.Options{Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				var stats SyncStats
				l := New(st, eps, envoy.NewTranslator(envoy.Options{}), srv, Options{
					Routing: routing.Config{Domain: benchDomain},
					Logger:  slog.New(slog.DiscardHandler),
					Synced:  func(_ context.Context, s SyncStats) { stats = s },
				})
				if err := l.Sync(context.Background()); err != nil {
					b.Fatal(err)
				}
				return stats
			}
			warm := pass()
			var last SyncStats
			for b.Loop() {
				last = pass()
			}
			if last.StatusUpdates != 0 || last.Hosts != 2*n || last.Backends != 2*n {
				b.Fatalf("pass: %+v, want no status updates, %d hosts and %d backends (warm-up: %+v)", last, 2*n, 2*n, warm)
			}
			b.ReportMetric(float64(last.XDS.Changed), "resources")
			b.ReportMetric(float64(last.XDS.Bytes)/(1<<20), "xds-MB")
			b.ReportMetric(float64(warm.StatusUpdates), "warmup-statuses")
		})
	}
}
