package xds

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluice-dev/sluice/envoy"
	"github.com/sluice-dev/sluice/wire"
)

const (
	hostA = "svc0.default.example.com"
	hostB = "svc1.default.example.com"
	revA  = "default/svc0-00001"
	revB  = "default/svc1-00001"
)

func TestClassifyNode(t *testing.T) {
	override := func(ua, kind string) *core.Node {
		return &core.Node{UserAgentName: ua, Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			wire.NodeKindMetadataKey: structpb.NewStringValue(kind),
		}}}
	}
	for _, tc := range []struct {
		node *core.Node
		want wire.NodeKind
	}{
		{&core.Node{UserAgentName: "envoy"}, wire.NodeEnvoy},
		{&core.Node{UserAgentName: "gRPC Go"}, wire.NodeGRPC},
		{&core.Node{UserAgentName: "gRPC Java"}, wire.NodeGRPC},
		{&core.Node{}, wire.NodeEnvoy},
		{nil, wire.NodeEnvoy},
		{&core.Node{UserAgentName: "curl"}, wire.NodeEnvoy},
		{override("gRPC Go", "envoy"), wire.NodeEnvoy},
		{override("envoy", "GRPC"), wire.NodeGRPC},
		{override("gRPC Go", "bogus"), wire.NodeGRPC},
	} {
		if got := nodeKind(tc.node); got != tc.want {
			t.Errorf("nodeKind(%v) = %s, want %s", tc.node, got, tc.want)
		}
	}
}

func TestUpdateDiffs(t *testing.T) {
	h := newHarness(t)
	res := fixture(3)
	st := h.update(res)
	if want := 6 + 6 + 11 + 2 + 9; st.Changed != want || st.Deleted != 0 || st.Bytes == 0 {
		t.Fatalf("first update: %+v, want %d changed", st, want)
	}
	if st := h.update(res); st != (UpdateStats{}) {
		t.Fatalf("same pointers: %+v, want nothing", st)
	}
	// Equal content behind new pointers is not a change either.
	equal := fixture(3)
	if st := h.update(equal); st != (UpdateStats{}) {
		t.Fatalf("equal content: %+v, want nothing", st)
	}
	next := clone(equal)
	next.Endpoints[revA] = cla(revA, 9090)
	delete(next.Clusters, revB)
	st = h.update(next)
	if st.Changed != 1 || st.Deleted != 1 || st.Bytes == 0 {
		t.Fatalf("one changed, one deleted: %+v", st)
	}
	if _, ok := h.srv.Version(resource.ClusterType, revB, wire.NodeEnvoy); ok {
		t.Error("deleted cluster still has a version")
	}

	bad := clone(next)
	bad.Clusters["wrong-key"] = cluster("other")
	if _, err := h.srv.Update(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "keyed as") {
		t.Errorf("mis-keyed resource: err = %v", err)
	}
}

// Versions are content hashes: a second server holding the same resources gives
// the same versions, and they are what delta puts on the wire.
func TestVersionsFromContent(t *testing.T) {
	a, b := newHarness(t), newHarness(t)
	a.update(fixture(2))
	b.update(fixture(2))
	va, _ := a.srv.Version(resource.RouteType, hostA, wire.NodeEnvoy)
	vb, _ := b.srv.Version(resource.RouteType, hostA, wire.NodeGRPC)
	if va == "" || va != vb {
		t.Fatalf("versions differ across servers: %q vs %q", va, vb)
	}
}

func TestDeltaInitialFetchAndOneRouteChange(t *testing.T) {
	h := newHarness(t)
	res := fixture(3)
	h.update(res)

	c := h.delta(envoyNode("gw-1"))
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResourceNamesSubscribe: []string{hostA, hostB, "external"}})
	r := c.recv()
	if got := deltaNames(r); len(got) != 3 || got[hostA] == "" || got[hostB] == "" || got["external"] == "" {
		t.Fatalf("initial RDS: %v", got)
	}
	c.ack(r)

	next := clone(res)
	next.Routes[hostA] = routeConfig(hostA, hostA, map[string]uint32{revA: 50, "default/svc0-00002": 50})
	if st := h.update(next); st.Changed != 1 {
		t.Fatalf("update: %+v", st)
	}
	r = c.recv()
	want, _ := h.srv.Version(resource.RouteType, hostA, wire.NodeEnvoy)
	if got := deltaNames(r); len(got) != 1 || got[hostA] != want || len(r.GetRemovedResources()) != 0 {
		t.Fatalf("after one route change got %v removed %v, want only %s@%s", got, r.GetRemovedResources(), hostA, want)
	}
}

func TestSotwOnlyChangedRoutesAndEndpoints(t *testing.T) {
	h := newHarness(t)
	res := fixture(3)
	h.update(res)

	c := h.sotw(envoyNode("gw-1"))
	routes := []string{hostA, hostB}
	c.send(&discovery.DiscoveryRequest{TypeUrl: resource.RouteType, ResourceNames: routes})
	r := c.recv()
	if got := sotwNames(t, r); len(got) != 2 {
		t.Fatalf("initial RDS: %v", got)
	}
	c.ack(r, routes...)
	clas := []string{revA, revB}
	c.send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: clas})
	e := c.recv()
	if got := sotwNames(t, e); len(got) != 2 {
		t.Fatalf("initial EDS: %v", got)
	}
	c.ack(e, clas...)

	next := clone(res)
	next.Routes[hostB] = routeConfig(hostB, hostB, map[string]uint32{revB: 100})
	h.update(next)
	r = c.recv()
	if got := sotwNames(t, r); r.GetTypeUrl() != resource.RouteType || len(got) != 1 || !got[hostB] {
		t.Fatalf("after one route change: %s %v", r.GetTypeUrl(), got)
	}
	c.ack(r, routes...)

	next = clone(next)
	next.Endpoints[revA] = cla(revA, 8080, 8081)
	h.update(next)
	e = c.recv()
	if got := sotwNames(t, e); e.GetTypeUrl() != resource.EndpointType || len(got) != 1 || !got[revA] {
		t.Fatalf("after one endpoint change: %s %v", e.GetTypeUrl(), got)
	}
}

// A NACK is logged and counted, the rejected resources are not sent again, and
// another node keeps getting updates.
func TestNACK(t *testing.T) {
	h := newHarness(t)
	res := fixture(1)
	h.update(res)

	bad := h.sotw(envoyNode("gw-bad"))
	bad.send(&discovery.DiscoveryRequest{TypeUrl: resource.ListenerType})
	r := bad.recv()
	// The first response rejected: the client has no version to report.
	bad.send(&discovery.DiscoveryRequest{TypeUrl: resource.ListenerType, ResponseNonce: r.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "listener external: bad filter"}})

	good := h.delta(envoyNode("gw-good"))
	good.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType})
	gr := good.recv()
	good.ack(gr)

	next := clone(res)
	next.Listeners["internal"] = listener("internal", 9081)
	h.update(next)

	// LDS is full-state in SotW, so a resend loop would show up here as the
	// old listeners again; the next response must be the change.
	r2 := bad.recv()
	if r2.GetVersionInfo() == r.GetVersionInfo() {
		t.Fatalf("rejected version %s sent again", r.GetVersionInfo())
	}
	want, _ := h.srv.Version(resource.ListenerType, "internal", wire.NodeEnvoy)
	if got := deltaNames(good.recv()); len(got) != 1 || got["internal"] != want {
		t.Fatalf("other node after NACK: %v", got)
	}

	if n := h.metric("sluice_xds_nacks_total", map[string]string{"type": "listener", "node_kind": "envoy"}); n != 1 {
		t.Errorf("sluice_xds_nacks_total = %v, want 1", n)
	}
	logs := h.logs.String()
	for _, want := range []string{"level=WARN", "node=gw-bad", "node_kind=envoy", "type=" + resource.ListenerType,
		"external", "internal", "version=" + r.GetVersionInfo(), "nonce=" + r.GetNonce(), `error="listener external: bad filter"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("NACK log lacks %q:\n%s", want, logs)
		}
	}
	for _, n := range h.srv.ConnectedNodes() {
		if n.ID == "gw-bad" && (n.LastNACK == nil || n.LastNACK.Message != "listener external: bad filter") {
			t.Errorf("last NACK of gw-bad: %+v", n.LastNACK)
		}
	}
}

func TestDeleteRemovesOnlyThatResource(t *testing.T) {
	h := newHarness(t)
	res := fixture(2)
	h.update(res)

	d := h.delta(envoyNode("gw-delta"))
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType})
	dr := d.recv()
	if len(dr.GetResources()) != 4 {
		t.Fatalf("initial CDS: %v", deltaNames(dr))
	}
	d.ack(dr)
	s := h.sotw(envoyNode("gw-sotw"))
	s.send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType})
	sr := s.recv()
	s.ack(sr)

	next := clone(res)
	delete(next.Clusters, revB)
	h.update(next)

	dr = d.recv()
	if len(dr.GetResources()) != 0 || !slices.Equal(dr.GetRemovedResources(), []string{revB}) {
		t.Fatalf("delta after delete: resources %v removed %v", deltaNames(dr), dr.GetRemovedResources())
	}
	got := sotwNames(t, s.recv())
	if len(got) != 3 || got[revB] {
		t.Fatalf("SotW CDS after delete: %v", got)
	}
}

func TestNodeKindsSeeTheirListeners(t *testing.T) {
	h := newHarness(t)
	h.update(fixture(2))

	e := h.delta(envoyNode("gw"))
	e.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType})
	if got := deltaNames(e.recv()); len(got) != 2 || got["external"] == "" || got["internal"] == "" {
		t.Errorf("Envoy listeners: %v", got)
	}

	g := h.sotw(grpcNode("client"))
	g.send(&discovery.DiscoveryRequest{TypeUrl: resource.ListenerType, ResourceNames: []string{hostA}})
	if got := sotwNames(t, g.recv()); len(got) != 1 || !got[hostA] {
		t.Errorf("gRPC API listener: %v", got)
	}

	gw := h.delta(grpcNode("client-wildcard"))
	gw.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType})
	got := deltaNames(gw.recv())
	if len(got) != 6 || got["external"] != "" {
		t.Errorf("gRPC wildcard listeners: %v", got)
	}
	// Route configurations are shared.
	g.send(&discovery.DiscoveryRequest{TypeUrl: resource.RouteType, ResourceNames: []string{hostA}})
	if got := sotwNames(t, g.recv()); !got[hostA] {
		t.Errorf("gRPC routes: %v", got)
	}
}

func TestUnsupportedType(t *testing.T) {
	h := newHarness(t)
	c := h.sotw(envoyNode("gw"))
	c.send(&discovery.DiscoveryRequest{TypeUrl: resource.SecretType})
	_, err := c.stream.Recv()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), resource.SecretType) {
		t.Fatalf("err = %v, want InvalidArgument naming the type", err)
	}
}

// The per-type services work as well as ADS.
func TestSeparateEDSService(t *testing.T) {
	h := newHarness(t)
	h.update(fixture(1))
	eds, err := endpointClient(h).StreamEndpoints(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := eds.Send(&discovery.DiscoveryRequest{Node: grpcNode("c"), ResourceNames: []string{revA}}); err != nil {
		t.Fatal(err)
	}
	r, err := eds.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := sotwNames(t, r); len(got) != 1 || !got[revA] {
		t.Fatalf("EDS: %v", got)
	}
}

func TestWaitAcked(t *testing.T) {
	h := newHarness(t)
	res := fixture(1)
	h.update(res)

	c := h.delta(envoyNode("gw"))
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{revA}})
	c.ack(c.recv())
	// A node that does not subscribe to the resource does not count.
	other := h.delta(envoyNode("gw-other"))
	other.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"default/svc0-00002"}})
	other.recv()

	next := clone(res)
	next.Endpoints[revA] = cla(revA, 7070)
	h.update(next)
	v, ok := h.srv.Version(resource.EndpointType, revA, wire.NodeEnvoy)
	if !ok {
		t.Fatal("no version")
	}
	r := c.recv()

	// Not ACKed yet: a cancelled wait returns the context's error.
	ctx, cancel := context.WithCancel(h.ctx)
	cancel()
	if err := h.srv.WaitAcked(ctx, resource.EndpointType, revA, v); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "gw") {
		t.Fatalf("before ACK: err = %v", err)
	}

	done := make(chan error, 1)
	go func() { done <- h.srv.WaitAcked(h.ctx, resource.EndpointType, revA, v) }()
	c.ack(r)
	if err := <-done; err != nil {
		t.Fatalf("after ACK: %v", err)
	}

	// A node that goes away stops holding the wait up.
	next = clone(next)
	next.Endpoints[revA] = cla(revA, 6060)
	h.update(next)
	v2, _ := h.srv.Version(resource.EndpointType, revA, wire.NodeEnvoy)
	c.recv()
	go func() { done <- h.srv.WaitAcked(h.ctx, resource.EndpointType, revA, v2) }()
	c.cancel()
	if err := <-done; err != nil {
		t.Fatalf("after disconnect: %v", err)
	}

	if err := h.srv.WaitAcked(h.ctx, resource.EndpointType, "no/such", v); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown resource: err = %v", err)
	}
}

// A delta client that reconnects to a new server holding the same resources,
// and says which versions it has, is sent nothing new.
func TestDeltaReconnectAfterRestartSendsNothingNew(t *testing.T) {
	res := fixture(2)
	first := newHarness(t)
	first.update(res)
	c := first.delta(envoyNode("gw"))
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType})
	clusters := c.recv()
	c.ack(clusters)
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResourceNamesSubscribe: []string{hostA, hostB}})
	routes := c.recv()
	c.ack(routes)
	c.cancel()

	second := newHarness(t)
	second.update(fixture(2)) // same content, new pointers, as after a restart
	c = second.delta(envoyNode("gw"))
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, InitialResourceVersions: deltaNames(clusters)})
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResourceNamesSubscribe: []string{hostA, hostB},
		InitialResourceVersions: deltaNames(routes)})

	// The client already has everything: WaitAcked is satisfied by what it
	// reported, before anything is sent. (Requests are processed in order, so
	// once the debug view shows both subscriptions they were seen.)
	vA, _ := second.srv.Version(resource.RouteType, hostA, wire.NodeEnvoy)
	if vA != deltaNames(routes)[hostA] {
		t.Fatalf("version after restart %s, before %s", vA, deltaNames(routes)[hostA])
	}

	// Change one route; every response up to the one carrying it must be
	// empty, and it must carry only that route.
	next := clone(res)
	next.Routes[hostB] = routeConfig(hostB, hostB, map[string]uint32{revB: 100})
	second.update(next)
	for {
		r := c.recv()
		if len(r.GetResources()) == 0 && len(r.GetRemovedResources()) == 0 {
			// The wildcard CDS subscription's first reply is empty by protocol:
			// Envoy waits for it to finish initialising.
			c.ack(r)
			continue
		}
		if got := deltaNames(r); r.GetTypeUrl() != resource.RouteType || len(got) != 1 || got[hostB] == "" {
			t.Fatalf("after reconnect got %s %v removed %v, want only the changed route", r.GetTypeUrl(), got, r.GetRemovedResources())
		}
		break
	}
}

func TestDebugHandler(t *testing.T) {
	h := newHarness(t)
	h.update(fixture(1))
	c := h.sotw(grpcNode("client-1"))
	c.send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, ResourceNames: []string{revA}})
	r := c.recv()
	c.ack(r, revA)
	// The ACK is processed before the next request of the stream; this one
	// subscribes to routes and makes sure the ACK was seen.
	c.send(&discovery.DiscoveryRequest{TypeUrl: resource.RouteType, ResourceNames: []string{hostA}})
	c.recv()

	rec := httptest.NewRecorder()
	h.srv.DebugHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/xds?type=cluster.v3.Cluster", nil))
	var st DebugState
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("%v: %s", err, rec.Body.String())
	}
	want, _ := h.srv.Version(resource.ClusterType, revA, wire.NodeGRPC)
	if len(st.Caches) != 1 || st.Caches[0].Resources[revA] != want {
		t.Errorf("caches: %+v", st.Caches)
	}
	if len(st.Nodes) != 1 {
		t.Fatalf("nodes: %+v", st.Nodes)
	}
	n := st.Nodes[0]
	if n.ID != "client-1" || n.Kind != wire.NodeGRPC || n.Protocol != "sotw" || n.Types[resource.ClusterType].Acked[revA] != want ||
		!slices.Equal(n.Types[resource.ClusterType].Subscribed, []string{revA}) {
		t.Errorf("node: %+v", n)
	}
}

// A service going away: Envoy must get the gateway route configuration that stops naming its
// clusters before the clusters are removed, or requests routed in between find no cluster (503).
func TestUpdateChangedRemovesClustersAfterTheRoutesThatUsedThem(t *testing.T) {
	h := newHarness(t)
	res := fixture(2)
	res.Routes["external"] = routeConfig("external", "*", map[string]uint32{"default/svc0-00001": 50, "default/svc1-00001": 50})
	h.update(res)

	d := h.delta(envoyNode("gw"))
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType})
	d.ack(d.recv())
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResourceNamesSubscribe: []string{"external"}})
	d.ack(d.recv())
	// The server handles a stream's requests in order: once it answers this one, it has handled
	// both ACKs, so both watches are armed. (A watch still waiting for its ACK gets its update only
	// when the ACK arrives; no server can order what it has not been asked for yet.)
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType})
	d.recv()

	// svc1 goes: its clusters and endpoints, and its share of the gateway route.
	next := clone(res)
	var ch envoy.Changes
	for _, rev := range []string{"default/svc1-00001", "default/svc1-00002"} {
		delete(next.Clusters, rev)
		delete(next.Endpoints, rev)
		ch.Clusters = append(ch.Clusters, rev)
		ch.Endpoints = append(ch.Endpoints, rev)
	}
	next.Routes["external"] = routeConfig("external", "*", map[string]uint32{"default/svc0-00001": 100})
	// Named first on purpose: the order of names must not decide the order of pushes.
	ch.Routes = []string{"external"}
	if _, err := h.srv.UpdateChanged(context.Background(), next, ch); err != nil {
		t.Fatal(err)
	}

	first := d.recv()
	if first.GetTypeUrl() != resource.RouteType {
		t.Fatalf("first push after the delete is %s (removed %v); want the route configuration before the clusters go",
			first.GetTypeUrl(), first.GetRemovedResources())
	}
	d.ack(first)
	second := d.recv()
	if second.GetTypeUrl() != resource.ClusterType || len(second.GetRemovedResources()) != 2 {
		t.Fatalf("second push: %s removed %v; want both of svc1's clusters removed", second.GetTypeUrl(), second.GetRemovedResources())
	}
}

// An activator is served its own load assignments (the instances behind a revision that
// gateways may be sending to the activator), by wildcard, and nothing else; its ACKs count for
// WaitAcked on the revision's name.
func TestActivatorNode(t *testing.T) {
	h := newHarness(t)
	res := fixture(1)
	res.ActivatorEndpoints = map[string]*endpointv3.ClusterLoadAssignment{revA: cla(revA, 9001)}
	res.Endpoints[revA] = cla(revA, 8012)
	h.update(res)

	act := &core.Node{Id: "act-1", UserAgentName: wire.ActivatorUserAgent, Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		wire.NodeKindMetadataKey: structpb.NewStringValue(string(wire.NodeActivator)),
	}}}
	if k := nodeKind(act); k != wire.NodeActivator {
		t.Fatalf("nodeKind = %s", k)
	}
	c := h.delta(act)
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType})
	r := c.recv()
	if got := deltaNames(r); len(got) != 1 || got[revA] == "" {
		t.Fatalf("activator EDS: %v", got)
	}
	var got endpointv3.ClusterLoadAssignment
	if err := r.GetResources()[0].GetResource().UnmarshalTo(&got); err != nil {
		t.Fatal(err)
	}
	if p := got.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue(); p != 9001 {
		t.Errorf("activator got port %d, want its own assignment's 9001", p)
	}
	c.ack(r)

	cds := h.delta(act)
	cds.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType})
	if _, err := cds.stream.Recv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "activator") {
		t.Errorf("activator CDS: err = %v, want InvalidArgument naming activators", err)
	}

	next := clone(res)
	next.ActivatorEndpoints = map[string]*endpointv3.ClusterLoadAssignment{revA: cla(revA, 9002)}
	h.update(next)
	v, _ := h.srv.Version(resource.EndpointType, revA, wire.NodeActivator)
	r = c.recv()
	ctx, cancel := context.WithCancel(h.ctx)
	cancel()
	if err := h.srv.WaitAcked(ctx, resource.EndpointType, revA, v); err == nil || !strings.Contains(err.Error(), "act-1") {
		t.Fatalf("before the activator's ACK: err = %v", err)
	}
	c.ack(r)
	if err := h.srv.WaitAcked(h.ctx, resource.EndpointType, revA, v); err != nil {
		t.Fatalf("after ACK: %v", err)
	}
}
