// Package lrs is sluice's Load Reporting Service: Envoy gateways, gRPC xDS clients and the activator
// stream per-cluster load to it (envoy.service.load_stats.v3), and it hands each cluster's numbers to a
// Sink, normally the autoscaler's metrics.Collector.
//
// On each stream the first LoadStatsRequest names the node; the server answers once with
// send_all_clusters and the reporting interval, then turns every later ClusterStats into a
// metrics.Report. A node is the activator when wire.ClassifyNode says so: its metadata field
// "sluice.dev/node-kind" is "activator".
// The reporter id is the node id plus a per-server stream number, so two streams of one node id do not
// overwrite each other's load; when a stream ends its reporter is forgotten.
//
// What gRPC-Go's LRS client (google.golang.org/grpc v1.85.0, internal/xds/clients/lrsclient) does, read
// from its source, and what this server does about it:
//   - It reports only for clusters whose CDS resource has lrs_server (self: {} means this same server),
//     and it opens the stream only when the first such cluster is used.
//   - It reads only the first LoadStatsResponse: clusters (or send_all_clusters, which it advertises
//     with the client feature "envoy.lrs.supports_send_all_clusters") and load_reporting_interval. Later
//     responses are ignored, so the interval cannot be changed on a live stream.
//   - The interval is used as-is for a time.Ticker: there is no minimum, and a zero interval would make
//     the client panic, so the server always sends a positive one (default 1s).
//   - Per locality it sends total_requests_in_progress (a snapshot, not reset), and issued, successful
//     and error counts since the last report (reset at each report); load_report_interval is measured
//     per cluster since its last report.
//   - It skips localities with nothing in progress and nothing issued, succeeded or errored, and skips a
//     cluster with no locality and no drops; a request can carry no cluster at all. An idle cluster
//     therefore vanishes from the reports instead of reporting zero. The server treats a cluster that a
//     reporter reported before and no longer reports as zero load from that reporter (it sends a zero
//     report), so the last non-zero in-flight count does not linger until it goes stale.
//   - cluster_name is the CDS cluster name; cluster_service_name is the EDS service name. sluice names
//     both "namespace/revision", and the server uses cluster_name (cluster_service_name if empty).
package lrs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-dev/sluice/autoscaler/metrics"
	"github.com/sluice-dev/sluice/wire"
)

// DefaultInterval is how often clients are asked to report: the autoscaler samples once a second.
const DefaultInterval = time.Second

// Sink receives the reports; *metrics.Collector implements it.
type Sink interface {
	Report(metrics.Report)
	// Forget drops a reporter whose stream ended.
	Forget(reporter string)
}

// Options configure a Server. The zero value is usable.
type Options struct {
	// Interval is the load_reporting_interval sent to clients; DefaultInterval if not positive.
	Interval time.Duration
	// Now stamps reports as they arrive; time.Now if nil.
	Now    func() time.Time
	Logger *slog.Logger
	// Clusters, when set, names the clusters worth reporting (the scaled revisions') and a
	// channel closed when that set changes. Envoy nodes are then asked for those clusters
	// only, and asked again when the set changes: with send_all_clusters an Envoy in front of
	// 10,000 services would report 20,000 clusters every second. gRPC clients and activators
	// keep send_all_clusters: gRPC reads only the first response (and reports only clusters
	// with lrs_server anyway), an activator only what it holds.
	Clusters func() (names []string, changed <-chan struct{})
}

// Server implements envoy.service.load_stats.v3.LoadReportingService.
type Server struct {
	lrsv3.UnimplementedLoadReportingServiceServer
	sink     Sink
	clusters func() ([]string, <-chan struct{})
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger
	streams  atomic.Uint64
}

// NewServer returns a server that feeds sink.
func NewServer(sink Sink, opts Options) *Server {
	s := &Server{sink: sink, clusters: opts.Clusters, interval: opts.Interval, now: opts.Now, log: opts.Logger}
	if s.interval <= 0 {
		s.interval = DefaultInterval
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// Register adds the service to a gRPC server (normally the one serving xDS, so lrs_server self works).
func (s *Server) Register(g grpc.ServiceRegistrar) {
	lrsv3.RegisterLoadReportingServiceServer(g, s)
}

// StreamLoadStats serves one client's stream until it ends.
func (s *Server) StreamLoadStats(stream grpc.BidiStreamingServer[lrsv3.LoadStatsRequest, lrsv3.LoadStatsResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return ignoreEnd(err)
	}
	node := first.GetNode()
	if node == nil {
		return status.Error(codes.InvalidArgument, "lrs: the first LoadStatsRequest must carry the node")
	}
	r := reporterFor(node, s.streams.Add(1))
	log := s.log.With("reporter", r.id, "kind", r.kind)
	defer s.sink.Forget(r.id)
	log.Debug("lrs stream started")
	defer log.Debug("lrs stream ended")

	if s.clusters != nil && nodeKind(node) == wire.NodeEnvoy {
		// The sender owns stream.Send from here; it stops when this handler returns.
		ctx, cancel := context.WithCancel(stream.Context())
		sent := make(chan error, 1)
		go func() { sent <- s.sendClusters(ctx, stream) }()
		defer func() { <-sent }()
		defer cancel()
	} else if err := stream.Send(&lrsv3.LoadStatsResponse{
		SendAllClusters:       true,
		LoadReportingInterval: durationpb.New(s.interval),
	}); err != nil {
		return fmt.Errorf("lrs: answering %s: %w", r.id, err)
	}
	// Envoy may put stats in its first request already.
	r.ingest(s, first.GetClusterStats())
	for {
		req, err := stream.Recv()
		if err != nil {
			return ignoreEnd(err)
		}
		r.ingest(s, req.GetClusterStats())
	}
}

// sendClusters asks an Envoy for the clusters worth reporting, and again whenever they change,
// until ctx is done.
func (s *Server) sendClusters(ctx context.Context, stream grpc.BidiStreamingServer[lrsv3.LoadStatsRequest, lrsv3.LoadStatsResponse]) error {
	for {
		names, changed := s.clusters()
		if err := stream.Send(&lrsv3.LoadStatsResponse{
			Clusters:              names,
			LoadReportingInterval: durationpb.New(s.interval),
		}); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// reporter is one stream's view: who it is and which clusters it reported last time.
type reporter struct {
	id   string
	kind metrics.Kind
	last map[string]bool
}

func reporterFor(node *corev3.Node, stream uint64) *reporter {
	kind := metrics.DataPlane
	if nodeKind(node) == wire.NodeActivator {
		kind = metrics.Activator
	}
	return &reporter{id: fmt.Sprintf("%s#%d", node.GetId(), stream), kind: kind, last: map[string]bool{}}
}

// nodeKind tells the kind of a reporter by wire's rule, from its node.
func nodeKind(node *corev3.Node) wire.NodeKind {
	return wire.ClassifyNode(node.GetMetadata().GetFields()[wire.NodeKindMetadataKey].GetStringValue(), node.GetUserAgentName())
}

// ingest turns one request's cluster stats into one report per cluster, and a zero report for every
// cluster this reporter reported last time and left out now (gRPC-Go leaves idle clusters out).
func (r *reporter) ingest(s *Server, stats []*endpointv3.ClusterStats) {
	at := s.now()
	reports := map[string]*metrics.Report{}
	for _, cs := range stats {
		name := cs.GetClusterName()
		if name == "" {
			name = cs.GetClusterServiceName()
		}
		if name == "" {
			continue
		}
		rep := reports[name]
		if rep == nil {
			rep = &metrics.Report{Reporter: r.id, Kind: r.kind, Cluster: name, At: at}
			reports[name] = rep
		}
		// Several entries for one cluster (one per EDS service name) describe disjoint requests.
		rep.Interval = max(rep.Interval, cs.GetLoadReportInterval().AsDuration())
		for _, l := range cs.GetUpstreamLocalityStats() {
			rep.InProgress += l.GetTotalRequestsInProgress()
			rep.Issued += l.GetTotalIssuedRequests()
			rep.Succeeded += l.GetTotalSuccessfulRequests()
			rep.Errored += l.GetTotalErrorRequests()
		}
	}
	for name := range r.last {
		if reports[name] == nil {
			s.sink.Report(metrics.Report{Reporter: r.id, Kind: r.kind, Cluster: name, Interval: s.interval, At: at})
			delete(r.last, name)
		}
	}
	for name, rep := range reports {
		s.sink.Report(*rep)
		r.last[name] = true
	}
}

// ignoreEnd turns the normal ends of a stream (the client closed it, or the server is stopping) into nil.
func ignoreEnd(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		return nil
	}
	return fmt.Errorf("lrs: receiving: %w", err)
}
