// Package lrs reports the load the activator holds per revision to the control plane's
// autoscaler over Envoy's Load Reporting Service, every interval the server asks for, plus an
// immediate "poke" report when a revision with no ready instance gets a request.
package lrs

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-dev/sluice/activator/reconnect"
)

// Load is one cluster's load: what is held now, and what happened since the last report.
type Load struct {
	Cluster    string
	InProgress uint64
	Issued     uint64
	Succeeded  uint64
	Failed     uint64
}

// Source is where the reporter reads loads.
type Source interface {
	// TakeLoads returns the loads of clusters with activity since the last call (or requests
	// in progress), and starts new counts. Counts keep accumulating between calls, so nothing is
	// lost while the reporter is disconnected.
	TakeLoads() []Load
	// InProgress is the requests held for one cluster now.
	InProgress(cluster string) uint64
}

// Options configure a Reporter.
type Options struct {
	Conn   grpc.ClientConnInterface
	Node   *corev3.Node
	Source Source
	Logger *slog.Logger
	// Now is the clock of poke rate limiting and report intervals; default time.Now.
	Now func() time.Time
	// Backoff bounds between reconnection attempts; defaults 100 ms and 5 s.
	MinBackoff, MaxBackoff time.Duration
}

// Reporter keeps one LRS stream open and reports on it.
type Reporter struct {
	opts   Options
	client lrsv3.LoadReportingServiceClient

	mu       sync.Mutex
	pending  map[string]struct{}  // poked clusters not yet reported
	lastPoke map[string]time.Time // when each cluster was last poked
	pokeGap  time.Duration        // at most one poke per cluster per report interval
	poked    chan struct{}        // capacity 1: wakes the stream loop

	// unsent are loads taken from the Source whose report could not be sent. Only Run's
	// goroutine touches it.
	unsent []Load
}

// NewReporter builds a Reporter; Run starts it.
func NewReporter(opts Options) *Reporter {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Reporter{
		opts:     opts,
		client:   lrsv3.NewLoadReportingServiceClient(opts.Conn),
		pending:  map[string]struct{}{},
		lastPoke: map[string]time.Time{},
		pokeGap:  time.Second,
		poked:    make(chan struct{}, 1),
	}
}

// Poke asks for an immediate report of the cluster, so the autoscaler scales it from zero without
// waiting for the next interval. Pokes of one cluster within a report interval send one report.
func (r *Reporter) Poke(cluster string) {
	now := r.opts.Now()
	r.mu.Lock()
	if last, ok := r.lastPoke[cluster]; ok && now.Sub(last) < r.pokeGap {
		r.mu.Unlock()
		return
	}
	r.lastPoke[cluster] = now
	r.pending[cluster] = struct{}{}
	r.mu.Unlock()
	select {
	case r.poked <- struct{}{}:
	default:
	}
}

// Run reports until ctx ends, reconnecting with backoff when the stream breaks. It returns
// ctx's error.
func (r *Reporter) Run(ctx context.Context) error {
	last := r.opts.Now()
	return reconnect.Loop(ctx, reconnect.Backoff{Min: r.opts.MinBackoff, Max: r.opts.MaxBackoff}, r.opts.Logger, "lrs",
		func(ctx context.Context) (bool, error) { return r.stream(ctx, &last) })
}

// settings are what the server asks for in a LoadStatsResponse.
type settings struct {
	interval time.Duration
	all      bool
	clusters map[string]bool
}

func settingsOf(resp *lrsv3.LoadStatsResponse) settings {
	s := settings{interval: resp.GetLoadReportingInterval().AsDuration(), all: resp.GetSendAllClusters()}
	if s.interval <= 0 {
		s.interval = time.Second
	}
	if !s.all {
		s.clusters = make(map[string]bool, len(resp.GetClusters()))
		for _, c := range resp.GetClusters() {
			s.clusters[c] = true
		}
	}
	return s
}

func (s settings) wants(cluster string) bool { return s.all || s.clusters[cluster] }

// stream runs one LRS stream. healthy says whether the server answered, which resets the backoff.
// last is when the previous report covered up to, carried across streams.
func (r *Reporter) stream(ctx context.Context, last *time.Time) (healthy bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := r.client.StreamLoadStats(ctx)
	if err != nil {
		return false, fmt.Errorf("lrs: open stream: %w", err)
	}
	if err := st.Send(&lrsv3.LoadStatsRequest{Node: r.opts.Node}); err != nil {
		return false, fmt.Errorf("lrs: send node: %w", err)
	}
	resp, err := st.Recv()
	if err != nil {
		return false, fmt.Errorf("lrs: first response: %w", err)
	}
	cur := settingsOf(resp)
	r.setPokeGap(cur.interval)

	// The server may change what it wants at any time; its answers arrive here.
	updates := make(chan settings, 1)
	recvErr := make(chan error, 1)
	var recv sync.WaitGroup
	defer recv.Wait()
	defer cancel()
	recv.Go(func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case updates <- settingsOf(resp):
			case <-ctx.Done():
				return
			}
		}
	})

	ticker := time.NewTicker(cur.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case err := <-recvErr:
			return true, fmt.Errorf("lrs: receive: %w", err)
		case s := <-updates:
			if s.interval != cur.interval {
				ticker.Reset(s.interval)
				r.setPokeGap(s.interval)
			}
			cur = s
		case <-ticker.C:
			// gRPC buffers a Send on a broken stream without error; a break already seen must not
			// take counts only to lose them.
			select {
			case err := <-recvErr:
				return true, fmt.Errorf("lrs: receive: %w", err)
			default:
			}
			now := r.opts.Now()
			loads := mergeLoads(r.unsent, r.opts.Source.TakeLoads())
			r.unsent = nil
			req := r.report(cur, loads, now.Sub(*last))
			if len(req.ClusterStats) == 0 {
				*last = now
				continue
			}
			if err := st.Send(req); err != nil {
				// The counts go out with the next report, on the next stream.
				r.unsent = loads
				return true, fmt.Errorf("lrs: send report: %w", err)
			}
			*last = now
		case <-r.poked:
			if req := r.pokeReport(cur); len(req.ClusterStats) > 0 {
				if err := st.Send(req); err != nil {
					return true, fmt.Errorf("lrs: send poke: %w", err)
				}
			}
		}
	}
}

func (r *Reporter) setPokeGap(d time.Duration) {
	r.mu.Lock()
	r.pokeGap = d
	r.mu.Unlock()
}

// report builds an interval report of the loads the server wants.
func (r *Reporter) report(s settings, loads []Load, interval time.Duration) *lrsv3.LoadStatsRequest {
	req := &lrsv3.LoadStatsRequest{Node: r.opts.Node}
	iv := durationpb.New(interval)
	for _, l := range loads {
		if !s.wants(l.Cluster) {
			continue
		}
		req.ClusterStats = append(req.ClusterStats, clusterStats(l, iv))
	}
	return req
}

// pokeReport reports what is in progress for the poked clusters; their request counts stay
// for the next interval report.
func (r *Reporter) pokeReport(s settings) *lrsv3.LoadStatsRequest {
	r.mu.Lock()
	names := make([]string, 0, len(r.pending))
	for c := range r.pending {
		names = append(names, c)
	}
	clear(r.pending)
	now := r.opts.Now()
	for c, t := range r.lastPoke {
		if now.Sub(t) >= r.pokeGap {
			delete(r.lastPoke, c)
		}
	}
	r.mu.Unlock()
	req := &lrsv3.LoadStatsRequest{Node: r.opts.Node}
	iv := durationpb.New(0)
	for _, c := range names {
		if !s.wants(c) {
			continue
		}
		// At least one: the request that poked is held even if it finished in the meantime.
		n := max(r.opts.Source.InProgress(c), 1)
		req.ClusterStats = append(req.ClusterStats, clusterStats(Load{Cluster: c, InProgress: n}, iv))
	}
	return req
}

// mergeLoads adds the counts of loads not yet reported to the current ones. What is in progress
// is the current figure.
func mergeLoads(unsent, cur []Load) []Load {
	if len(unsent) == 0 {
		return cur
	}
	byCluster := make(map[string]int, len(cur))
	for i, l := range cur {
		byCluster[l.Cluster] = i
	}
	for _, u := range unsent {
		i, ok := byCluster[u.Cluster]
		if !ok {
			u.InProgress = 0
			byCluster[u.Cluster] = len(cur)
			cur = append(cur, u)
			continue
		}
		cur[i].Issued += u.Issued
		cur[i].Succeeded += u.Succeeded
		cur[i].Failed += u.Failed
	}
	return cur
}

func clusterStats(l Load, interval *durationpb.Duration) *endpointv3.ClusterStats {
	return &endpointv3.ClusterStats{
		ClusterName: l.Cluster,
		UpstreamLocalityStats: []*endpointv3.UpstreamLocalityStats{{
			TotalRequestsInProgress: l.InProgress,
			TotalIssuedRequests:     l.Issued,
			TotalSuccessfulRequests: l.Succeeded,
			TotalErrorRequests:      l.Failed,
		}},
		LoadReportInterval: interval,
	}
}
