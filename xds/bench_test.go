package xds

import (
	"context"
	"log/slog"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"

	"github.com/sluice-dev/sluice/envoy"
)

const benchServices = 10_000 // 20k clusters and load assignments, 30k route configurations

func benchServer(b *testing.B) (*Server, *envoy.Resources) {
	b.Helper()
	srv, err := NewServer(b.Context(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	res := fixture(benchServices)
	if _, err := srv.Update(context.Background(), res); err != nil {
		b.Fatal(err)
	}
	return srv, res
}

// BenchmarkUpdateNoChange is the baseline: the cost of diffing the full state
// when the translator hands back the same pointers.
func BenchmarkUpdateNoChange(b *testing.B) {
	srv, res := benchServer(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := srv.Update(context.Background(), res); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateOneEndpoint changes one revision's ClusterLoadAssignment per
// Update, as a scale event does.
func BenchmarkUpdateOneEndpoint(b *testing.B) {
	srv, res := benchServer(b)
	states := [2]*envoy.Resources{clone(res), clone(res)}
	states[1].Endpoints[revA] = cla(revA, 9999)
	var bytes, changed int64
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		st, err := srv.Update(context.Background(), states[i%2])
		if err != nil {
			b.Fatal(err)
		}
		bytes += st.Bytes
		changed += int64(st.Changed)
	}
	b.ReportMetric(float64(bytes)/float64(b.N), "pushed-B/op")
	b.ReportMetric(float64(changed)/float64(b.N), "resources/op")
}

// BenchmarkUpdateOneRouteWithDeltaClient changes one route configuration per Update, as a
// traffic split change does, with one delta client subscribed to every route
// configuration receiving each change.
func BenchmarkUpdateOneRouteWithDeltaClient(b *testing.B) {
	h := newHarness(b)
	res := fixture(benchServices)
	if _, err := h.srv.Update(context.Background(), res); err != nil {
		b.Fatal(err)
	}
	names := sortedKeys(res.Routes)
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(h.conn).DeltaAggregatedResources(b.Context(),
		// 30k route configurations in one initial reply is ~11 MB, over
		// gRPC's 4 MiB default; Envoy has no such limit.
		grpc.MaxCallRecvMsgSize(64<<20))
	if err != nil {
		b.Fatal(err)
	}
	recv := func() *discovery.DeltaDiscoveryResponse {
		r, err := stream.Recv()
		if err != nil {
			b.Fatal(err)
		}
		if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}); err != nil {
			b.Fatal(err)
		}
		return r
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: envoyNode("bench"), TypeUrl: resource.RouteType, ResourceNamesSubscribe: names}); err != nil {
		b.Fatal(err)
	}
	if r := recv(); len(r.GetResources()) != len(names) {
		b.Fatalf("initial fetch: %d route configurations", len(r.GetResources()))
	}
	states := [2]*envoy.Resources{clone(res), clone(res)}
	states[1].Routes[hostA] = routeConfig(hostA, hostA, map[string]uint32{revA: 1, "default/svc0-00002": 99})
	var sent int64
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		if _, err := h.srv.Update(context.Background(), states[i%2]); err != nil {
			b.Fatal(err)
		}
		r := recv()
		if len(r.GetResources()) != 1 {
			b.Fatalf("got %d resources, want the one changed", len(r.GetResources()))
		}
		for _, res := range r.GetResources() {
			sent += int64(len(res.GetResource().GetValue()))
		}
	}
	b.ReportMetric(float64(sent)/float64(b.N), "pushed-B/op")
}
