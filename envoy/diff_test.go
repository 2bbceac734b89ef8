package envoy

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sluice-dev/sluice/routing"
)

// model is a small world of services whose Table tests change at random. Every Table it
// builds is made of fresh slices, so the translator's memo must work by value.
type model struct {
	svcs map[string]*msvc // by "ns/name"
	revs map[string]*mrev // by cluster
}

type msvc struct {
	ns, name string
	r1, r2   string // clusters of its two revisions
	pct      uint32 // to r1; 100 or 0 give a single split
	tags     []string
	local    bool // cluster-local only
	// clash gives the external host the cluster-local name, so one name is on both listeners
	// and gRPC must pick the external one.
	clash   bool
	timeout time.Duration
}

type mrev struct {
	ns, name string
	proto    routing.Protocol
	eps      []routing.Endpoint
	// scaled is nil for a static revision, else its ready instances (eps may be the activator).
	scaled *routing.Scaled
}

func newModel(rng *rand.Rand) *model {
	m := &model{svcs: map[string]*msvc{}, revs: map[string]*mrev{}}
	for range 6 {
		m.addService(rng)
	}
	return m
}

func (m *model) addService(rng *rand.Rand) {
	ns := []string{"default", "team-a"}[rng.IntN(2)]
	name := fmt.Sprintf("svc%d", rng.IntN(12))
	if m.svcs[ns+"/"+name] != nil {
		return
	}
	s := &msvc{ns: ns, name: name, pct: 100, timeout: 300 * time.Second}
	s.r1, s.r2 = m.addRev(rng, ns, name+"-00001"), m.addRev(rng, ns, name+"-00002")
	m.svcs[ns+"/"+name] = s
}

func (m *model) addRev(rng *rand.Rand, ns, name string) string {
	c := routing.ClusterName(ns, name)
	m.revs[c] = &mrev{ns: ns, name: name, eps: []routing.Endpoint{{Host: fmt.Sprintf("10.0.0.%d", rng.IntN(5)), Port: 8080}}}
	return c
}

// mutate makes one random change, of the kinds the control plane sees.
func (m *model) mutate(rng *rand.Rand) {
	keys := slices.Sorted(maps.Keys(m.svcs))
	clusters := slices.Sorted(maps.Keys(m.revs))
	var s *msvc
	if len(keys) > 0 {
		s = m.svcs[keys[rng.IntN(len(keys))]]
	}
	switch op := rng.IntN(11); {
	case op == 0 || s == nil:
		m.addService(rng)
	case op == 1:
		delete(m.svcs, s.ns+"/"+s.name)
		if rng.IntN(2) == 0 { // revisions may outlive their route
			delete(m.revs, s.r1)
			delete(m.revs, s.r2)
		}
	case op == 2:
		s.pct = []uint32{0, 10, 20, 50, 80, 100}[rng.IntN(6)]
	case op == 3:
		tag := []string{"v1", "v2", "latest"}[rng.IntN(3)]
		if i := slices.Index(s.tags, tag); i >= 0 {
			s.tags = slices.Delete(slices.Clone(s.tags), i, i+1)
		} else {
			s.tags = append(slices.Clone(s.tags), tag)
			slices.Sort(s.tags)
		}
	case op == 4:
		s.local = !s.local
	case op == 5:
		s.clash = !s.clash
	case op == 6:
		s.timeout = time.Duration(1+rng.IntN(3)) * 100 * time.Second
	case op == 7 && len(clusters) > 0:
		r := m.revs[clusters[rng.IntN(len(clusters))]]
		r.eps = nil
		for range rng.IntN(3) {
			r.eps = append(r.eps, routing.Endpoint{Host: fmt.Sprintf("10.0.1.%d", rng.IntN(5)), Port: 8080})
		}
	case op == 8 && len(clusters) > 0:
		r := m.revs[clusters[rng.IntN(len(clusters))]]
		r.proto = 1 - r.proto
	case op == 9 && len(clusters) > 0:
		r := m.revs[clusters[rng.IntN(len(clusters))]]
		switch {
		case r.scaled == nil:
			r.scaled = &routing.Scaled{ContainerConcurrency: int64(rng.IntN(3)), TimeoutSeconds: 300}
		case rng.IntN(3) == 0:
			r.scaled = nil
		default:
			// A scale event: the activator sees the instances, the gateway maybe the activator.
			sc := *r.scaled
			sc.Instances = nil
			for i := range rng.IntN(3) {
				sc.Instances = append(sc.Instances, routing.Endpoint{Host: "127.0.0.1", Port: uint32(9000 + i)})
			}
			r.scaled = &sc
			r.eps = sc.Instances
			if len(r.eps) == 0 || rng.IntN(2) == 0 {
				r.eps = []routing.Endpoint{{Host: "127.0.0.1", Port: 8012}}
			}
		}
	default:
		m.addRev(rng, "default", fmt.Sprintf("orphan-%d", rng.IntN(4)))
	}
}

func (m *model) table() *routing.Table {
	tab := &routing.Table{}
	for _, s := range m.svcs {
		var main []routing.Split
		switch s.pct {
		case 100:
			main = []routing.Split{split(s.ns, m.revName(s.r1), 100)}
		case 0:
			main = []routing.Split{split(s.ns, m.revName(s.r2), 100)}
		default:
			main = []routing.Split{split(s.ns, m.revName(s.r1), s.pct), split(s.ns, m.revName(s.r2), 100-s.pct)}
		}
		vis := []routing.Visibility{routing.External, routing.ClusterLocal}
		if s.local {
			vis = vis[1:]
		}
		for _, v := range vis {
			domain := "example.com"
			if v == routing.ClusterLocal || s.clash {
				domain = "svc.cluster.local"
			}
			host := s.name + "." + s.ns + "." + domain
			var routes []routing.HTTPRoute
			for _, tag := range s.tags {
				routes = append(routes, routing.HTTPRoute{TagHeader: tag, Splits: []routing.Split{split(s.ns, m.revName(s.r2), 100)}, Timeout: s.timeout})
			}
			routes = append(routes, routing.HTTPRoute{Splits: slices.Clone(main), Timeout: s.timeout})
			tab.Hosts = append(tab.Hosts, routing.VirtualHost{Name: host, Namespace: s.ns, Route: s.name, Visibility: v, Routes: routes})
			for _, tag := range s.tags {
				tab.Hosts = append(tab.Hosts, routing.VirtualHost{Name: tag + "-" + host, Namespace: s.ns, Route: s.name, Tag: tag, Visibility: v,
					Routes: []routing.HTTPRoute{{Splits: []routing.Split{split(s.ns, m.revName(s.r2), 100)}, Timeout: s.timeout}}})
			}
		}
	}
	for c, r := range m.revs {
		b := routing.Backend{Cluster: c, Namespace: r.ns, Revision: r.name, Protocol: r.proto, Endpoints: slices.Clone(r.eps)}
		if r.scaled != nil {
			sc := *r.scaled
			sc.Instances = slices.Clone(sc.Instances)
			b.Scaled = &sc
		}
		tab.Backends = append(tab.Backends, b)
	}
	slices.SortFunc(tab.Hosts, func(a, b routing.VirtualHost) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return int(a.Visibility) - int(b.Visibility)
	})
	slices.SortFunc(tab.Backends, func(a, b routing.Backend) int { return strings.Compare(a.Cluster, b.Cluster) })
	return tab
}

// revName is the revision name of a cluster, which may be gone (a route to a deleted revision
// is still a valid Table for the translator).
func (m *model) revName(cluster string) string {
	_, name, _ := strings.Cut(cluster, "/")
	return name
}

// tableDiff names the hosts and backends that differ between a and b, as routing.TableBuilder
// does, plus a few that did not change or never existed: a diff may name more than changed.
func tableDiff(rng *rand.Rand, a, b *routing.Table) routing.TableDiff {
	var d routing.TableDiff
	ah := map[routing.HostRef]*routing.VirtualHost{}
	for i := range a.Hosts {
		ah[routing.HostRef{Name: a.Hosts[i].Name, Visibility: a.Hosts[i].Visibility}] = &a.Hosts[i]
	}
	bh := map[routing.HostRef]bool{}
	for i := range b.Hosts {
		r := routing.HostRef{Name: b.Hosts[i].Name, Visibility: b.Hosts[i].Visibility}
		bh[r] = true
		if old := ah[r]; old == nil || !equalVirtualHost(old, &b.Hosts[i]) || rng.IntN(20) == 0 {
			d.Hosts = append(d.Hosts, r)
		}
	}
	for r := range ah {
		if !bh[r] {
			d.Hosts = append(d.Hosts, r)
		}
	}
	ab := map[string]*routing.Backend{}
	for i := range a.Backends {
		ab[a.Backends[i].Cluster] = &a.Backends[i]
	}
	bb := map[string]bool{}
	for i := range b.Backends {
		c := b.Backends[i].Cluster
		bb[c] = true
		if old := ab[c]; old == nil || !equalBackend(old, &b.Backends[i]) || rng.IntN(20) == 0 {
			d.Backends = append(d.Backends, c)
		}
	}
	for c := range ab {
		if !bb[c] {
			d.Backends = append(d.Backends, c)
		}
	}
	if rng.IntN(4) == 0 {
		d.Hosts = append(d.Hosts, routing.HostRef{Name: "never.default.example.com"})
		d.Backends = append(d.Backends, "default/never")
	}
	if len(d.Hosts) > 0 && rng.IntN(4) == 0 {
		d.Hosts = append(d.Hosts, d.Hosts[0]) // repeated names are harmless
	}
	return d
}

// resourceMaps views Resources per type, for comparisons.
func resourceMaps(r *Resources) map[string]map[string]proto.Message {
	return map[string]map[string]proto.Message{
		"clusters":      asMessages(r.Clusters),
		"endpoints":     asMessages(r.Endpoints),
		"routes":        asMessages(r.Routes),
		"listeners":     asMessages(r.Listeners),
		"api listeners": asMessages(r.APIListeners),
		"activator":     asMessages(r.ActivatorEndpoints),
	}
}

func changeLists(c Changes) map[string][]string {
	return map[string][]string{
		"clusters": c.Clusters, "endpoints": c.Endpoints, "routes": c.Routes,
		"listeners": c.Listeners, "api listeners": c.APIListeners, "activator": c.ActivatorEndpoints,
	}
}

// randomWanted is a set of hosts gRPC clients want: nil (every host) now and then, else some
// of tab's hosts and maybe names that are no host (yet).
func randomWanted(rng *rand.Rand, tab *routing.Table) map[string]bool {
	if rng.IntN(6) == 0 {
		return nil
	}
	w := map[string]bool{}
	for _, h := range tab.Hosts {
		if rng.IntN(2) == 0 {
			w[h.Name] = true
		}
	}
	if rng.IntN(3) == 0 {
		w[fmt.Sprintf("svc%d.default.example.com", rng.IntN(12))] = true
	}
	return w
}

// TestTranslateDiffMatchesFresh drives one Translator through random sequences of Table
// changes and changes of the wanted hosts with TranslateDiff (and now and then a full
// Translate) and checks after every step that (1) every resource equals a fresh translation's
// with the same wanted hosts, deep proto equality; (2) LastChanges
// names exactly the resources whose pointer was added, replaced or removed, since the xds layer
// looks at nothing else; (3) the maps a Translate returned never change afterwards.
func TestTranslateDiffMatchesFresh(t *testing.T) {
	diffSteps := 0
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 2))
		m := newModel(rng)
		tr := NewTranslator(Options{})
		prevTab := m.table()
		var wanted map[string]bool // nil, every host, is the default
		if rng.IntN(2) == 0 {
			wanted = randomWanted(rng, prevTab)
			tr.SetWanted(wanted)
		}
		res := tr.TranslateDiff(prevTab, routing.TableDiff{Full: true})
		if !tr.LastChanges().Full {
			t.Fatalf("seed %d: first translation did not report Full", seed)
		}
		// A Translate result and a copy of its maps as returned: TranslateDiff must not patch them.
		fullRes, fullSnap := res, shallowSnapshot(res)
		for step := range 80 {
			// Steps change the Table, the wanted hosts, or both (a gRPC client subscribing is a
			// pass with nothing stored changed). Setting them twice before a translation counts
			// as the last setting.
			mutate := rng.IntN(3) != 0
			if mutate {
				for range 1 + rng.IntN(2) {
					m.mutate(rng)
				}
			}
			tab := m.table()
			if !mutate || rng.IntN(3) == 0 {
				for range 1 + rng.IntN(2) {
					wanted = randomWanted(rng, tab)
					tr.SetWanted(wanted)
				}
			}
			before := shallowSnapshot(res)
			full := rng.IntN(15) == 0
			if full {
				res = tr.Translate(tab)
				fullRes, fullSnap = res, shallowSnapshot(res)
			} else {
				res = tr.TranslateDiff(tab, tableDiff(rng, prevTab, tab))
				diffSteps++
			}
			where := fmt.Sprintf("seed %d step %d", seed, step)
			fresh := NewTranslator(Options{})
			fresh.SetWanted(wanted)
			checkSameResources(t, where, res, fresh.Translate(tab))
			// The pools must hold what a fresh translation's hold: no reference lost or leaked.
			if got, want := poolSizes(tr), poolSizes(fresh); !equalSizes(got, want) {
				t.Fatalf("%s: pools (values, references) %v, fresh translation's %v", where, got, want)
			}
			if ch := tr.LastChanges(); full != ch.Full {
				t.Fatalf("%s: Full %v after a full=%v translation", where, ch.Full, full)
			} else if !full {
				checkChangesExact(t, where, before, resourceMaps(res), ch)
			}
			checkSameResources(t, where+" (an earlier Translate's maps)", fullRes, fullSnap)
			prevTab = tab
		}
	}
	if diffSteps == 0 {
		t.Fatal("no TranslateDiff step ran")
	}
}

// shallowSnapshot copies the maps (not the protos) of r.
func shallowSnapshot(r *Resources) *Resources {
	return &Resources{Clusters: maps.Clone(r.Clusters), Endpoints: maps.Clone(r.Endpoints), Routes: maps.Clone(r.Routes),
		Listeners: maps.Clone(r.Listeners), APIListeners: maps.Clone(r.APIListeners),
		ActivatorEndpoints: maps.Clone(r.ActivatorEndpoints)}
}

func checkSameResources(t *testing.T, where string, got, want *Resources) {
	t.Helper()
	g, w := resourceMaps(got), resourceMaps(want)
	for typ := range w {
		if len(g[typ]) != len(w[typ]) {
			t.Fatalf("%s: %d %s, want %d", where, len(g[typ]), typ, len(w[typ]))
		}
		for name, m := range w[typ] {
			if !proto.Equal(g[typ][name], m) {
				t.Fatalf("%s: %s %q differs from a fresh translation:\n got %v\nwant %v", where, typ, name, g[typ][name], m)
			}
		}
	}
}

func checkChangesExact(t *testing.T, where string, before *Resources, after map[string]map[string]proto.Message, ch Changes) {
	t.Helper()
	b := resourceMaps(before)
	lists := changeLists(ch)
	for typ := range after {
		var want []string
		for name, m := range after[typ] {
			if b[typ][name] != m {
				want = append(want, name)
			}
		}
		for name := range b[typ] {
			if _, ok := after[typ][name]; !ok {
				want = append(want, name)
			}
		}
		got := slices.Clone(lists[typ])
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: LastChanges names %s %v; the pointers that changed are %v", where, typ, got, want)
		}
	}
}

// TestTranslateDiffEmpty: a diff naming nothing changes nothing and reports nothing.
func TestTranslateDiffEmpty(t *testing.T) {
	tr := NewTranslator(Options{})
	tab := memoTable()
	a := tr.Translate(tab)
	b := tr.TranslateDiff(tab, routing.TableDiff{})
	if !tr.LastChanges().Empty() {
		t.Fatalf("changes %+v", tr.LastChanges())
	}
	checkSameResources(t, "empty diff", b, a)
}
