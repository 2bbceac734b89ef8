package lrs

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluice-dev/sluice/autoscaler/metrics"
	"github.com/sluice-dev/sluice/wire"
)

const rev = "default/hello-00001"

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// recordingSink passes everything to a real Collector and signals each call, so a test can wait for
// what the server did instead of sleeping.
type recordingSink struct {
	*metrics.Collector
	reports chan metrics.Report
	forgets chan string
}

func newRecordingSink() *recordingSink {
	return &recordingSink{Collector: metrics.NewCollector(time.Hour), reports: make(chan metrics.Report, 100), forgets: make(chan string, 10)}
}

func (s *recordingSink) Report(r metrics.Report) { s.Collector.Report(r); s.reports <- r }
func (s *recordingSink) Forget(id string)        { s.Collector.Forget(id); s.forgets <- id }

// wait returns the next value or fails the test; the timeout only turns a hang into a failure.
// It is long enough for a gRPC client to resolve its target through xDS and connect under -race
// on a busy machine (grpcclient_test.go).
func wait[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatal("nothing arrived")
		panic("unreachable")
	}
}

func startServer(t *testing.T, sink Sink, opts Options) lrsv3.LoadReportingServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	NewServer(sink, opts).Register(g)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = g.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); g.Stop(); wg.Wait() })
	return lrsv3.NewLoadReportingServiceClient(conn)
}

func node(id, kind string) *corev3.Node {
	n := &corev3.Node{Id: id}
	if kind != "" {
		md, _ := structpb.NewStruct(map[string]any{wire.NodeKindMetadataKey: kind})
		n.Metadata = md
	}
	return n
}

func clusterStats(name string, interval time.Duration, localities ...*endpointv3.UpstreamLocalityStats) *endpointv3.ClusterStats {
	return &endpointv3.ClusterStats{ClusterName: name, UpstreamLocalityStats: localities, LoadReportInterval: durationpb.New(interval)}
}

func locality(inProgress, issued, ok, failed uint64) *endpointv3.UpstreamLocalityStats {
	return &endpointv3.UpstreamLocalityStats{TotalRequestsInProgress: inProgress, TotalIssuedRequests: issued, TotalSuccessfulRequests: ok, TotalErrorRequests: failed}
}

func open(t *testing.T, c lrsv3.LoadReportingServiceClient, n *corev3.Node) (grpc.BidiStreamingClient[lrsv3.LoadStatsRequest, lrsv3.LoadStatsResponse], context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := c.StreamLoadStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&lrsv3.LoadStatsRequest{Node: n}); err != nil {
		t.Fatal(err)
	}
	return st, cancel
}

func TestStream(t *testing.T) {
	sink := newRecordingSink()
	c := startServer(t, sink, Options{Now: func() time.Time { return t0 }})
	st, _ := open(t, c, node("activator-0", string(wire.NodeActivator)))

	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetSendAllClusters() || resp.GetLoadReportingInterval().AsDuration() != time.Second || len(resp.GetClusters()) != 0 {
		t.Fatalf("first response %v, want send_all_clusters and a 1s interval", resp)
	}

	// Two localities of one cluster add up; a cluster without a name is skipped.
	if err := st.Send(&lrsv3.LoadStatsRequest{ClusterStats: []*endpointv3.ClusterStats{
		clusterStats(rev, time.Second, locality(2, 10, 8, 1), locality(3, 5, 5, 0)),
		clusterStats("", time.Second, locality(100, 100, 0, 0)),
	}}); err != nil {
		t.Fatal(err)
	}
	got := wait(t, sink.reports)
	want := metrics.Report{Reporter: "activator-0#1", Kind: metrics.Activator, Cluster: rev, InProgress: 5, Issued: 15, Succeeded: 13, Errored: 1, Interval: time.Second, At: t0}
	if got != want {
		t.Fatalf("report\n got %+v\nwant %+v", got, want)
	}
	if l := sink.Load(rev, t0); l != (metrics.Load{Concurrency: 5, RPS: 15}) {
		t.Fatalf("collector load %+v", l)
	}

	// The next report leaves the cluster out, as gRPC-Go does for an idle cluster: zero from this reporter.
	if err := st.Send(&lrsv3.LoadStatsRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := wait(t, sink.reports); got.Cluster != rev || got.InProgress != 0 || got.Issued != 0 {
		t.Fatalf("report for the left-out cluster %+v, want zero", got)
	}

	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if id := wait(t, sink.forgets); id != "activator-0#1" {
		t.Fatalf("forgot %q", id)
	}
	if _, err := st.Recv(); err == nil {
		t.Fatal("the stream goes on after the client closed it")
	}
}

func TestTwoStreamsOfOneNode(t *testing.T) {
	sink := newRecordingSink()
	c := startServer(t, sink, Options{Now: func() time.Time { return t0 }, Interval: 250 * time.Millisecond})
	var cancels []context.CancelFunc
	for range 2 {
		st, cancel := open(t, c, node("envoy-gw", ""))
		cancels = append(cancels, cancel)
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if d := resp.GetLoadReportingInterval().AsDuration(); d != 250*time.Millisecond {
			t.Fatalf("interval %v", d)
		}
		if err := st.Send(&lrsv3.LoadStatsRequest{ClusterStats: []*endpointv3.ClusterStats{clusterStats(rev, time.Second, locality(3, 0, 0, 0))}}); err != nil {
			t.Fatal(err)
		}
		if r := wait(t, sink.reports); r.Kind != metrics.DataPlane {
			t.Fatalf("node without kind reported as %v", r.Kind)
		}
	}
	if l := sink.Load(rev, t0); l.Concurrency != 6 {
		t.Fatalf("two streams of one node: concurrency %g, want 6 (neither overwrites the other)", l.Concurrency)
	}
	cancels[0]()
	wait(t, sink.forgets)
	if l := sink.Load(rev, t0); l.Concurrency != 3 {
		t.Fatalf("after one stream ended: concurrency %g, want 3", l.Concurrency)
	}
}

func TestFirstRequestNeedsNode(t *testing.T) {
	c := startServer(t, newRecordingSink(), Options{})
	st, err := c.StreamLoadStats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&lrsv3.LoadStatsRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
}

// clusterSet is a changing set of clusters worth reporting, as the autoscaler gives it.
type clusterSet struct {
	mu      sync.Mutex
	names   []string
	changed chan struct{}
}

func (c *clusterSet) get() ([]string, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.names), c.changed
}

func (c *clusterSet) set(names ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names = names
	close(c.changed)
	c.changed = make(chan struct{})
}

// An Envoy is asked for the scaled clusters only, and again when they change; a gRPC client
// keeps send_all_clusters (it reads only the first response).
func TestEnvoyIsAskedForScaledClustersOnly(t *testing.T) {
	set := &clusterSet{names: []string{"default/a-00001"}, changed: make(chan struct{})}
	c := startServer(t, newRecordingSink(), Options{Clusters: set.get})

	envoy, _ := open(t, c, &corev3.Node{Id: "gw", UserAgentName: "envoy"})
	resp, err := envoy.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetSendAllClusters() || !slices.Equal(resp.GetClusters(), []string{"default/a-00001"}) || resp.GetLoadReportingInterval().AsDuration() != DefaultInterval {
		t.Fatalf("first answer to Envoy = %v", resp)
	}
	set.set("default/a-00001", "default/b-00001")
	if resp, err = envoy.Recv(); err != nil || !slices.Equal(resp.GetClusters(), []string{"default/a-00001", "default/b-00001"}) {
		t.Fatalf("answer after the set changed = %v, %v", resp, err)
	}

	grpcClient, _ := open(t, c, &corev3.Node{Id: "client", UserAgentName: "gRPC Go"})
	if resp, err := grpcClient.Recv(); err != nil || !resp.GetSendAllClusters() {
		t.Fatalf("answer to a gRPC client = %v, %v; want send_all_clusters", resp, err)
	}
}
