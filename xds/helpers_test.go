package xds

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-dev/sluice/envoy"
)

// syncBuffer collects log output written from stream goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	t    testing.TB
	ctx  context.Context
	srv  *Server
	conn *grpc.ClientConn
	reg  *prometheus.Registry
	logs *syncBuffer
}

// newHarness serves a new Server on a loopback listener. The deadline only
// keeps a broken test from hanging; nothing asserts on time.
func newHarness(t testing.TB) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	srv, err := NewServer(ctx, Options{
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		<-done
	})
	return &harness{t: t, ctx: ctx, srv: srv, conn: conn, reg: reg, logs: logs}
}

func (h *harness) update(res *envoy.Resources) UpdateStats {
	h.t.Helper()
	st, err := h.srv.Update(context.Background(), res)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func envoyNode(id string) *core.Node {
	return &core.Node{Id: id, UserAgentName: "envoy"}
}

func grpcNode(id string) *core.Node {
	return &core.Node{Id: id, UserAgentName: "gRPC Go"}
}

// sotwClient is a raw ADS SotW stream.
type sotwClient struct {
	t      testing.TB
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *core.Node
	cancel context.CancelFunc
}

func (h *harness) sotw(node *core.Node) *sotwClient {
	h.t.Helper()
	ctx, cancel := context.WithCancel(h.ctx)
	h.t.Cleanup(cancel)
	s, err := discovery.NewAggregatedDiscoveryServiceClient(h.conn).StreamAggregatedResources(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return &sotwClient{t: h.t, stream: s, node: node, cancel: cancel}
}

func (c *sotwClient) send(req *discovery.DiscoveryRequest) {
	c.t.Helper()
	req.Node = c.node
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *sotwClient) recv() *discovery.DiscoveryResponse {
	c.t.Helper()
	r, err := c.stream.Recv()
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return r
}

// ack ACKs r, keeping the subscription to names.
func (c *sotwClient) ack(r *discovery.DiscoveryResponse, names ...string) {
	c.t.Helper()
	c.send(&discovery.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce(), ResourceNames: names})
}

// deltaClient is a raw ADS delta stream.
type deltaClient struct {
	t      testing.TB
	stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	node   *core.Node
	cancel context.CancelFunc
}

func (h *harness) delta(node *core.Node) *deltaClient {
	h.t.Helper()
	ctx, cancel := context.WithCancel(h.ctx)
	h.t.Cleanup(cancel)
	s, err := discovery.NewAggregatedDiscoveryServiceClient(h.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return &deltaClient{t: h.t, stream: s, node: node, cancel: cancel}
}

func (c *deltaClient) send(req *discovery.DeltaDiscoveryRequest) {
	c.t.Helper()
	req.Node = c.node
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *deltaClient) recv() *discovery.DeltaDiscoveryResponse {
	c.t.Helper()
	r, err := c.stream.Recv()
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return r
}

func (c *deltaClient) ack(r *discovery.DeltaDiscoveryResponse) {
	c.t.Helper()
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
}

func sotwNames(t testing.TB, r *discovery.DiscoveryResponse) map[string]bool {
	t.Helper()
	out := make(map[string]bool)
	for _, a := range r.GetResources() {
		name, err := encodedName(a.GetValue())
		if err != nil {
			t.Fatal(err)
		}
		out[name] = true
	}
	return out
}

func deltaNames(r *discovery.DeltaDiscoveryResponse) map[string]string {
	out := make(map[string]string)
	for _, res := range r.GetResources() {
		out[res.GetName()] = res.GetVersion()
	}
	return out
}

func ads() *core.ConfigSource {
	return &core.ConfigSource{ResourceApiVersion: core.ApiVersion_V3, ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}}}
}

func cluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads()},
	}
}

func cla(name string, ports ...uint32) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	for _, p := range ports {
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
				Address: "10.0.0.5", PortSpecifier: &core.SocketAddress_PortValue{PortValue: p},
			}}},
		}}})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}}
}

func routeConfig(name, host string, clusters map[string]uint32) *routev3.RouteConfiguration {
	wc := &routev3.WeightedCluster{}
	for _, c := range sortedKeys(clusters) {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: c, Weight: wrapperspb.UInt32(clusters[c])})
	}
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name:    host,
		Domains: []string{host, host + ":*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}}},
		}},
	}}}
}

func hcm(routeName string) *anypb.Any {
	a, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix:     routeName,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: routeName, ConfigSource: ads()}},
	})
	if err != nil {
		panic(err)
	}
	return a
}

func listener(name string, port uint32) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name: name,
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
		}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm(name)},
		}}}},
	}
}

func apiListener(host string) *listenerv3.Listener {
	return &listenerv3.Listener{Name: host, ApiListener: &listenerv3.ApiListener{ApiListener: hcm(host)}}
}

// fixture is n services with two revisions each: 2n clusters and load
// assignments, three route configurations per service (its host and two tag
// hosts, as gRPC sees them), and the two Envoy listeners with their route
// configurations.
func fixture(n int) *envoy.Resources {
	r := &envoy.Resources{
		Clusters:     make(map[string]*clusterv3.Cluster, 2*n),
		Endpoints:    make(map[string]*endpointv3.ClusterLoadAssignment, 2*n),
		Routes:       make(map[string]*routev3.RouteConfiguration, 3*n+2),
		Listeners:    map[string]*listenerv3.Listener{"external": listener("external", 8080), "internal": listener("internal", 8081)},
		APIListeners: make(map[string]*listenerv3.Listener, 3*n),
	}
	for i := range n {
		svc := fmt.Sprintf("svc%d", i)
		revs := map[string]uint32{"default/" + svc + "-00001": 80, "default/" + svc + "-00002": 20}
		for j, rev := range sortedKeys(revs) {
			r.Clusters[rev] = cluster(rev)
			r.Endpoints[rev] = cla(rev, 8080+uint32(j))
		}
		for _, host := range []string{svc + ".default.example.com", "v1-" + svc + ".default.example.com", "v2-" + svc + ".default.example.com"} {
			r.Routes[host] = routeConfig(host, host, revs)
			r.APIListeners[host] = apiListener(host)
		}
	}
	r.Routes["external"] = routeConfig("external", "*", map[string]uint32{"default/svc0-00001": 100})
	r.Routes["internal"] = routeConfig("internal", "*", map[string]uint32{"default/svc0-00001": 100})
	return r
}

// clone copies the maps so a test can change a few entries and keep the other
// pointers, as the translator does.
func clone(r *envoy.Resources) *envoy.Resources {
	return &envoy.Resources{
		Clusters:     cloneMap(r.Clusters),
		Endpoints:    cloneMap(r.Endpoints),
		Routes:       cloneMap(r.Routes),
		Listeners:    cloneMap(r.Listeners),
		APIListeners: cloneMap(r.APIListeners),

		ActivatorEndpoints: cloneMap(r.ActivatorEndpoints),
	}
}

func cloneMap[T proto.Message](m map[string]T) map[string]T {
	out := make(map[string]T, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func endpointClient(h *harness) endpointservice.EndpointDiscoveryServiceClient {
	return endpointservice.NewEndpointDiscoveryServiceClient(h.conn)
}

// metric reads one counter or gauge from the harness's registry.
func (h *harness) metric(name string, labels map[string]string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
