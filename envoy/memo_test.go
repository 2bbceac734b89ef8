package envoy

import (
	"reflect"
	"slices"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-dev/sluice/routing"
)

// memoTable is two services, one with a tag host and a cluster-local host, built fresh on every
// call so that equal tables never share memory: the memo must work by value.
func memoTable() *routing.Table {
	hello := []routing.HTTPRoute{
		{TagHeader: "v2", Splits: []routing.Split{split("default", "hello-00002", 100)}, Timeout: timeout},
		{Splits: []routing.Split{split("default", "hello-00001", 80), split("default", "hello-00002", 20)}, Timeout: timeout},
	}
	clone := func(rs []routing.HTTPRoute) []routing.HTTPRoute {
		vh := cloneVirtualHost(&routing.VirtualHost{Routes: rs})
		return vh.Routes
	}
	scaled := backend("default", "hello-00001", routing.HTTP1, ep("10.0.0.5", 8080))
	scaled.Scaled = &routing.Scaled{Instances: []routing.Endpoint{ep("10.0.0.5", 8080)}, ContainerConcurrency: 10, TimeoutSeconds: 300}
	return &routing.Table{
		Hosts: []routing.VirtualHost{
			{Name: "bye.default.example.com", Namespace: "default", Route: "bye",
				Routes: []routing.HTTPRoute{{Splits: []routing.Split{split("default", "bye-00001", 100)}, Timeout: timeout}}},
			{Name: "hello.default.example.com", Namespace: "default", Route: "hello", Routes: clone(hello)},
			{Name: "hello.default.svc.cluster.local", Namespace: "default", Route: "hello", Visibility: routing.ClusterLocal, Routes: clone(hello)},
			{Name: "v2-hello.default.example.com", Namespace: "default", Route: "hello", Tag: "v2",
				Routes: []routing.HTTPRoute{{Splits: []routing.Split{split("default", "hello-00002", 100)}, Timeout: timeout}}},
		},
		Backends: []routing.Backend{
			backend("default", "bye-00001", routing.HTTP1, ep("10.0.0.4", 8080)),
			scaled,
			backend("default", "hello-00002", routing.H2C, ep("10.0.0.6", 8080)),
		},
	}
}

// samePointers reports, per resource name, whether a and b hold the very same pointer.
func samePointers[M ~map[string]*V, V any](a, b M) map[string]bool {
	same := map[string]bool{}
	for k, v := range b {
		if old, ok := a[k]; ok {
			same[k] = old == v
		}
	}
	return same
}

func TestMemo(t *testing.T) {
	type want struct {
		// changed lists, per kind, the names that must get new pointers; every other name
		// present before and after must keep its pointer.
		clusters, endpoints, routes, apiListeners []string
		// gone lists names that must disappear from every map.
		gone []string
	}
	tests := []struct {
		name   string
		change func(*routing.Table)
		want   want
	}{
		{
			name:   "unchanged",
			change: func(*routing.Table) {},
		},
		{
			name: "one split changes",
			change: func(tab *routing.Table) {
				tab.Hosts[1].Routes[1].Splits[0].Percent = 50
				tab.Hosts[1].Routes[1].Splits[1].Percent = 50
			},
			want: want{routes: []string{"hello.default.example.com", "external"}},
		},
		{
			name:   "cluster-local timeout changes",
			change: func(tab *routing.Table) { tab.Hosts[2].Routes[0].Timeout = 2 * timeout },
			want:   want{routes: []string{"hello.default.svc.cluster.local", "internal"}},
		},
		{
			name:   "endpoints change",
			change: func(tab *routing.Table) { tab.Backends[1].Endpoints[0].Port = 9090 },
			want:   want{endpoints: []string{"default/hello-00001"}},
		},
		{
			name:   "protocol changes",
			change: func(tab *routing.Table) { tab.Backends[2].Protocol = routing.HTTP1 },
			want:   want{clusters: []string{"default/hello-00002"}},
		},
		{
			name:   "host removed",
			change: func(tab *routing.Table) { tab.Hosts = append(tab.Hosts[:3:3], tab.Hosts[4:]...) },
			want:   want{routes: []string{"external"}, gone: []string{"v2-hello.default.example.com"}},
		},
		{
			name: "backend removed",
			change: func(tab *routing.Table) {
				tab.Hosts = tab.Hosts[1:]
				tab.Backends = tab.Backends[1:]
			},
			want: want{routes: []string{"external"}, gone: []string{"default/bye-00001", "bye.default.example.com"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTranslator(Options{})
			before := tr.Translate(memoTable())
			tab := memoTable()
			tt.change(tab)
			after := tr.Translate(tab)
			validateResources(t, after)

			check := func(kind string, same map[string]bool, changed []string) {
				t.Helper()
				for name, s := range same {
					want := !contains(changed, name)
					if s != want {
						t.Errorf("%s %q: same pointer = %v, want %v", kind, name, s, want)
					}
				}
			}
			check("cluster", samePointers(before.Clusters, after.Clusters), tt.want.clusters)
			check("load assignment", samePointers(before.Endpoints, after.Endpoints), tt.want.endpoints)
			check("route configuration", samePointers(before.Routes, after.Routes), tt.want.routes)
			check("API listener", samePointers(before.APIListeners, after.APIListeners), tt.want.apiListeners)
			check("listener", samePointers(before.Listeners, after.Listeners), nil)
			for _, g := range tt.want.gone {
				if after.Clusters[g] != nil || after.Endpoints[g] != nil || after.Routes[g] != nil || after.APIListeners[g] != nil {
					t.Errorf("%q is still there", g)
				}
			}
			// The Envoy route configurations must reuse the per-host virtual host protos.
			for _, vh := range after.Routes["external"].GetVirtualHosts() {
				if got := after.Routes[vh.GetName()].GetVirtualHosts()[0]; got != vh {
					t.Errorf("%s: external and gRPC route configurations do not share the virtual host", vh.GetName())
				}
			}
		})
	}
}

func TestMemoForgetsRemovedHosts(t *testing.T) {
	// A host that comes back after being removed is rebuilt, proving the memo dropped it
	// rather than growing with every host ever seen.
	tr := NewTranslator(Options{})
	first := tr.Translate(memoTable())
	tr.Translate(&routing.Table{})
	if len(tr.hosts) != 0 || len(tr.backends) != 0 {
		t.Fatalf("memo holds %d hosts and %d backends after an empty table", len(tr.hosts), len(tr.backends))
	}
	again := tr.Translate(memoTable())
	if first.Routes["hello.default.example.com"] == again.Routes["hello.default.example.com"] {
		t.Errorf("a forgotten host kept its pointer")
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestEqualCoversEveryField changes each IR field in turn and expects the equality used by the
// memo to notice: a field it missed would leave stale resources in Envoy.
func TestEqualCoversEveryField(t *testing.T) {
	base := memoTable()
	vh := base.Hosts[1]
	for _, m := range mutations(reflect.ValueOf(&vh).Elem(), "VirtualHost") {
		c := cloneVirtualHost(&vh)
		m.apply(reflect.ValueOf(&c).Elem())
		if equalVirtualHost(&vh, &c) {
			t.Errorf("equalVirtualHost misses a change of %s", m.path)
		}
		if !equalVirtualHost(&vh, &vh) {
			t.Errorf("equalVirtualHost is not reflexive")
		}
	}
	b := base.Backends[1]
	for _, m := range mutations(reflect.ValueOf(&b).Elem(), "Backend") {
		c := cloneBackend(&b)
		m.apply(reflect.ValueOf(&c).Elem())
		if equalBackend(&b, &c) {
			t.Errorf("equalBackend misses a change of %s", m.path)
		}
	}
}

type mutation struct {
	path  string
	apply func(reflect.Value)
}

// mutations lists one change per leaf field of v (descending into structs and the first element
// of slices), each applied to a value of the same shape. Adding a slice element is one more.
func mutations(v reflect.Value, path string) []mutation {
	var ms []mutation
	switch v.Kind() {
	case reflect.String:
		ms = append(ms, mutation{path, func(x reflect.Value) { x.SetString(x.String() + "x") }})
	case reflect.Int, reflect.Int64:
		ms = append(ms, mutation{path, func(x reflect.Value) { x.SetInt(x.Int() + 1) }})
	case reflect.Uint32:
		ms = append(ms, mutation{path, func(x reflect.Value) { x.SetUint(x.Uint() + 1) }})
	case reflect.Bool:
		ms = append(ms, mutation{path, func(x reflect.Value) { x.SetBool(!x.Bool()) }})
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			for _, m := range mutations(v.Field(i), path+"."+v.Type().Field(i).Name) {
				ms = append(ms, mutation{m.path, func(x reflect.Value) { m.apply(x.Field(i)) }})
			}
		}
	case reflect.Pointer:
		if v.IsNil() {
			ms = append(ms, mutation{path + "=new", func(x reflect.Value) { x.Set(reflect.New(x.Type().Elem())) }})
			break
		}
		ms = append(ms, mutation{path + "=nil", func(x reflect.Value) { x.Set(reflect.Zero(x.Type())) }})
		for _, m := range mutations(v.Elem(), path) {
			ms = append(ms, mutation{m.path, func(x reflect.Value) { m.apply(x.Elem()) }})
		}
	case reflect.Slice:
		ms = append(ms, mutation{path + "+", func(x reflect.Value) {
			x.Set(reflect.Append(x, reflect.Zero(x.Type().Elem())))
		}})
		if v.Len() > 0 {
			for _, m := range mutations(v.Index(0), path+"[0]") {
				ms = append(ms, mutation{m.path, func(x reflect.Value) { m.apply(x.Index(0)) }})
			}
		}
	default:
		panic("mutations: unhandled kind " + v.Kind().String() + " at " + path + ": teach this test about it")
	}
	return ms
}

func TestValidateDeepLooksInsideAny(t *testing.T) {
	// The helper every other test relies on must catch an invalid message packed in an Any,
	// which ValidateAll alone does not.
	bad := &listenerv3.Listener{Name: "bad", ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(&hcmv3.HttpConnectionManager{})}}
	if err := bad.ValidateAll(); err != nil {
		t.Fatalf("ValidateAll rejects it already (%v); this test needs a subtler bad listener", err)
	}
	if err := validateDeep(bad); err == nil {
		t.Errorf("validateDeep accepted an HttpConnectionManager without stat_prefix")
	}
}

// TestMemoMatchesFreshTranslation runs one Translator through a sequence of changes and checks
// that after each step its output equals a fresh translation of the same Table: the memo may
// only ever save work, never change the answer.
func TestMemoMatchesFreshTranslation(t *testing.T) {
	steps := []struct {
		name   string
		change func(*routing.Table)
	}{
		{"start", func(*routing.Table) {}},
		{"host inserted in the middle", func(tab *routing.Table) {
			h := routing.VirtualHost{Name: "ciao.default.example.com", Namespace: "default", Route: "ciao",
				Routes: []routing.HTTPRoute{{Splits: []routing.Split{split("default", "bye-00001", 100)}}}}
			tab.Hosts = slices.Insert(tab.Hosts, 1, h)
		}},
		{"backend inserted in the middle", func(tab *routing.Table) {
			tab.Backends = slices.Insert(tab.Backends, 1, backend("default", "ciao-00001", routing.HTTP1, ep("10.0.0.9", 80)))
		}},
		{"split moves", func(tab *routing.Table) {
			s := tab.Hosts[2].Routes[1].Splits
			s[0].Percent, s[1].Percent = 1, 99
		}},
		{"first host removed", func(tab *routing.Table) { tab.Hosts = tab.Hosts[1:] }},
		{"endpoints scale to zero", func(tab *routing.Table) { tab.Backends[0].Endpoints = nil }},
		{"everything removed", func(tab *routing.Table) { *tab = routing.Table{} }},
		{"everything back", func(tab *routing.Table) { *tab = *memoTable() }},
	}
	tr := NewTranslator(Options{})
	tab := memoTable()
	for _, st := range steps {
		st.change(tab)
		// A deep copy, so later steps' in-place edits cannot reach what the memo saw.
		snap := &routing.Table{}
		for i := range tab.Hosts {
			snap.Hosts = append(snap.Hosts, cloneVirtualHost(&tab.Hosts[i]))
		}
		for i := range tab.Backends {
			snap.Backends = append(snap.Backends, cloneBackend(&tab.Backends[i]))
		}
		got := tr.Translate(snap)
		want := NewTranslator(Options{}).Translate(snap)
		for kind, pair := range map[string][2]map[string]proto.Message{
			"cluster":             {asMessages(got.Clusters), asMessages(want.Clusters)},
			"load assignment":     {asMessages(got.Endpoints), asMessages(want.Endpoints)},
			"route configuration": {asMessages(got.Routes), asMessages(want.Routes)},
			"listener":            {asMessages(got.Listeners), asMessages(want.Listeners)},
			"API listener":        {asMessages(got.APIListeners), asMessages(want.APIListeners)},
		} {
			if len(pair[0]) != len(pair[1]) {
				t.Errorf("%s: %d %ss, fresh translation has %d", st.name, len(pair[0]), kind, len(pair[1]))
			}
			for name, w := range pair[1] {
				if !proto.Equal(pair[0][name], w) {
					t.Errorf("%s: %s %q differs from a fresh translation", st.name, kind, name)
				}
			}
		}
	}
}

func asMessages[M ~map[string]*V, V any](m M) map[string]proto.Message {
	out := make(map[string]proto.Message, len(m))
	for k, v := range m {
		out[k] = any(v).(proto.Message)
	}
	return out
}

// Deep copies of IR, for tests that edit a Table after translating a snapshot of it.

func cloneVirtualHost(vh *routing.VirtualHost) routing.VirtualHost {
	c := *vh
	c.Routes = make([]routing.HTTPRoute, len(vh.Routes))
	for i, r := range vh.Routes {
		r.Splits = slices.Clone(r.Splits)
		c.Routes[i] = r
	}
	return c
}

func cloneBackend(b *routing.Backend) routing.Backend {
	c := *b
	c.Endpoints = slices.Clone(b.Endpoints)
	if b.Scaled != nil {
		sc := *b.Scaled
		sc.Instances = slices.Clone(sc.Instances)
		c.Scaled = &sc
	}
	return c
}
