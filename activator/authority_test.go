package activator

import (
	"context"
	"net"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-dev/sluice/activator/xdsclient"
	"github.com/sluice-dev/sluice/wire"
)

// h2cCLA is an activator load assignment of an h2c revision, as the control plane writes it.
func h2cCLA(name string, proxied bool, addrs ...string) *endpointv3.ClusterLoadAssignment {
	cla := revisionCLA(name, addrs...)
	f := cla.Endpoints[0].Metadata.FilterMetadata[wire.MetadataKey].Fields
	f[wire.MetadataProtocol] = structpb.NewStringValue(wire.ProtocolH2C)
	f[wire.MetadataContainerConcurrency] = structpb.NewNumberValue(0)
	f[wire.MetadataProxied] = structpb.NewBoolValue(proxied)
	return cla
}

// helloRoutes is the per-host route configuration the control plane serves gRPC clients for
// hello: tag v2 to hello-00002, otherwise half and half.
func helloRoutes() *routev3.RouteConfiguration {
	prefix := &routev3.RouteMatch_Prefix{Prefix: "/"}
	return &routev3.RouteConfiguration{Name: "hello.default.example.com", VirtualHosts: []*routev3.VirtualHost{{
		Name:    "hello.default.example.com",
		Domains: []string{"hello.default.example.com", "hello.default.example.com:*"},
		Routes: []*routev3.Route{{
			Match: &routev3.RouteMatch{PathSpecifier: prefix, Headers: []*routev3.HeaderMatcher{{
				Name: wire.HeaderTagLower,
				HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
					MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "v2"},
				}},
			}}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "default/hello-00002"}}},
		}, {
			Match: &routev3.RouteMatch{PathSpecifier: prefix},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{
				WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
					{Name: "default/hello-00001", Weight: wrapperspb.UInt32(50)},
					{Name: "default/hello-00002", Weight: wrapperspb.UInt32(50)},
				}},
			}}},
		}},
	}}}
}

// grpcBackend is an h2c gRPC instance whose health service answers status for "hello", so a
// test can tell which revision served a call.
func grpcBackend(t *testing.T, status healthpb.HealthCheckResponse_ServingStatus) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("hello", status)
	healthpb.RegisterHealthServer(g, hs)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return ln.Addr().String()
}

// A plain gRPC client (no xDS, no revision headers) reaches revisions through the activator by
// its authority: hello-00001 is at zero (proxied) and scales up when poked; hello-00002 is
// served directly by the gateways, so untagged calls never go there, but its tag's route does.
func TestGRPCClientRoutedByAuthority(t *testing.T) {
	eds, rds := cache.NewLinearCache(xdsclient.TypeURL), cache.NewLinearCache(xdsclient.RouteTypeURL)
	v1 := grpcBackend(t, healthpb.HealthCheckResponse_SERVING)
	v2 := grpcBackend(t, healthpb.HealthCheckResponse_NOT_SERVING)
	eds.UpdateResource("default/hello-00001", h2cCLA("default/hello-00001", true))
	eds.UpdateResource("default/hello-00002", h2cCLA("default/hello-00002", false, v2))
	rds.UpdateResource("hello.default.example.com", helloRoutes())
	rds.UpdateResource("other.default.example.com", helloRoutes()) // never asked for

	subscribed := make(chan []string, 16)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mux := &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        map[string]cache.Cache{xdsclient.TypeURL: eds, xdsclient.RouteTypeURL: rds},
	}
	cb := serverv3.CallbackFuncs{StreamDeltaRequestFunc: func(_ int64, r *discoveryv3.DeltaDiscoveryRequest) error {
		if r.GetTypeUrl() == xdsclient.RouteTypeURL && len(r.GetResourceNamesSubscribe()) > 0 {
			subscribed <- r.GetResourceNamesSubscribe()
		}
		return nil
	}}
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(ctx, mux, cb))
	go g.Serve(ln)
	defer g.Stop()

	// The autoscaler, in short: a poke for hello-00001 gives it an instance.
	poked := make(chan string, 100)
	s := serve(t, Options{ControlPlane: ln.Addr().String(), NodeID: "activator-test", Poke: func(rev string) {
		select {
		case poked <- rev:
		default:
		}
		if rev == "default/hello-00001" {
			eds.UpdateResource(rev, h2cCLA(rev, true, v1))
		}
	}})

	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority("hello.default.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	callCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()

	for i := range 20 {
		resp, err := client.Check(callCtx, &healthpb.HealthCheckRequest{Service: "hello"})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("call %d answered by hello-00002 (%v); only hello-00001 is proxied", i, resp.Status)
		}
	}
	if got := <-poked; got != "default/hello-00001" {
		t.Fatalf("poked %s, want default/hello-00001", got)
	}
	if got := <-subscribed; len(got) != 1 || got[0] != "hello.default.example.com" {
		t.Fatalf("subscribed to %v, want the authority's host only", got)
	}

	tagged := metadata.AppendToOutgoingContext(callCtx, wire.HeaderTagLower, "v2")
	resp, err := client.Check(tagged, &healthpb.HealthCheckRequest{Service: "hello"})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("tag v2: %v, %v; want hello-00002's answer NOT_SERVING", resp, err)
	}
}
