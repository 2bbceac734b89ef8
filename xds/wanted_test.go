package xds

import (
	"maps"
	"slices"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluice-dev/sluice/envoy"
	"github.com/sluice-dev/sluice/wire"
)

// waitWanted waits for WantedHosts to be want, taking WantedChanges' signals; the harness's
// deadline ends a test that never gets there.
func (h *harness) waitWanted(want ...string) {
	h.t.Helper()
	slices.Sort(want)
	for {
		got := slices.Sorted(maps.Keys(h.srv.WantedHosts()))
		if slices.Equal(got, want) {
			return
		}
		select {
		case <-h.srv.WantedChanges():
		case <-h.ctx.Done():
			h.t.Fatalf("wanted hosts %v; want %v", got, want)
		}
	}
}

// The hosts gRPC clients want are the LDS names their streams subscribe to, SotW and delta,
// counted per stream: a name stays wanted while any gRPC stream subscribes to it. Envoy's
// subscriptions and other types do not count. A watch for a host nobody built yet waits, and
// adding the resource answers it.
func TestWantedHosts(t *testing.T) {
	h := newHarness(t)
	const a, b, c = "a.default.example.com", "b.default.example.com", "c.default.example.com"

	// Not counted: Envoy's LDS, gRPC's RDS.
	env := h.delta(envoyNode("envoy"))
	env.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType, ResourceNamesSubscribe: []string{"external", c}})
	g := h.delta(grpcNode("grpc-delta"))
	g.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResourceNamesSubscribe: []string{c}})
	g.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType, ResourceNamesSubscribe: []string{a}})
	h.waitWanted(a)

	s := h.sotw(grpcNode("grpc-sotw"))
	s.send(&discovery.DiscoveryRequest{TypeUrl: resource.ListenerType, ResourceNames: []string{a, b}})
	h.waitWanted(a, b)
	// Nothing built yet: the SotW reply to a versionless request is empty and the watch waits.
	r := s.recv()
	if len(r.GetResources()) != 0 {
		t.Fatalf("SotW reply before anything was built: %v", sotwNames(t, r))
	}
	s.ack(r, a, b) // as gRPC-Go does: the next watch then waits for a change

	// The API listener of b appears: both watches are answered.
	h.update(&envoy.Resources{APIListeners: map[string]*listenerv3.Listener{a: apiListener(a), b: apiListener(b)}})
	for got := map[string]bool{}; !got[a] || !got[b]; {
		r = s.recv()
		maps.Copy(got, sotwNames(t, r))
		s.ack(r, a, b)
	}
	if r := g.recv(); r.GetTypeUrl() != resource.ListenerType || deltaNames(r)[a] == "" {
		t.Fatalf("delta gRPC client got %v of %s; want the API listener %s", deltaNames(r), r.GetTypeUrl(), a)
	}

	// a stays wanted while the SotW stream holds it; b goes when it lets go.
	g.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType, ResourceNamesUnsubscribe: []string{a}})
	s.ack(r, a) // a SotW client changes its subscription with the last response's nonce
	h.waitWanted(a)
	// A stream's end lets go of all it held.
	s.cancel()
	h.waitWanted()
}

// With a builder of wanted hosts (WantedSnapshot), a gRPC client's request for a host nobody
// wanted before is held until the builder served it. A SotW client reconnecting after a restart
// sends the old server's version, which LinearCache answers at once: without the hold that
// reply would lack the listener, and gRPC would take it as deleted.
func TestWantedHeldUntilServed(t *testing.T) {
	h := newHarness(t)
	const a = "a.default.example.com"
	h.srv.WantedSnapshot() // a builder is on duty
	s := h.sotw(grpcNode("grpc-sotw"))
	s.send(&discovery.DiscoveryRequest{TypeUrl: resource.ListenerType, ResourceNames: []string{a},
		VersionInfo: "an-earlier-sluice-7", ResponseNonce: "7"})
	// The builder's pass: it sees a wanted, builds it, and says so.
	h.waitWanted(a)
	hosts, gen := h.srv.WantedSnapshot()
	if !hosts[a] {
		t.Fatalf("snapshot %v lacks %s", hosts, a)
	}
	h.update(&envoy.Resources{APIListeners: map[string]*listenerv3.Listener{a: apiListener(a)}})
	h.srv.WantedServed(gen)
	if r := s.recv(); !sotwNames(t, r)[a] {
		t.Fatalf("first reply to a reconnecting client: %v; want %s", sotwNames(t, r), a)
	}

	// A delta client's held request too; its stream's end releases it.
	d := h.delta(grpcNode("grpc-delta"))
	const b = "b.default.example.com"
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType, ResourceNamesSubscribe: []string{b},
		InitialResourceVersions: map[string]string{b: "v-of-an-earlier-sluice"}})
	h.waitWanted(a, b)
	d.cancel()
	h.waitWanted(a)
}

// An activator's RDS subscription to a host counts as wanting it: the activator routes a gRPC
// client's request by its host's route configuration, which must be built even once no gRPC
// client subscribes to the host any more.
func TestActivatorWantsItsHosts(t *testing.T) {
	h := newHarness(t)
	const a = "a.default.example.com"
	act := h.delta(&core.Node{Id: "act", Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		wire.NodeKindMetadataKey: structpb.NewStringValue(string(wire.NodeActivator)),
	}}})
	act.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResourceNamesSubscribe: []string{a}})
	h.waitWanted(a)
	act.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResourceNamesUnsubscribe: []string{a}})
	h.waitWanted()
}
