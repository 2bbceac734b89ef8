package xdsclient

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-dev/sluice/activator/instances"
	"github.com/sluice-dev/sluice/activator/routes"
	"github.com/sluice-dev/sluice/wire"
)

// hostRC is a per-host route configuration in the shape envoy/build.go gives gRPC clients: a
// virtual host named by the host, a tag route per tag, then the default route.
func hostRC(host string, tags map[string]string, def ...any) *routev3.RouteConfiguration {
	var rs []*routev3.Route
	for _, tag := range slices.Sorted(func(yield func(string) bool) {
		for k := range tags {
			if !yield(k) {
				return
			}
		}
	}) {
		rs = append(rs, &routev3.Route{
			Match: &routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers: []*routev3.HeaderMatcher{{
					Name: wire.HeaderTagLower,
					HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_Exact{Exact: tag},
					}},
				}},
			},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: tags[tag]}}},
		})
	}
	action := &routev3.RouteAction{}
	if len(def) == 1 {
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: def[0].(string)}
	} else {
		wc := &routev3.WeightedCluster{}
		for i := 0; i < len(def); i += 2 {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: def[i].(string), Weight: wrapperspb.UInt32(uint32(def[i+1].(int)))})
		}
		action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	rs = append(rs, &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: action},
	})
	return &routev3.RouteConfiguration{Name: host, VirtualHosts: []*routev3.VirtualHost{{
		Name: host, Domains: []string{host, host + ":*"}, Routes: rs,
	}}}
}

func TestHostReadsTheControlPlanesShape(t *testing.T) {
	rc := hostRC("hello.default.example.com", map[string]string{"v1": "default/hello-00001"},
		"default/hello-00001", 80, "default/hello-00002", 20)
	got, err := Host(rc)
	if err != nil {
		t.Fatal(err)
	}
	want := routes.Host{Name: "hello.default.example.com", Routes: []routes.Route{
		{Tag: "v1", Targets: []routes.Target{{Cluster: "default/hello-00001", Weight: 1}}},
		{Targets: []routes.Target{{Cluster: "default/hello-00001", Weight: 80}, {Cluster: "default/hello-00002", Weight: 20}}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Host = %+v\nwant %+v", got, want)
	}
}

func TestHostRejectsWhatItCannotRead(t *testing.T) {
	base := func() *routev3.RouteConfiguration {
		return hostRC("h", map[string]string{"v1": "ns/a"}, "ns/a", 50, "ns/b", 50)
	}
	for name, mutate := range map[string]func(rc *routev3.RouteConfiguration){
		"no virtual host for the name": func(rc *routev3.RouteConfiguration) { rc.Name = "other" },
		"path prefix other than /": func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[1].Match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/api"}
		},
		"exact path": func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[1].Match.PathSpecifier = &routev3.RouteMatch_Path{Path: "/"}
		},
		"another header": func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].Match.Headers[0].Name = "x-user"
		},
		"prefix header match": func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].Match.Headers[0].GetStringMatch().MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: "v"}
		},
		"inverted header match": func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].Match.Headers[0].InvertMatch = true
		},
		"two header matchers": func(rc *routev3.RouteConfiguration) {
			m := rc.VirtualHosts[0].Routes[0].Match
			m.Headers = append(m.Headers, m.Headers[0])
		},
		"query parameters": func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[1].Match.QueryParameters = []*routev3.QueryParameterMatcher{{Name: "q"}}
		},
		"redirect": func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[1].Action = &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{}}
		},
		"cluster header": func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[1].GetRoute().ClusterSpecifier = &routev3.RouteAction_ClusterHeader{ClusterHeader: "x"}
		},
		"no weighted clusters": func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[1].GetRoute().GetWeightedClusters().Clusters = nil
		},
		"empty cluster": func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].GetRoute().ClusterSpecifier = &routev3.RouteAction_Cluster{}
		},
	} {
		rc := base()
		mutate(rc)
		if h, err := Host(rc); err == nil {
			t.Errorf("%s: Host = %+v, want an error", name, h)
		}
	}
}

// routeState is a RouteSink that keeps what it was told.
// routeState is a RouteSink that records what the client delivered.
type routeState struct{ *keyed[routes.Host] }

func newRouteState() *routeState { return &routeState{newKeyed[routes.Host]()} }

func (s *routeState) UpdateRoutes(put []routes.Host, removed []string) {
	s.update(put, func(h routes.Host) string { return h.Name }, removed)
}

// muxCache serves load assignments and route configurations, as sluice's server does to activators.
func muxCache(eds, rds *cache.LinearCache) *cache.MuxCache {
	classify := func(typeURL string) string { return typeURL }
	return &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return classify(r.GetTypeUrl()) },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return classify(r.GetTypeUrl()) },
		Caches:        map[string]cache.Cache{TypeURL: eds, RouteTypeURL: rds},
	}
}

// waitRequest waits for a request to the control plane that cond holds of.
func (cp *controlPlane) waitRequest(t *testing.T, what string, cond func(*discoveryv3.DeltaDiscoveryRequest) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if slices.ContainsFunc(cp.requests(), cond) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request %s among %v", what, cp.requests())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSubscribesToHostsRoutesByName(t *testing.T) {
	eds, rds := cache.NewLinearCache(TypeURL), cache.NewLinearCache(RouteTypeURL)
	eds.UpdateResource("default/hello-00001", cla("default/hello-00001", 0, 300, wire.ProtocolH2C))
	rds.UpdateResource("hello.default.example.com", hostRC("hello.default.example.com", nil, "default/hello-00001"))
	rds.UpdateResource("other.default.example.com", hostRC("other.default.example.com", nil, "default/other-00001"))
	cp := startControlPlane(t, muxCache(eds, rds), "127.0.0.1:0")
	revs, hosts := newState(), newRouteState()
	c := startClient(t, cp.addr, Options{Sink: revs, Routes: hosts})
	revs.waitFor(t, "the revision", func(m map[string]instances.Revision) bool { return len(m) == 1 })

	c.SubscribeRoutes("hello.default.example.com", "nope.default.example.com")
	hosts.waitFor(t, "hello's route", func(m map[string]routes.Host) bool {
		h, ok := m["hello.default.example.com"]
		return ok && h.Routes[0].Targets[0].Cluster == "default/hello-00001"
	})
	// The route type's first request names hosts: an empty one would subscribe to every route.
	for _, r := range cp.requests() {
		if r.GetTypeUrl() == RouteTypeURL && len(r.GetResourceNamesSubscribe()) == 0 && r.GetResponseNonce() == "" {
			t.Fatalf("route request without names: %v", r)
		}
	}

	// A change of the route arrives; the host not asked for never does.
	rds.UpdateResource("hello.default.example.com", hostRC("hello.default.example.com", nil, "default/hello-00001", 50, "default/hello-00002", 50))
	hosts.waitFor(t, "hello's new split", func(m map[string]routes.Host) bool {
		return len(m["hello.default.example.com"].Routes[0].Targets) == 2
	})
	// A host asked for that appears later arrives too.
	rds.UpdateResource("nope.default.example.com", hostRC("nope.default.example.com", nil, "default/nope-00001"))
	hosts.waitFor(t, "the late host", func(m map[string]routes.Host) bool { _, ok := m["nope.default.example.com"]; return ok })
	_, other := hosts.get("other.default.example.com")
	if other {
		t.Fatal("got the route of a host never subscribed to")
	}

	// Unsubscribed, its changes stop; its removal from the server is no news either.
	c.UnsubscribeRoutes("nope.default.example.com")
	cp.waitRequest(t, "unsubscribing nope", func(r *discoveryv3.DeltaDiscoveryRequest) bool {
		return slices.Equal(r.GetResourceNamesUnsubscribe(), []string{"nope.default.example.com"})
	})
	// A deleted host is removed from the sink.
	rds.DeleteResource("hello.default.example.com")
	hosts.waitFor(t, "hello removed", func(m map[string]routes.Host) bool { _, ok := m["hello.default.example.com"]; return !ok })
	for _, r := range cp.requests() {
		if r.GetErrorDetail() != nil {
			t.Fatalf("NACK: %v", r)
		}
	}
}

func TestNacksAnUnreadableRouteAndKeepsTheLastGood(t *testing.T) {
	eds, rds := cache.NewLinearCache(TypeURL), cache.NewLinearCache(RouteTypeURL)
	rds.UpdateResource("hello", hostRC("hello", nil, "default/hello-00001"))
	cp := startControlPlane(t, muxCache(eds, rds), "127.0.0.1:0")
	hosts := newRouteState()
	c := startClient(t, cp.addr, Options{Sink: newState(), Routes: hosts})
	c.SubscribeRoutes("hello")
	hosts.waitFor(t, "hello", func(m map[string]routes.Host) bool { return len(m) == 1 })

	bad := hostRC("hello", nil, "default/hello-00002")
	bad.VirtualHosts[0].Routes[0].Match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/admin"}
	rds.UpdateResource("hello", bad)
	cp.waitRequest(t, "NACKing the route", func(r *discoveryv3.DeltaDiscoveryRequest) bool {
		return r.GetTypeUrl() == RouteTypeURL && strings.Contains(r.GetErrorDetail().GetMessage(), "/admin")
	})
	hello, _ := hosts.get("hello")
	got := hello.Routes[0].Targets[0].Cluster
	if got != "default/hello-00001" {
		t.Fatalf("after a NACK, hello goes to %s, want the last good default/hello-00001", got)
	}
}

func TestResubscribesToHostsOnReconnect(t *testing.T) {
	eds, rds := cache.NewLinearCache(TypeURL), cache.NewLinearCache(RouteTypeURL)
	rds.UpdateResource("a", hostRC("a", nil, "ns/a-00001"))
	rds.UpdateResource("b", hostRC("b", nil, "ns/b-00001"))
	cp := startControlPlane(t, muxCache(eds, rds), "127.0.0.1:0")
	hosts := newRouteState()
	c := startClient(t, cp.addr, Options{Sink: newState(), Routes: hosts})
	c.SubscribeRoutes("a", "b")
	hosts.waitFor(t, "a and b", func(m map[string]routes.Host) bool { return len(m) == 2 })

	// While the control plane is down, a changes and b is no longer wanted.
	cp.g.Stop()
	c.UnsubscribeRoutes("b")
	rds.UpdateResource("a", hostRC("a", nil, "ns/a-00002"))
	cp2 := startControlPlane(t, muxCache(eds, rds), cp.addr)
	hosts.waitFor(t, "a's change", func(m map[string]routes.Host) bool {
		return m["a"].Routes[0].Targets[0].Cluster == "ns/a-00002"
	})
	cp2.waitRequest(t, "resubscribing to a only, with its version", func(r *discoveryv3.DeltaDiscoveryRequest) bool {
		_, hasA := r.GetInitialResourceVersions()["a"]
		return r.GetTypeUrl() == RouteTypeURL && slices.Equal(r.GetResourceNamesSubscribe(), []string{"a"}) &&
			hasA && len(r.GetInitialResourceVersions()) == 1
	})
}
