package xdsclient

import (
	"context"
	"net"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluice-dev/sluice/activator/instances"
	"github.com/sluice-dev/sluice/wire"
)

// state is a Sink that keeps what it was told, for tests to wait on.
// state is a Sink that records what the client delivered.
type state struct{ *keyed[instances.Revision] }

func newState() *state { return &state{newKeyed[instances.Revision]()} }

func (s *state) Update(put []instances.Revision, removed []string) {
	s.update(put, func(r instances.Revision) string { return r.Name }, removed)
}

func cla(name string, cc, timeout float64, proto string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	md := map[string]any{wire.MetadataContainerConcurrency: cc, wire.MetadataTimeoutSeconds: timeout, wire.MetadataProtocol: proto}
	st, err := structpb.NewStruct(md)
	if err != nil {
		panic(err)
	}
	loc := &endpointv3.LocalityLbEndpoints{Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{wire.MetadataKey: st}}}
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.ParseUint(port, 10, 32)
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HealthStatus: corev3.HealthStatus_HEALTHY,
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
				Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}},
			}}},
		})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{loc}}
}

// controlPlane is a real go-control-plane delta ADS server on loopback.
type controlPlane struct {
	addr string
	g    *grpc.Server

	mu   sync.Mutex
	reqs []*discoveryv3.DeltaDiscoveryRequest
}

func startControlPlane(t *testing.T, lc cache.Cache, addr string) *controlPlane {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{addr: ln.Addr().String(), g: grpc.NewServer()}
	cb := serverv3.CallbackFuncs{StreamDeltaRequestFunc: func(_ int64, r *discoveryv3.DeltaDiscoveryRequest) error {
		cp.mu.Lock()
		cp.reqs = append(cp.reqs, r)
		cp.mu.Unlock()
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	srv := serverv3.NewServer(ctx, lc, cb)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(cp.g, srv)
	go cp.g.Serve(ln)
	t.Cleanup(func() { cp.g.Stop(); cancel() })
	return cp
}

func (cp *controlPlane) requests() []*discoveryv3.DeltaDiscoveryRequest {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]*discoveryv3.DeltaDiscoveryRequest(nil), cp.reqs...)
}

func runClient(t *testing.T, addr string, sink instances.Sink) {
	t.Helper()
	startClient(t, addr, Options{Sink: sink})
}

// startClient runs a Client with opts (Conn, Node and backoffs filled in) until the test ends.
func startClient(t *testing.T, addr string, opts Options) *Client {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "activator-test", UserAgentName: wire.ActivatorUserAgent}
	opts.Conn, opts.Node, opts.MinBackoff, opts.MaxBackoff = conn, node, time.Millisecond, 10*time.Millisecond
	c := New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run: %v, want context.Canceled", err)
		}
		conn.Close()
	})
	return c
}

func TestLearnsRevisionsAndTheirChanges(t *testing.T) {
	lc := cache.NewLinearCache(TypeURL)
	lc.UpdateResource("default/a-00001", cla("default/a-00001", 0, 300, wire.ProtocolHTTP1, "10.0.0.1:8080", "10.0.0.2:8080"))
	lc.UpdateResource("default/b-00001", cla("default/b-00001", 4, 30, wire.ProtocolH2C))
	cp := startControlPlane(t, lc, "127.0.0.1:0")
	s := newState()
	runClient(t, cp.addr, s)

	want := map[string]instances.Revision{
		"default/a-00001": {Name: "default/a-00001", Timeout: 300 * time.Second, Protocol: instances.HTTP1, Addrs: []string{"10.0.0.1:8080", "10.0.0.2:8080"}},
		"default/b-00001": {Name: "default/b-00001", ContainerConcurrency: 4, Timeout: 30 * time.Second, Protocol: instances.H2C},
	}
	s.waitFor(t, "both revisions", func(m map[string]instances.Revision) bool { return reflect.DeepEqual(m, want) })

	first := cp.requests()[0]
	if first.GetTypeUrl() != TypeURL || len(first.GetResourceNamesSubscribe()) != 0 || first.GetNode().GetId() != "activator-test" {
		t.Fatalf("first request = %v, want a wildcard CLA subscription with the node", first)
	}

	// b scales from zero; a is deleted.
	lc.UpdateResource("default/b-00001", cla("default/b-00001", 4, 30, wire.ProtocolH2C, "10.0.0.3:9000"))
	lc.DeleteResource("default/a-00001")
	s.waitFor(t, "b's instance and a gone", func(m map[string]instances.Revision) bool {
		_, hasA := m["default/a-00001"]
		return !hasA && len(m["default/b-00001"].Addrs) == 1 && m["default/b-00001"].Addrs[0] == "10.0.0.3:9000"
	})
	for _, r := range cp.requests()[1:] {
		if r.GetResponseNonce() == "" || r.GetErrorDetail() != nil {
			t.Fatalf("request after a response = %v, want an ACK", r)
		}
	}
}

func TestNacksUnusableResourcesAndKeepsTheLastGood(t *testing.T) {
	lc := cache.NewLinearCache(TypeURL)
	lc.UpdateResource("default/a-00001", cla("default/a-00001", 1, 300, wire.ProtocolHTTP1, "10.0.0.1:8080"))
	cp := startControlPlane(t, lc, "127.0.0.1:0")
	s := newState()
	runClient(t, cp.addr, s)
	s.waitFor(t, "a", func(m map[string]instances.Revision) bool { return len(m) == 1 })

	bad := cla("default/a-00001", 1, 300, "http3", "10.0.0.9:8080")
	lc.UpdateResource("default/a-00001", bad)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var nack *discoveryv3.DeltaDiscoveryRequest
		for _, r := range cp.requests() {
			if r.GetErrorDetail() != nil {
				nack = r
			}
		}
		if nack != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no NACK of a resource with protocol http3")
		}
		time.Sleep(time.Millisecond)
	}
	a, _ := s.get("default/a-00001")
	got := a.Addrs
	if len(got) != 1 || got[0] != "10.0.0.1:8080" {
		t.Fatalf("after a NACK, a's instances = %v, want the last good [10.0.0.1:8080]", got)
	}

	lc.UpdateResource("default/a-00001", cla("default/a-00001", 1, 300, wire.ProtocolHTTP1, "10.0.0.2:8080"))
	s.waitFor(t, "the fixed a", func(m map[string]instances.Revision) bool {
		return len(m["default/a-00001"].Addrs) == 1 && m["default/a-00001"].Addrs[0] == "10.0.0.2:8080"
	})
}

func TestReconnectsAndCatchesUp(t *testing.T) {
	lc := cache.NewLinearCache(TypeURL)
	lc.UpdateResource("default/a-00001", cla("default/a-00001", 0, 300, wire.ProtocolHTTP1))
	lc.UpdateResource("default/b-00001", cla("default/b-00001", 0, 300, wire.ProtocolHTTP1))
	cp := startControlPlane(t, lc, "127.0.0.1:0")
	s := newState()
	runClient(t, cp.addr, s)
	s.waitFor(t, "a and b", func(m map[string]instances.Revision) bool { return len(m) == 2 })

	// The control plane goes away; while it is down, a is deleted and c created.
	cp.g.Stop()
	lc.DeleteResource("default/a-00001")
	lc.UpdateResource("default/c-00001", cla("default/c-00001", 0, 300, wire.ProtocolHTTP1))
	cp2 := startControlPlane(t, lc, cp.addr)

	s.waitFor(t, "b and c only", func(m map[string]instances.Revision) bool {
		_, a := m["default/a-00001"]
		_, b := m["default/b-00001"]
		_, c := m["default/c-00001"]
		return !a && b && c
	})
	if first := cp2.requests()[0]; len(first.GetInitialResourceVersions()) != 2 {
		t.Fatalf("resubscription = %v, want the two held resources' versions", first)
	}
}

func TestRevisionRejectsMalformedAssignments(t *testing.T) {
	good := cla("ns/r", 2, 10, wire.ProtocolH2C, "[::1]:80")
	if r, err := Revision(good); err != nil || r.Addrs[0] != "[::1]:80" {
		t.Fatalf("Revision(good) = %+v, %v", r, err)
	}
	for name, c := range map[string]*endpointv3.ClusterLoadAssignment{
		"no locality":      {ClusterName: "ns/r"},
		"two localities":   {ClusterName: "ns/r", Endpoints: append(good.Endpoints, good.Endpoints...)},
		"no metadata":      {ClusterName: "ns/r", Endpoints: []*endpointv3.LocalityLbEndpoints{{}}},
		"bad protocol":     cla("ns/r", 2, 10, "spdy"),
		"fractional cc":    cla("ns/r", 2.5, 10, wire.ProtocolHTTP1),
		"negative timeout": cla("ns/r", 2, -1, wire.ProtocolHTTP1),
		"proxied a string": withProxied(cla("ns/r", 2, 10, wire.ProtocolHTTP1), structpb.NewStringValue("yes")),
	} {
		if _, err := Revision(c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func withProxied(c *endpointv3.ClusterLoadAssignment, v *structpb.Value) *endpointv3.ClusterLoadAssignment {
	c.Endpoints[0].Metadata.FilterMetadata[wire.MetadataKey].Fields[wire.MetadataProxied] = v
	return c
}

func TestRevisionReadsProxied(t *testing.T) {
	for _, c := range []struct {
		v    *structpb.Value
		want bool
	}{{nil, false}, {structpb.NewBoolValue(false), false}, {structpb.NewBoolValue(true), true}} {
		a := cla("ns/r", 0, 10, wire.ProtocolHTTP1)
		if c.v != nil {
			a = withProxied(a, c.v)
		}
		if r, err := Revision(a); err != nil || r.Proxied != c.want {
			t.Errorf("proxied %v: Revision = %+v, %v, want Proxied %v", c.v, r, err, c.want)
		}
	}
}
