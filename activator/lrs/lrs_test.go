package lrs

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
)

// source is a Source with counts a test sets.
type source struct {
	mu    sync.Mutex
	loads map[string]*Load
}

func (s *source) add(l Load) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loads == nil {
		s.loads = map[string]*Load{}
	}
	cur := s.loads[l.Cluster]
	if cur == nil {
		cur = &Load{Cluster: l.Cluster}
		s.loads[l.Cluster] = cur
	}
	cur.InProgress = l.InProgress
	cur.Issued += l.Issued
	cur.Succeeded += l.Succeeded
	cur.Failed += l.Failed
}

func (s *source) TakeLoads() []Load {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Load
	for _, l := range s.loads {
		if l.InProgress > 0 || l.Issued > 0 || l.Succeeded > 0 || l.Failed > 0 {
			out = append(out, *l)
		}
		l.Issued, l.Succeeded, l.Failed = 0, 0, 0
	}
	return out
}

func (s *source) InProgress(c string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.loads[c]; l != nil {
		return l.InProgress
	}
	return 0
}

// fakeLRS is an LRS server that answers each stream with resp and hands every report to the test.
type fakeLRS struct {
	lrsv3.UnimplementedLoadReportingServiceServer
	resp    *lrsv3.LoadStatsResponse
	streams chan *corev3.Node // a stream opened, with its node
	reports chan *lrsv3.LoadStatsRequest
	hangUp  chan struct{} // closed: handlers return
	stop    func()
}

func (f *fakeLRS) StreamLoadStats(st lrsv3.LoadReportingService_StreamLoadStatsServer) error {
	first, err := st.Recv()
	if err != nil {
		return err
	}
	if err := st.Send(f.resp); err != nil {
		return err
	}
	f.streams <- first.GetNode()
	reqs := make(chan *lrsv3.LoadStatsRequest)
	errc := make(chan error, 1)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case reqs <- r:
			case <-st.Context().Done():
				return
			}
		}
	}()
	for {
		select {
		case r := <-reqs:
			select {
			case f.reports <- r:
			case <-f.hangUp:
				return errors.New("stopped")
			}
		case err := <-errc:
			return err
		case <-f.hangUp:
			return errors.New("stopped")
		}
	}
}

func startLRS(t *testing.T, resp *lrsv3.LoadStatsResponse) (*fakeLRS, string) {
	return startLRSAt(t, "127.0.0.1:0", resp)
}

func startLRSAt(t *testing.T, addr string, resp *lrsv3.LoadStatsResponse) (*fakeLRS, string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeLRS{resp: resp, streams: make(chan *corev3.Node, 10), reports: make(chan *lrsv3.LoadStatsRequest, 100), hangUp: make(chan struct{})}
	g := grpc.NewServer()
	lrsv3.RegisterLoadReportingServiceServer(g, f)
	go g.Serve(ln)
	f.stop = func() {
		close(f.hangUp) // unblocks a handler waiting to hand over a report
		g.Stop()
	}
	t.Cleanup(g.Stop)
	return f, ln.Addr().String()
}

// clock is a Now that moves only when the test says.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func runReporter(t *testing.T, addr string, src Source, now func() time.Time) *Reporter {
	r, _ := runReporterConn(t, addr, src, now)
	return r
}

func runReporterConn(t *testing.T, addr string, src Source, now func() time.Time) (*Reporter, *grpc.ClientConn) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	r := NewReporter(Options{Conn: conn, Node: &corev3.Node{Id: "activator-test"}, Source: src, Now: now, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run: %v, want context.Canceled", err)
		}
		conn.Close()
	})
	return r, conn
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second): // only stops a hang; it covers gRPC's reconnect backoff, from 1s
		t.Fatalf("no %s in 30s", what)
		panic("unreachable")
	}
}

func TestReportsEachIntervalAndAcrossReconnects(t *testing.T) {
	f, addr := startLRS(t, &lrsv3.LoadStatsResponse{SendAllClusters: true, LoadReportingInterval: durationpb.New(time.Millisecond)})
	src := &source{}
	src.add(Load{Cluster: "default/a-00001", InProgress: 2, Issued: 5, Succeeded: 3, Failed: 1})
	_, conn := runReporterConn(t, addr, src, nil)
	if n := recv(t, f.streams, "stream"); n.GetId() != "activator-test" {
		t.Fatalf("node = %v", n)
	}
	r := recv(t, f.reports, "report")
	if len(r.ClusterStats) != 1 {
		t.Fatalf("report = %v, want one cluster", r)
	}
	cs := r.ClusterStats[0]
	u := cs.GetUpstreamLocalityStats()[0]
	if cs.ClusterName != "default/a-00001" || u.TotalRequestsInProgress != 2 || u.TotalIssuedRequests != 5 || u.TotalSuccessfulRequests != 3 || u.TotalErrorRequests != 1 || cs.GetLoadReportInterval() == nil || r.GetNode().GetId() != "activator-test" {
		t.Fatalf("cluster stats = %v", r)
	}

	// The control plane goes away; counts made while it is down arrive once it is back.
	f.stop()
	// LRS has no acknowledgement: a report sent as the connection breaks is lost. What the reporter
	// owes is not to take counts while it has no stream: wait until it is trying to reconnect.
	for s := conn.GetState(); s != connectivity.Connecting && s != connectivity.TransientFailure; s = conn.GetState() {
		conn.WaitForStateChange(context.Background(), s)
	}
	src.add(Load{Cluster: "default/a-00001", InProgress: 0, Issued: 7})
	f2, _ := startLRSAt(t, addr, f.resp)
	recv(t, f2.streams, "second stream")
	var issued uint64
	for issued < 7 {
		r := recv(t, f2.reports, "report after reconnect")
		for _, cs := range r.ClusterStats {
			issued += cs.UpstreamLocalityStats[0].TotalIssuedRequests
		}
	}
	if issued != 7 {
		t.Fatalf("issued after reconnect = %d, want 7", issued)
	}
}

func TestReportsOnlyTheClustersAskedFor(t *testing.T) {
	f, addr := startLRS(t, &lrsv3.LoadStatsResponse{Clusters: []string{"default/b-00001"}, LoadReportingInterval: durationpb.New(time.Millisecond)})
	src := &source{}
	src.add(Load{Cluster: "default/a-00001", Issued: 1})
	src.add(Load{Cluster: "default/b-00001", Issued: 1})
	runReporter(t, addr, src, nil)
	r := recv(t, f.reports, "report")
	if len(r.ClusterStats) != 1 || r.ClusterStats[0].ClusterName != "default/b-00001" {
		t.Fatalf("report = %v, want b only", r)
	}
}

func TestPokesOncePerClusterPerInterval(t *testing.T) {
	// An hour's interval: every report in this test is a poke.
	f, addr := startLRS(t, &lrsv3.LoadStatsResponse{SendAllClusters: true, LoadReportingInterval: durationpb.New(time.Hour)})
	src := &source{}
	src.add(Load{Cluster: "default/a-00001", InProgress: 3, Issued: 3})
	clk := &clock{now: time.Unix(1000, 0)}
	rep := runReporter(t, addr, src, clk.Now)
	recv(t, f.streams, "stream")

	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { rep.Poke("default/a-00001") })
	}
	wg.Wait()
	r := recv(t, f.reports, "poke")
	if len(r.ClusterStats) != 1 || r.ClusterStats[0].ClusterName != "default/a-00001" {
		t.Fatalf("poke = %v, want a", r)
	}
	u := r.ClusterStats[0].UpstreamLocalityStats[0]
	if u.TotalRequestsInProgress != 3 || u.TotalIssuedRequests != 0 {
		t.Fatalf("poke stats = %v, want 3 in progress and the counts left for the interval report", u)
	}

	// Still within the interval: more pokes of a send nothing; b's does.
	for range 10 {
		rep.Poke("default/a-00001")
	}
	rep.Poke("default/b-00001")
	r = recv(t, f.reports, "poke of b")
	if len(r.ClusterStats) != 1 || r.ClusterStats[0].ClusterName != "default/b-00001" {
		t.Fatalf("second poke = %v, want b only", r)
	}
	if u := r.ClusterStats[0].UpstreamLocalityStats[0]; u.TotalRequestsInProgress != 1 {
		t.Fatalf("poke of b with nothing held = %v, want 1 in progress: the poking request", u)
	}

	clk.advance(time.Hour)
	rep.Poke("default/a-00001")
	if r := recv(t, f.reports, "poke after the interval"); r.ClusterStats[0].ClusterName != "default/a-00001" {
		t.Fatalf("poke after the interval = %v, want a", r)
	}
}
