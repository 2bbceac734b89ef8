package xdsclient

import (
	"fmt"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/sluice-dev/sluice/activator/routes"
	"github.com/sluice-dev/sluice/wire"
)

// Host reads a host's routes from its per-host RouteConfiguration, as the control plane writes
// it for gRPC clients: the virtual host named by the host, whose routes each match every path,
// optionally only requests with one exact Knative-Serving-Tag, and send to one cluster or to
// weighted clusters. Anything else is an error rather than a guess: a route the activator
// misreads would send requests to the wrong revision.
func Host(rc *routev3.RouteConfiguration) (routes.Host, error) {
	name := rc.GetName()
	h := routes.Host{Name: name}
	i := slices.IndexFunc(rc.GetVirtualHosts(), func(vh *routev3.VirtualHost) bool {
		return slices.ContainsFunc(vh.GetDomains(), func(d string) bool { return strings.EqualFold(d, name) })
	})
	if i < 0 {
		return h, fmt.Errorf("RouteConfiguration %q: no virtual host for domain %q", name, name)
	}
	vh := rc.GetVirtualHosts()[i]
	for j, r := range vh.GetRoutes() {
		rt, err := route(r)
		if err != nil {
			return h, fmt.Errorf("RouteConfiguration %q: route %d: %w", name, j, err)
		}
		h.Routes = append(h.Routes, rt)
	}
	return h, nil
}

func route(r *routev3.Route) (routes.Route, error) {
	var rt routes.Route
	m := r.GetMatch()
	if p, ok := m.GetPathSpecifier().(*routev3.RouteMatch_Prefix); !ok || p.Prefix != "/" {
		return rt, fmt.Errorf("match: want prefix \"/\", got %v", m.GetPathSpecifier())
	}
	if len(m.GetQueryParameters()) > 0 || m.GetRuntimeFraction() != nil || m.GetGrpc() != nil || m.GetTlsContext() != nil ||
		len(m.GetDynamicMetadata()) > 0 || m.GetFilterState() != nil || m.GetCaseSensitive() != nil {
		return rt, fmt.Errorf("match: only a path prefix and a tag header are understood, got %v", m)
	}
	switch hs := m.GetHeaders(); len(hs) {
	case 0:
	case 1:
		tag, err := tagOf(hs[0])
		if err != nil {
			return rt, err
		}
		rt.Tag = tag
	default:
		return rt, fmt.Errorf("match: %d header matchers, want at most one", len(hs))
	}
	a := r.GetRoute()
	if a == nil {
		return rt, fmt.Errorf("action: want a route action, got %T", r.GetAction())
	}
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if cs.Cluster == "" {
			return rt, fmt.Errorf("action: empty cluster")
		}
		rt.Targets = []routes.Target{{Cluster: cs.Cluster, Weight: 1}}
	case *routev3.RouteAction_WeightedClusters:
		for _, wc := range cs.WeightedClusters.GetClusters() {
			if wc.GetName() == "" {
				return rt, fmt.Errorf("action: a weighted cluster without a name")
			}
			rt.Targets = append(rt.Targets, routes.Target{Cluster: wc.GetName(), Weight: wc.GetWeight().GetValue()})
		}
		if len(rt.Targets) == 0 {
			return rt, fmt.Errorf("action: no weighted clusters")
		}
	default:
		return rt, fmt.Errorf("action: want a cluster or weighted clusters, got %T", a.GetClusterSpecifier())
	}
	return rt, nil
}

// tagOf reads a tag route's header matcher: Knative-Serving-Tag equal to the tag.
func tagOf(hm *routev3.HeaderMatcher) (string, error) {
	if !strings.EqualFold(hm.GetName(), wire.HeaderTagLower) {
		return "", fmt.Errorf("match: header %q, want only %q", hm.GetName(), wire.HeaderTagLower)
	}
	if hm.GetInvertMatch() || hm.GetTreatMissingHeaderAsEmpty() {
		return "", fmt.Errorf("match: header %q: inverted or missing-as-empty matches are not understood", hm.GetName())
	}
	var tag string
	switch s := hm.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		sm := s.StringMatch
		e, ok := sm.GetMatchPattern().(*matcherv3.StringMatcher_Exact)
		if !ok || sm.GetIgnoreCase() {
			return "", fmt.Errorf("match: header %q: want an exact, case-sensitive match", hm.GetName())
		}
		tag = e.Exact
	case *routev3.HeaderMatcher_ExactMatch: //nolint:staticcheck // the older spelling of the same match
		tag = s.ExactMatch
	default:
		return "", fmt.Errorf("match: header %q: want an exact match, got %T", hm.GetName(), hm.GetHeaderMatchSpecifier())
	}
	if tag == "" {
		return "", fmt.Errorf("match: header %q: empty tag", hm.GetName())
	}
	return tag, nil
}
