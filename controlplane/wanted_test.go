package controlplane

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-dev/sluice/envoy"
	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/routing/store"
	"github.com/sluice-dev/sluice/xds"
)

// hangGuard only bounds how long a broken test hangs; nothing is asserted about speed.
const hangGuard = 20 * time.Second

// fullPass is the reference for the loop's caches: a fresh translator (wanting what srv's gRPC
// clients want) and a fresh server given the whole of tab.
func fullPass(t *testing.T, srv *xds.Server, tab *routing.Table) *xds.Server {
	t.Helper()
	tr := envoy.NewTranslator(envoy.Options{})
	tr.SetWanted(srv.WantedHosts())
	ref := newServer(t)
	if _, err := ref.Update(context.Background(), tr.Translate(tab)); err != nil {
		t.Fatal(err)
	}
	return ref
}

// serveXDS serves srv on a loopback port and returns a client connection to it.
func serveXDS(t *testing.T, srv *xds.Server) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); g.Stop(); <-done })
	return conn
}

func grpcKindNode(id string) *core.Node { return &core.Node{Id: id, UserAgentName: "gRPC Go"} }

// waitWanted waits until srv's wanted hosts are want. The loop must not be running: this takes
// its WantedChanges signals.
func waitWanted(t *testing.T, srv *xds.Server, want ...string) {
	t.Helper()
	timeout := time.After(hangGuard)
	for {
		got := slices.Sorted(func(yield func(string) bool) {
			for h := range srv.WantedHosts() {
				if !yield(h) {
					return
				}
			}
		})
		slices.Sort(want)
		if slices.Equal(got, want) {
			return
		}
		select {
		case <-srv.WantedChanges():
		case <-timeout:
			t.Fatalf("wanted hosts are %v; want %v", got, want)
		}
	}
}

// ldsDelta is a raw delta ADS stream of a gRPC-kind node that only subscribes; nothing reads it
// (the server's flow control holds what it sends), which is all waitWanted needs.
func ldsDelta(t *testing.T, conn *grpc.ClientConn) func(sub, unsub []string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	s, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := s.Recv(); err != nil {
				return
			}
		}
	}()
	node := grpcKindNode("equivalence")
	return func(sub, unsub []string) {
		t.Helper()
		if err := s.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ListenerType,
			ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub}); err != nil {
			t.Fatal(err)
		}
	}
}

// A gRPC client dials a host whose API listener is not built (nobody wanted it): its LDS
// subscription wakes the loop, whose next pass builds the listener and the route configuration
// it names, and the client's waiting watch is answered. Both protocols, as gRPC-Go speaks SotW
// and other clients delta. Letting go of the host removes both again.
func TestGRPCClientsGetHostsOnDemand(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, y := range []string{
		service("a", "a-v1", "127.0.0.1:9001", ""),
		service("b", "b-v1", "127.0.0.1:9101", ""),
	} {
		if err := applyYAML(st, y)(); err != nil {
			t.Fatal(err)
		}
	}
	srv := newServer(t)
	conn := serveXDS(t, srv)
	passes := make(chan struct{}, 64)
	loop := New(st, Static{}, envoy.NewTranslator(envoy.Options{}), srv, Options{
		Routing: routing.Config{Domain: "example.com"},
		Synced:  func(context.Context, SyncStats) { passes <- struct{}{} },
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- loop.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-passes:
	case <-time.After(hangGuard):
		t.Fatal("no first pass")
	}
	const hostA, hostB = "a.default.example.com", "b.default.example.com"
	apiListeners := func() map[string]string {
		return srv.Debug("").Caches[4].Resources // listeners/grpc
	}
	if got := apiListeners(); len(got) != 0 {
		t.Fatalf("API listeners before any gRPC client wants one: %v", got)
	}

	// Delta.
	dctx, dcancel := context.WithCancel(t.Context())
	defer dcancel()
	ds, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(dctx)
	if err != nil {
		t.Fatal(err)
	}
	dnode := grpcKindNode("delta")
	dsend := func(r *discovery.DeltaDiscoveryRequest) {
		t.Helper()
		r.Node = dnode
		if err := ds.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	// drecv reads (and ACKs) responses until one of typeURL names name as added (or removed).
	drecv := func(typeURL, name string, removed bool) {
		t.Helper()
		for {
			r, err := ds.Recv()
			if err != nil {
				t.Fatal(err)
			}
			dsend(&discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
			if r.GetTypeUrl() != typeURL {
				continue
			}
			if removed && slices.Contains(r.GetRemovedResources(), name) {
				return
			}
			for _, res := range r.GetResources() {
				if !removed && res.GetName() == name {
					return
				}
			}
		}
	}
	dsend(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType, ResourceNamesSubscribe: []string{hostA}})
	drecv(resource.ListenerType, hostA, false)
	dsend(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResourceNamesSubscribe: []string{hostA}})
	drecv(resource.RouteType, hostA, false)

	// SotW, as gRPC-Go: the first reply may come before the listener exists (LinearCache
	// answers a versionless request at once); the client ACKs and its watch waits for it.
	sctx, scancel := context.WithCancel(t.Context())
	defer scancel()
	ss, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	snode := grpcKindNode("sotw")
	req := &discovery.DiscoveryRequest{Node: snode, TypeUrl: resource.ListenerType, ResourceNames: []string{hostB}}
	for got := false; !got; {
		if err := ss.Send(req); err != nil {
			t.Fatal(err)
		}
		r, err := ss.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range r.GetResources() {
			l, err := envoyListenerName(a.GetValue())
			if err != nil {
				t.Fatal(err)
			}
			got = got || l == hostB
		}
		req = &discovery.DiscoveryRequest{Node: snode, TypeUrl: resource.ListenerType, ResourceNames: []string{hostB},
			VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}
	}
	if err := ss.Send(req); err != nil { // ACK
		t.Fatal(err)
	}
	if got := apiListeners(); len(got) != 2 || got[hostA] == "" || got[hostB] == "" {
		t.Fatalf("API listeners = %v; want %s and %s", got, hostA, hostB)
	}

	// The delta client lets go of a: it is removed (and the client told so); b stays.
	dsend(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResourceNamesUnsubscribe: []string{hostA}})
	dsend(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType, ResourceNamesUnsubscribe: []string{hostA}})
	waitGone := func(name string) {
		t.Helper()
		timeout := time.After(hangGuard)
		for apiListeners()[name] != "" || srv.Debug("").Caches[2].Resources[name] != "" {
			select {
			case <-passes:
			case <-timeout:
				t.Fatalf("%s still served after its last gRPC client let go: %v", name, apiListeners())
			}
		}
	}
	waitGone(hostA)
	if got := apiListeners(); got[hostB] == "" {
		t.Fatalf("API listeners = %v; want %s kept", got, hostB)
	}
	// The SotW stream ends: its host goes too.
	scancel()
	waitGone(hostB)
}

// envoyListenerName reads a Listener's name from its encoding.
func envoyListenerName(b []byte) (string, error) {
	l := &listenerv3.Listener{}
	if err := proto.Unmarshal(b, l); err != nil {
		return "", err
	}
	return l.GetName(), nil
}
