package envoy

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

type validator interface{ ValidateAll() error }

// validateDeep runs go-control-plane's ValidateAll on m and on every message packed in an Any
// inside it: the generated validators stop at Any, and the HttpConnectionManager inside a
// listener is exactly where mistakes hide.
func validateDeep(m proto.Message) error {
	v, ok := m.(validator)
	if !ok {
		return fmt.Errorf("%T has no ValidateAll", m)
	}
	if err := v.ValidateAll(); err != nil {
		return fmt.Errorf("%T: %w", m, err)
	}
	var errs []string
	walkAnys(m.ProtoReflect(), func(a *anypb.Any) {
		inner, err := a.UnmarshalNew()
		if err != nil {
			errs = append(errs, fmt.Sprintf("unpack %s: %v", a.GetTypeUrl(), err))
			return
		}
		if err := validateDeep(inner); err != nil {
			errs = append(errs, err.Error())
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("%T: %s", m, strings.Join(errs, "; "))
	}
	return nil
}

func walkAnys(m protoreflect.Message, f func(*anypb.Any)) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		f(a)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkAnys(l.Get(i).Message(), f)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				walkAnys(mv.Message(), f)
				return true
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			walkAnys(v.Message(), f)
		}
		return true
	})
}

// validateResources checks every resource with ValidateAll, that each is filed under its own
// name, and that every cluster a route sends to exists.
func validateResources(t *testing.T, res *Resources) {
	t.Helper()
	check := func(kind, key, name string, m proto.Message) {
		t.Helper()
		if key != name {
			t.Errorf("%s filed under %q is named %q", kind, key, name)
		}
		if err := validateDeep(m); err != nil {
			t.Errorf("%s %q: %v", kind, key, err)
		}
	}
	for k, c := range res.Clusters {
		check("cluster", k, c.GetName(), c)
	}
	for k, e := range res.Endpoints {
		check("load assignment", k, e.GetClusterName(), e)
	}
	for k, e := range res.ActivatorEndpoints {
		check("activator load assignment", k, e.GetClusterName(), e)
		if res.Clusters[k].GetLrsServer().GetSelf() == nil {
			t.Errorf("cluster %q of a scaled revision does not ask for load reports", k)
		}
	}
	for k, r := range res.Routes {
		check("route configuration", k, r.GetName(), r)
		for _, vh := range r.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				for _, c := range routeClusters(rt) {
					if res.Clusters[c] == nil {
						t.Errorf("route configuration %q host %q routes to missing cluster %q", k, vh.GetName(), c)
					}
				}
			}
		}
	}
	for k, l := range res.Listeners {
		check("listener", k, l.GetName(), l)
	}
	for k, l := range res.APIListeners {
		check("API listener", k, l.GetName(), l)
	}
	checkGRPCRules(t, res)
}

func routeClusters(r *routev3.Route) []string {
	a := r.GetRoute()
	if c := a.GetCluster(); c != "" {
		return []string{c}
	}
	var cs []string
	for _, w := range a.GetWeightedClusters().GetClusters() {
		cs = append(cs, w.GetName())
	}
	return cs
}

// checkGRPCRules restates what gRPC-Go v1.85's xdsresource package would NACK or silently
// drop (unmarshal_{lds,rds,cds,eds}.go). It cannot call that code (internal), so it mirrors the
// rules that our resources could plausibly break.
func checkGRPCRules(t *testing.T, res *Resources) {
	t.Helper()
	routerURL := "type.googleapis.com/" + string(proto.MessageName(&routerv3.Router{}))
	for name, l := range res.APIListeners {
		hcm := &hcmv3.HttpConnectionManager{}
		if err := l.GetApiListener().GetApiListener().UnmarshalTo(hcm); err != nil {
			t.Errorf("API listener %q: api_listener is not an HttpConnectionManager: %v", name, err)
			continue
		}
		if hcm.GetRds().GetConfigSource().GetAds() == nil {
			t.Errorf("API listener %q: RDS config source is not ADS", name)
		}
		if got := hcm.GetRds().GetRouteConfigName(); got != name || res.Routes[got] == nil {
			t.Errorf("API listener %q: route_config_name %q has no route configuration", name, got)
		}
		fs := hcm.GetHttpFilters()
		if len(fs) == 0 || fs[len(fs)-1].GetTypedConfig().GetTypeUrl() != routerURL {
			t.Errorf("API listener %q: router is not the last http filter: %v", name, fs)
		}
		if hcm.GetXffNumTrustedHops() != 0 || len(hcm.GetOriginalIpDetectionExtensions()) != 0 {
			t.Errorf("API listener %q: xff settings gRPC rejects", name)
		}
		rc := res.Routes[name]
		if len(rc.GetVirtualHosts()) != 1 || !slices.Contains(rc.GetVirtualHosts()[0].GetDomains(), name) {
			t.Errorf("route configuration %q: want one virtual host with domain %q", name, name)
		}
		for _, vh := range rc.GetVirtualHosts() {
			for i, r := range vh.GetRoutes() {
				if r.GetMatch().GetPathSpecifier() == nil {
					t.Errorf("%q route %d: no path specifier", name, i)
				}
				for _, h := range r.GetMatch().GetHeaders() {
					if h.GetName() != strings.ToLower(h.GetName()) {
						t.Errorf("%q route %d: header name %q is not lowercase", name, i, h.GetName())
					}
				}
				var total uint64
				if a := r.GetRoute(); a.GetCluster() != "" {
					total = 1
				} else {
					for _, w := range a.GetWeightedClusters().GetClusters() {
						total += uint64(w.GetWeight().GetValue())
					}
				}
				if total == 0 {
					t.Errorf("%q route %d: no cluster with weight", name, i)
				}
			}
		}
	}
	for name, c := range res.Clusters {
		if c.GetType() != clusterv3.Cluster_EDS || c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
			t.Errorf("cluster %q: want EDS over ADS", name)
		}
		if c.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
			t.Errorf("cluster %q: lb_policy %v", name, c.GetLbPolicy())
		}
		if len(c.GetTransportSocketMatches()) != 0 || c.GetTransportSocket() != nil {
			t.Errorf("cluster %q: transport sockets gRPC would reject", name)
		}
	}
	for name, cla := range res.Endpoints {
		seen := map[string]bool{}
		for _, loc := range cla.GetEndpoints() {
			if loc.GetLocality() == nil || loc.GetLoadBalancingWeight().GetValue() == 0 {
				t.Errorf("load assignment %q: locality without ID or weight is dropped by gRPC", name)
			}
			for _, ep := range loc.GetLbEndpoints() {
				sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
				addr := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
				if seen[addr] {
					t.Errorf("load assignment %q: duplicate address %s", name, addr)
				}
				seen[addr] = true
			}
		}
	}
}
