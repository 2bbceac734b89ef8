package envoy

import (
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/wire"
)

func split(ns, rev string, pct uint32) routing.Split {
	return routing.Split{Cluster: routing.ClusterName(ns, rev), Namespace: ns, Revision: rev, Percent: pct}
}

func backend(ns, rev string, p routing.Protocol, eps ...routing.Endpoint) routing.Backend {
	return routing.Backend{Cluster: routing.ClusterName(ns, rev), Namespace: ns, Revision: rev, Protocol: p, Endpoints: eps}
}

func ep(host string, port uint32) routing.Endpoint { return routing.Endpoint{Host: host, Port: port} }

const timeout = 300 * time.Second

// wantSplit is what a request on a route should see: cluster, weight, and the revision header.
type wantSplit struct {
	cluster, revision, namespace string
	weight                       uint32
}

// wantRoute describes one Envoy route in the terms the issue uses.
type wantRoute struct {
	tag     string // expected knative-serving-tag exact match, "" for none
	splits  []wantSplit
	timeout time.Duration
}

func TestTranslateScenarios(t *testing.T) {
	hello1 := split("default", "hello-00001", 100)
	tests := []struct {
		name string
		tab  routing.Table
		// want is per route configuration name, per host, the routes in order.
		want map[string]map[string][]wantRoute
		// check holds scenario-specific assertions on top of want.
		check func(t *testing.T, res *Resources)
	}{
		{
			name: "single revision",
			tab: routing.Table{
				Hosts: []routing.VirtualHost{{
					Name: "hello.default.example.com", Namespace: "default", Route: "hello",
					Routes: []routing.HTTPRoute{{Splits: []routing.Split{hello1}, Timeout: timeout}},
				}},
				Backends: []routing.Backend{backend("default", "hello-00001", routing.HTTP1, ep("10.0.0.5", 8080), ep("10.0.0.6", 8080))},
			},
			want: map[string]map[string][]wantRoute{
				"external": {"hello.default.example.com": {{splits: []wantSplit{{"default/hello-00001", "hello-00001", "default", 100}}, timeout: timeout}}},
				"internal": {},
			},
			check: func(t *testing.T, res *Resources) {
				cla := res.Endpoints["default/hello-00001"]
				if n := len(cla.GetEndpoints()); n != 1 {
					t.Fatalf("localities = %d, want 1", n)
				}
				loc := cla.GetEndpoints()[0]
				if loc.GetLoadBalancingWeight().GetValue() != 1 {
					t.Errorf("locality weight = %v, want 1", loc.GetLoadBalancingWeight())
				}
				var addrs []string
				for _, e := range loc.GetLbEndpoints() {
					sa := e.GetEndpoint().GetAddress().GetSocketAddress()
					addrs = append(addrs, sa.GetAddress()+":"+itoa(sa.GetPortValue()))
				}
				if want := []string{"10.0.0.5:8080", "10.0.0.6:8080"}; !slices.Equal(addrs, want) {
					t.Errorf("endpoints = %v, want %v", addrs, want)
				}
				if c := res.Clusters["default/hello-00001"]; c.GetTypedExtensionProtocolOptions() != nil {
					t.Errorf("HTTP/1 cluster has protocol options %v", c.GetTypedExtensionProtocolOptions())
				}
			},
		},
		{
			name: "80/20 split",
			tab: routing.Table{
				Hosts: []routing.VirtualHost{{
					Name: "hello.default.example.com", Namespace: "default", Route: "hello",
					Routes: []routing.HTTPRoute{{Splits: []routing.Split{split("default", "hello-00001", 80), split("default", "hello-00002", 20)}, Timeout: timeout}},
				}},
				Backends: []routing.Backend{
					backend("default", "hello-00001", routing.HTTP1, ep("10.0.0.5", 8080)),
					backend("default", "hello-00002", routing.HTTP1, ep("10.0.0.6", 8080)),
				},
			},
			want: map[string]map[string][]wantRoute{
				"external": {"hello.default.example.com": {{splits: []wantSplit{
					{"default/hello-00001", "hello-00001", "default", 80},
					{"default/hello-00002", "hello-00002", "default", 20},
				}, timeout: timeout}}},
				"internal": {},
			},
		},
		{
			// v2 gets no traffic on the main host but is reachable by its tag, both by header
			// and on its own host.
			name: "tags with 0% and header routes",
			tab: routing.Table{
				Hosts: []routing.VirtualHost{
					{
						Name: "hello.default.example.com", Namespace: "default", Route: "hello",
						Routes: []routing.HTTPRoute{
							{TagHeader: "v1", Splits: []routing.Split{hello1}, Timeout: timeout},
							{TagHeader: "v2", Splits: []routing.Split{split("default", "hello-00002", 100)}, Timeout: 60 * time.Second},
							{Splits: []routing.Split{hello1}, Timeout: timeout},
						},
					},
					{
						Name: "v1-hello.default.example.com", Namespace: "default", Route: "hello", Tag: "v1",
						Routes: []routing.HTTPRoute{{Splits: []routing.Split{hello1}, Timeout: timeout}},
					},
					{
						Name: "v2-hello.default.example.com", Namespace: "default", Route: "hello", Tag: "v2",
						Routes: []routing.HTTPRoute{{Splits: []routing.Split{split("default", "hello-00002", 100)}, Timeout: 60 * time.Second}},
					},
				},
				Backends: []routing.Backend{
					backend("default", "hello-00001", routing.HTTP1, ep("10.0.0.5", 8080)),
					backend("default", "hello-00002", routing.HTTP1, ep("10.0.0.6", 8080)),
				},
			},
			want: map[string]map[string][]wantRoute{
				"external": {
					"hello.default.example.com": {
						{tag: "v1", splits: []wantSplit{{"default/hello-00001", "hello-00001", "default", 100}}, timeout: timeout},
						{tag: "v2", splits: []wantSplit{{"default/hello-00002", "hello-00002", "default", 100}}, timeout: 60 * time.Second},
						{splits: []wantSplit{{"default/hello-00001", "hello-00001", "default", 100}}, timeout: timeout},
					},
					"v1-hello.default.example.com": {{splits: []wantSplit{{"default/hello-00001", "hello-00001", "default", 100}}, timeout: timeout}},
					"v2-hello.default.example.com": {{splits: []wantSplit{{"default/hello-00002", "hello-00002", "default", 100}}, timeout: 60 * time.Second}},
				},
				"internal": {},
			},
		},
		{
			name: "cluster-local",
			tab: routing.Table{
				Hosts: []routing.VirtualHost{{
					Name: "hello.default.svc.cluster.local", Namespace: "default", Route: "hello", Visibility: routing.ClusterLocal,
					Routes: []routing.HTTPRoute{{Splits: []routing.Split{hello1}, Timeout: timeout}},
				}},
				Backends: []routing.Backend{backend("default", "hello-00001", routing.HTTP1, ep("10.0.0.5", 8080))},
			},
			want: map[string]map[string][]wantRoute{
				"external": {},
				"internal": {"hello.default.svc.cluster.local": {{splits: []wantSplit{{"default/hello-00001", "hello-00001", "default", 100}}, timeout: timeout}}},
			},
		},
		{
			name: "h2c backend",
			tab: routing.Table{
				Hosts: []routing.VirtualHost{{
					Name: "grpc.default.example.com", Namespace: "default", Route: "grpc",
					Routes: []routing.HTTPRoute{{Splits: []routing.Split{split("default", "grpc-00001", 100)}, Timeout: timeout}},
				}},
				Backends: []routing.Backend{backend("default", "grpc-00001", routing.H2C, ep("10.0.0.7", 9000))},
			},
			want: map[string]map[string][]wantRoute{
				"external": {"grpc.default.example.com": {{splits: []wantSplit{{"default/grpc-00001", "grpc-00001", "default", 100}}, timeout: timeout}}},
				"internal": {},
			},
			check: func(t *testing.T, res *Resources) {
				a := res.Clusters["default/grpc-00001"].GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey]
				opts := &upstreamhttpv3.HttpProtocolOptions{}
				if err := a.UnmarshalTo(opts); err != nil {
					t.Fatalf("protocol options: %v", err)
				}
				if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
					t.Errorf("h2c cluster does not force HTTP/2 upstream: %v", opts)
				}
			},
		},
		{
			// A revision that nothing can serve still has its cluster, so routes to it stay
			// valid; requests get 503 until endpoints appear.
			name: "no endpoints",
			tab: routing.Table{
				Hosts: []routing.VirtualHost{{
					Name: "hello.default.example.com", Namespace: "default", Route: "hello",
					Routes: []routing.HTTPRoute{{Splits: []routing.Split{hello1}}},
				}},
				Backends: []routing.Backend{backend("default", "hello-00001", routing.HTTP1)},
			},
			want: map[string]map[string][]wantRoute{
				"external": {"hello.default.example.com": {{splits: []wantSplit{{"default/hello-00001", "hello-00001", "default", 100}}}}},
				"internal": {},
			},
			check: func(t *testing.T, res *Resources) {
				if eps := res.Endpoints["default/hello-00001"].GetEndpoints(); len(eps) != 0 {
					t.Errorf("endpoints = %v, want none", eps)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := NewTranslator(Options{}).Translate(&tt.tab)
			validateResources(t, res)
			checkListeners(t, res, "0.0.0.0", 8080, "0.0.0.0", 8081)
			if got := len(res.Clusters); got != len(tt.tab.Backends) {
				t.Errorf("clusters = %d, want %d", got, len(tt.tab.Backends))
			}
			if got := len(res.Endpoints); got != len(tt.tab.Backends) {
				t.Errorf("load assignments = %d, want %d", got, len(tt.tab.Backends))
			}
			for rcName, hosts := range tt.want {
				checkRouteConfiguration(t, res.Routes[rcName], hosts)
				for host, routes := range hosts {
					// gRPC clients see the same routes in their per-host configuration.
					checkRouteConfiguration(t, res.Routes[host], map[string][]wantRoute{host: routes})
					if res.APIListeners[host] == nil {
						t.Errorf("no API listener for %q", host)
					}
				}
			}
			if got, want := len(res.APIListeners), len(tt.tab.Hosts); got != want {
				t.Errorf("API listeners = %d, want %d", got, want)
			}
			if got, want := len(res.Routes), len(tt.tab.Hosts)+2; got != want {
				t.Errorf("route configurations = %d, want %d", got, want)
			}
			if tt.check != nil {
				tt.check(t, res)
			}
		})
	}
}

func checkRouteConfiguration(t *testing.T, rc *routev3.RouteConfiguration, want map[string][]wantRoute) {
	t.Helper()
	if rc == nil {
		t.Fatalf("missing route configuration")
	}
	if len(rc.GetVirtualHosts()) != len(want) {
		t.Errorf("%s: %d virtual hosts, want %d", rc.GetName(), len(rc.GetVirtualHosts()), len(want))
	}
	for _, vh := range rc.GetVirtualHosts() {
		routes, ok := want[vh.GetName()]
		if !ok {
			t.Errorf("%s: unexpected virtual host %q", rc.GetName(), vh.GetName())
			continue
		}
		if d, w := vh.GetDomains(), []string{vh.GetName(), vh.GetName() + ":*"}; !slices.Equal(d, w) {
			t.Errorf("%s/%s: domains %v, want %v", rc.GetName(), vh.GetName(), d, w)
		}
		if len(vh.GetRoutes()) != len(routes) {
			t.Errorf("%s/%s: %d routes, want %d", rc.GetName(), vh.GetName(), len(vh.GetRoutes()), len(routes))
			continue
		}
		for i, r := range vh.GetRoutes() {
			checkRoute(t, rc.GetName()+"/"+vh.GetName()+"/"+itoa(uint32(i)), r, routes[i])
		}
	}
}

func checkRoute(t *testing.T, where string, r *routev3.Route, want wantRoute) {
	t.Helper()
	m := r.GetMatch()
	if m.GetPrefix() != "/" {
		t.Errorf("%s: prefix %q, want /", where, m.GetPrefix())
	}
	var tag string
	switch hs := m.GetHeaders(); {
	case len(hs) == 1 && hs[0].GetName() == wire.HeaderTagLower:
		tag = hs[0].GetStringMatch().GetExact()
	case len(hs) != 0:
		t.Errorf("%s: unexpected header matchers %v", where, hs)
	}
	if tag != want.tag {
		t.Errorf("%s: tag match %q, want %q", where, tag, want.tag)
	}
	a := r.GetRoute()
	var got []wantSplit
	if c := a.GetCluster(); c != "" {
		rev, ns := headerValues(r.GetRequestHeadersToAdd())
		got = []wantSplit{{c, rev, ns, 100}}
	} else {
		if len(r.GetRequestHeadersToAdd()) != 0 {
			t.Errorf("%s: weighted route sets headers on the route, not per split", where)
		}
		for _, w := range a.GetWeightedClusters().GetClusters() {
			rev, ns := headerValues(w.GetRequestHeadersToAdd())
			got = append(got, wantSplit{w.GetName(), rev, ns, w.GetWeight().GetValue()})
		}
	}
	if !slices.Equal(got, want.splits) {
		t.Errorf("%s: splits %v, want %v", where, got, want.splits)
	}
	var gotTimeout, gotMSD time.Duration
	if a.GetTimeout() != nil {
		gotTimeout = a.GetTimeout().AsDuration()
	}
	if d := a.GetMaxStreamDuration().GetMaxStreamDuration(); d != nil {
		gotMSD = d.AsDuration()
	}
	if gotTimeout != want.timeout || gotMSD != want.timeout {
		t.Errorf("%s: timeout %v, max_stream_duration %v, want %v", where, gotTimeout, gotMSD, want.timeout)
	}
}

// headerValues returns the revision and namespace headers, failing the split (empty values) if
// any header could be appended to a client's value instead of replacing it.
func headerValues(hs []*corev3.HeaderValueOption) (rev, ns string) {
	for _, h := range hs {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			return "", ""
		}
		switch h.GetHeader().GetKey() {
		case wire.HeaderRevision:
			rev = h.GetHeader().GetValue()
		case wire.HeaderNamespace:
			ns = h.GetHeader().GetValue()
		}
	}
	return rev, ns
}

func checkListeners(t *testing.T, res *Resources, extAddr string, extPort uint32, intAddr string, intPort uint32) {
	t.Helper()
	if len(res.Listeners) != 2 {
		t.Errorf("listeners = %d, want 2", len(res.Listeners))
	}
	for _, l := range []struct {
		name string
		addr string
		port uint32
	}{{"external", extAddr, extPort}, {"internal", intAddr, intPort}} {
		lis := res.Listeners[l.name]
		sa := lis.GetAddress().GetSocketAddress()
		if sa.GetAddress() != l.addr || sa.GetPortValue() != l.port {
			t.Errorf("listener %s on %s:%d, want %s:%d", l.name, sa.GetAddress(), sa.GetPortValue(), l.addr, l.port)
		}
		if n := len(lis.GetFilterChains()); n != 1 {
			t.Fatalf("listener %s: %d filter chains, want 1", l.name, n)
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if err := lis.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatalf("listener %s: %v", l.name, err)
		}
		if hcm.GetCodecType() != hcmv3.HttpConnectionManager_AUTO {
			t.Errorf("listener %s: codec %v, want AUTO", l.name, hcm.GetCodecType())
		}
		if hcm.GetRds().GetRouteConfigName() != l.name || hcm.GetRds().GetConfigSource().GetAds() == nil {
			t.Errorf("listener %s: rds %v, want %q over ADS", l.name, hcm.GetRds(), l.name)
		}
		if res.Routes[l.name] == nil {
			t.Errorf("listener %s: its route configuration is missing", l.name)
		}
		if !hcm.GetUseRemoteAddress().GetValue() {
			t.Errorf("listener %s: use_remote_address is off", l.name)
		}
		if u := hcm.GetUpgradeConfigs(); len(u) != 1 || u[0].GetUpgradeType() != "websocket" {
			t.Errorf("listener %s: upgrade configs %v, want websocket", l.name, u)
		}
		if fs := hcm.GetHttpFilters(); len(fs) != 1 || fs[0].GetName() != routerFilterName {
			t.Errorf("listener %s: http filters %v, want [router]", l.name, fs)
		}
	}
}

func TestOptions(t *testing.T) {
	res := NewTranslator(Options{ExternalAddress: "127.0.0.1", ExternalPort: 18080, InternalAddress: "::1", InternalPort: 18081}).
		Translate(&routing.Table{})
	validateResources(t, res)
	checkListeners(t, res, "127.0.0.1", 18080, "::1", 18081)
	// Empty listeners still need their route configurations or Envoy keeps them warming.
	for _, name := range []string{"external", "internal"} {
		if rc := res.Routes[name]; rc == nil || len(rc.GetVirtualHosts()) != 0 {
			t.Errorf("route configuration %s = %v, want empty", name, rc)
		}
	}
}

func TestLoadAssignmentDeduplicates(t *testing.T) {
	// gRPC NACKs an assignment that lists an address twice, so a repeated endpoint in the
	// user's annotation must not take the whole revision down.
	cla := buildLoadAssignment("default/hello-00001", []routing.Endpoint{ep("10.0.0.5", 8080), ep("10.0.0.6", 8080), ep("10.0.0.5", 8080)})
	if n := len(cla.GetEndpoints()[0].GetLbEndpoints()); n != 2 {
		t.Errorf("endpoints = %d, want 2", n)
	}
	if err := validateDeep(cla); err != nil {
		t.Error(err)
	}
}

func TestSameHostInBothVisibilities(t *testing.T) {
	// Only possible with a domain of svc.cluster.local; gRPC has one listener per name, and the
	// external host must win whatever the order.
	ext := routing.VirtualHost{Name: "hello.default.svc.cluster.local", Routes: []routing.HTTPRoute{{Splits: []routing.Split{split("default", "a", 100)}}}}
	loc := routing.VirtualHost{Name: "hello.default.svc.cluster.local", Visibility: routing.ClusterLocal, Routes: []routing.HTTPRoute{{Splits: []routing.Split{split("default", "b", 100)}}}}
	bs := []routing.Backend{backend("default", "a", routing.HTTP1), backend("default", "b", routing.HTTP1)}
	for _, hosts := range [][]routing.VirtualHost{{ext, loc}, {loc, ext}} {
		res := NewTranslator(Options{}).Translate(&routing.Table{Hosts: hosts, Backends: bs})
		validateResources(t, res)
		if c := res.Routes[ext.Name].GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster(); c != "default/a" {
			t.Errorf("gRPC route goes to %q, want the external host's default/a", c)
		}
		if len(res.Routes["external"].GetVirtualHosts()) != 1 || len(res.Routes["internal"].GetVirtualHosts()) != 1 {
			t.Errorf("each listener should keep its own host")
		}
	}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// TestScaledBackend: a scaled revision's gateways may be sent to the activator while the activator
// is told the instances, with what it needs to respect containerConcurrency and the timeout.
func TestScaledBackend(t *testing.T) {
	b := backend("default", "hello-00001", routing.H2C, ep("127.0.0.1", 8012))
	b.Scaled = &routing.Scaled{Instances: []routing.Endpoint{ep("127.0.0.1", 9001), ep("127.0.0.1", 9002)}, ContainerConcurrency: 10, TimeoutSeconds: 60}
	static := backend("default", "bye-00001", routing.HTTP1, ep("10.0.0.1", 80))
	res := NewTranslator(Options{}).Translate(&routing.Table{Backends: []routing.Backend{static, b}})
	validateResources(t, res)

	if got := endpointAddrs(res.Endpoints[b.Cluster]); !slices.Equal(got, []string{"127.0.0.1:8012"}) {
		t.Errorf("gateway endpoints = %v, want the activator", got)
	}
	cla := res.ActivatorEndpoints[b.Cluster]
	if got := endpointAddrs(cla); !slices.Equal(got, []string{"127.0.0.1:9001", "127.0.0.1:9002"}) {
		t.Errorf("activator endpoints = %v, want the instances", got)
	}
	md := cla.GetEndpoints()[0].GetMetadata().GetFilterMetadata()[wire.MetadataKey].GetFields()
	if md[wire.MetadataContainerConcurrency].GetNumberValue() != 10 || md[wire.MetadataTimeoutSeconds].GetNumberValue() != 60 ||
		md[wire.MetadataProtocol].GetStringValue() != wire.ProtocolH2C {
		t.Errorf("activator metadata = %v", md)
	}
	if _, ok := res.ActivatorEndpoints[static.Cluster]; ok {
		t.Errorf("a static revision has an activator load assignment")
	}
	if res.Clusters[static.Cluster].GetLrsServer() != nil {
		t.Errorf("a static revision's cluster asks for load reports")
	}

	// At zero the activator's assignment still names the revision, with no instance.
	b.Scaled = &routing.Scaled{TimeoutSeconds: 60}
	res = NewTranslator(Options{}).Translate(&routing.Table{Backends: []routing.Backend{b}})
	validateResources(t, res)
	if cla := res.ActivatorEndpoints[b.Cluster]; len(cla.GetEndpoints()) != 1 || len(endpointAddrs(cla)) != 0 {
		t.Errorf("activator assignment at zero = %v, want one locality without endpoints", cla)
	}
}

func endpointAddrs(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, loc := range cla.GetEndpoints() {
		for _, lb := range loc.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))))
		}
	}
	slices.Sort(out)
	return out
}
