package envoy

import (
	"testing"

	"github.com/sluice-dev/sluice/routing"
)

// TestSharedRoutes checks what the pools are for: a host and its cluster-local twin with equal
// routes hold the very same route protos, and a tag's own host shares its action with the main
// host's route for that tag. (Content is checked everywhere else: a fresh translation and the
// diff tests compare every resource with proto.Equal.)
func TestSharedRoutes(t *testing.T) {
	res := NewTranslator(Options{}).Translate(memoTable())
	for _, name := range []string{"hello.default.example.com", "hello.default.svc.cluster.local", "v2-hello.default.example.com"} {
		if len(res.Routes[name].GetVirtualHosts()) != 1 {
			t.Fatalf("no route configuration with one virtual host for %s", name)
		}
	}
	ext := res.Routes["hello.default.example.com"].GetVirtualHosts()[0]
	local := res.Routes["hello.default.svc.cluster.local"].GetVirtualHosts()[0]
	if ext == local {
		t.Fatal("two hosts share one virtual host: their names differ")
	}
	if len(ext.GetRoutes()) != 2 || &ext.Routes[0] != &local.Routes[0] {
		t.Errorf("a host and its cluster-local twin with equal routes do not share their route protos")
	}
	tagHost := res.Routes["v2-hello.default.example.com"].GetVirtualHosts()[0].GetRoutes()[0]
	tagRoute := ext.GetRoutes()[0] // the v2 header route
	if tagRoute.GetMatch().GetHeaders() == nil || tagHost.GetMatch().GetHeaders() != nil {
		t.Fatalf("unexpected matches: %v / %v", tagRoute.GetMatch(), tagHost.GetMatch())
	}
	if tagHost.Action != tagRoute.Action {
		t.Errorf("the tag host and the main host's tag route do not share their action")
	}
	a, b := res.Clusters["default/bye-00001"], res.Clusters["default/hello-00001"]
	if a.EdsClusterConfig != b.EdsClusterConfig || a.ConnectTimeout != b.ConnectTimeout {
		t.Errorf("clusters do not share their common parts")
	}
}

// poolSizes counts each pool's values and references, for comparing a Translator's pools with
// a fresh one's: each pool holds one value per distinct key in use, referenced once per user.
func poolSizes(tr *Translator) map[string][2]int {
	out := map[string][2]int{}
	count := func(name string, n, refs int) {
		c := out[name]
		out[name] = [2]int{c[0] + n, c[1] + refs}
	}
	for _, s := range tr.pools.routes.m {
		for ; s != nil; s = s.next {
			count("routes", 1, s.refs)
		}
	}
	for _, s := range tr.pools.actions.m {
		for ; s != nil; s = s.next {
			count("actions", 1, s.refs)
		}
	}
	for _, s := range tr.pools.matches.m {
		for ; s != nil; s = s.next {
			count("matches", 1, s.refs)
		}
	}
	for _, s := range tr.pools.namespaces.m {
		for ; s != nil; s = s.next {
			count("namespaces", 1, s.refs)
		}
	}
	return out
}

func TestPoolsFollowTheTable(t *testing.T) {
	tr := NewTranslator(Options{})
	tr.Translate(memoTable())
	want := map[string][2]int{
		// bye; hello on both listeners; v2-hello.
		"routes": {3, 4},
		// bye's, hello's v2 (its tag route and v2-hello's), hello's 80/20.
		"actions":    {3, 4},
		"matches":    {1, 1},
		"namespaces": {1, 3},
	}
	if got := poolSizes(tr); !equalSizes(got, want) {
		t.Errorf("pools after memoTable: %v, want %v", got, want)
	}
	tr.Translate(&routing.Table{})
	if got := poolSizes(tr); len(got) != 0 {
		t.Errorf("pools after an empty Table: %v, want nothing", got)
	}
}

func equalSizes(a, b map[string][2]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
