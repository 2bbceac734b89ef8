package lrs

import (
	"context"
	"encoding/json"
	"net"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-dev/sluice/autoscaler/metrics"
)

// blockingBackend holds every UnaryCall until release is closed, so requests stay in flight.
type blockingBackend struct {
	testgrpc.UnimplementedTestServiceServer
	started chan struct{}
	release chan struct{}
}

func (b *blockingBackend) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	b.started <- struct{}{}
	select {
	case <-b.release:
		return &testgrpc.SimpleResponse{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// xdsResources is the least a gRPC client dialing xds:///host needs, with the cluster asking for load
// reports to the management server itself, as sluice's CDS will.
func xdsResources(t *testing.T, host, cluster string, backend *net.TCPAddr) map[resource.Type][]types.Resource {
	ads := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "grpc",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: host,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    host,
				Domains: []string{host},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
				}},
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}},
	}
	return map[resource.Type][]types.Resource{
		resource.ListenerType: {&listenerv3.Listener{Name: host, ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(t, hcm)}}},
		resource.ClusterType: {&clusterv3.Cluster{
			Name:                 cluster,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads},
			LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
			LrsServer:            &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Self{Self: &corev3.SelfConfigSource{}}},
		}},
		resource.EndpointType: {&endpointv3.ClusterLoadAssignment{
			ClusterName: cluster,
			// gRPC-Go refuses a locality without an ID and drops one without a weight; like sluice's EDS.
			Endpoints: []*endpointv3.LocalityLbEndpoints{{Locality: &corev3.Locality{}, LoadBalancingWeight: wrapperspb.UInt32(1), LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
					Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address:       backend.IP.String(),
						PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(backend.Port)},
					}},
				}}},
			}}}},
		}},
	}
}

func serve(t *testing.T, g *grpc.Server) *net.TCPAddr {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); wg.Wait() })
	return lis.Addr().(*net.TCPAddr)
}

// A real gRPC-Go xDS client, told by CDS to report load to its management server, reports requests in
// flight to this server, and the collector sees them; once the requests finish the cluster drops out
// of the client's reports and the server turns that into zero.
func TestGRPCXDSClientReportsLoad(t *testing.T) {
	const host, cluster, nodeID = "hello.default.example.com", "default/hello-00001", "grpc-client"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	backend := &blockingBackend{started: make(chan struct{}, 10), release: make(chan struct{})}
	bg := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(bg, backend)
	backendAddr := serve(t, bg)

	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	snap, err := cachev3.NewSnapshot("1", xdsResources(t, host, cluster, backendAddr))
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.SetSnapshot(ctx, nodeID, snap); err != nil {
		t.Fatal(err)
	}
	sink := &reportChan{reports: make(chan metrics.Report, 1000)}
	cp := grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(cp, serverv3.NewServer(ctx, cache, nil))
	NewServer(sink, Options{Interval: 100 * time.Millisecond}).Register(cp)
	cpAddr := serve(t, cp)

	bootstrap, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      cpAddr.String(),
			"channel_creds":   []any{map[string]any{"type": "insecure"}},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{"id": nodeID},
	})
	if err != nil {
		t.Fatal(err)
	}
	resolver, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+host, grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)

	const inFlight = 3
	calls := make(chan error, inFlight)
	for range inFlight {
		go func() {
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
			calls <- err
		}()
	}
	for range inFlight {
		wait(t, backend.started)
	}

	deadline := time.After(30 * time.Second)
	next := func() metrics.Report {
		select {
		case r := <-sink.reports:
			return r
		case <-deadline:
			t.Fatal("gRPC client's load reports never showed what the test waits for")
			panic("unreachable")
		}
	}
	for r := next(); r.InProgress != inFlight; r = next() {
		if r.Cluster != cluster || r.Kind != metrics.DataPlane {
			t.Fatalf("unexpected report %+v", r)
		}
	}
	close(backend.release)
	for range inFlight {
		if err := wait(t, calls); err != nil {
			t.Fatal(err)
		}
	}
	var succeeded uint64
	for r := next(); ; r = next() {
		succeeded += r.Succeeded
		if r.InProgress == 0 && r.Issued == 0 && r.Succeeded == 0 && succeeded == inFlight {
			break // the cluster went idle, left the client's report, and the server reported zero
		}
	}
}

type reportChan struct{ reports chan metrics.Report }

func (s *reportChan) Report(r metrics.Report) { s.reports <- r }
func (s *reportChan) Forget(string)           {}
