package routing

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// fakeSource is an EndpointSource whose instances tests change between steps: a revision absent
// from the map is down.
type fakeSource map[string]Instances

func (f fakeSource) Instances(rev *v1.Revision) Instances {
	if in, ok := f[rev.Namespace+"/"+rev.Name]; ok {
		return in
	}
	return Instances{Reason: "Down", Message: "test: " + rev.Name + " is down"}
}

// world drives random (but seeded, so reproducible) changes through Apply and Delete, and
// checks after each that ReconcileScoped agrees with Reconcile and TableBuilder with BuildTable.
type world struct {
	t       *testing.T
	rng     *rand.Rand
	st      *State
	src     fakeSource
	now     time.Time
	builder *TableBuilder
	last    *Table
	// gen counts the templates of each service, to name its revisions.
	gen  map[Key]int
	tmpl map[Key]v1.RevisionTemplateSpec
	// local marks the services applied as cluster-local.
	local map[Key]bool
}

var (
	worldServices   = []Key{{"default", "a"}, {"default", "b"}, {"default", "v1-a"}, {"other", "a"}, {"other", "c"}}
	worldCfg        = Config{Domain: "test.dev"}
	standaloneCfg   = Key{"default", "cfg"}
	standaloneRoute = Key{"default", "rt"}
)

func newWorld(t *testing.T, seed uint64) *world {
	w := &world{t: t, rng: rand.New(rand.NewPCG(seed, 1)), st: NewState(), src: fakeSource{}, now: t0,
		builder: NewTableBuilder(worldCfg), gen: map[Key]int{}, tmpl: map[Key]v1.RevisionTemplateSpec{}, local: map[Key]bool{}}
	w.last = w.builder.Build(w.st, w.src, nil)
	return w
}

// revisionsOf lists the revisions of configuration k in st.
func (w *world) revisionsOf(k Key) []string {
	var out []string
	for _, rk := range sortedKeys(w.st.Revisions) {
		if rk.Namespace == k.Namespace && w.st.Revisions[rk].Labels[v1.LabelConfiguration] == k.Name {
			out = append(out, rk.Name)
		}
	}
	return out
}

// randomTraffic splits 100% between the latest revision and some of revs, with random tags.
func (w *world) randomTraffic(revs []string) []v1.TrafficTarget {
	if w.rng.IntN(4) == 0 || len(revs) == 0 {
		return nil // the default: 100% to the latest revision
	}
	left := int64(100)
	var tt []v1.TrafficTarget
	for i, r := range revs {
		if w.rng.IntN(2) == 0 {
			continue
		}
		p := w.rng.Int64N(left + 1)
		left -= p
		t := v1.TrafficTarget{RevisionName: r, Percent: ptr(p)}
		if w.rng.IntN(2) == 0 {
			t.Tag = fmt.Sprintf("t%d", i)
		}
		tt = append(tt, t)
	}
	latest := v1.TrafficTarget{LatestRevision: ptr(true), Percent: ptr(left)}
	if w.rng.IntN(3) == 0 {
		latest.Tag = "latest"
	}
	return append(tt, latest)
}

func (w *world) applyService(k Key) (Change, error) {
	tmpl, ok := w.tmpl[k]
	if !ok || w.rng.IntN(3) == 0 {
		w.gen[k]++
		tmpl = v1.RevisionTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-g%d", k.Name, w.gen[k])},
			Spec: v1.RevisionSpec{
				PodSpec:        &corev1.PodSpec{Containers: []corev1.Container{{Image: "img", Env: []corev1.EnvVar{{Name: "G", Value: fmt.Sprint(w.gen[k])}}}}},
				TimeoutSeconds: ptr(int64(30 * (1 + w.rng.IntN(5)))),
			},
		}
		if w.rng.IntN(3) == 0 {
			tmpl.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "h2c", ContainerPort: 8080}}
		}
		w.tmpl[k] = tmpl
	}
	if w.rng.IntN(4) == 0 {
		w.local[k] = !w.local[k]
	}
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: k.Name, Namespace: k.Namespace},
		Spec:       v1.ServiceSpec{ConfigurationSpec: v1.ConfigurationSpec{Template: tmpl}},
	}
	if w.local[k] {
		svc.Labels = map[string]string{v1.LabelVisibility: v1.VisibilityClusterLocal}
	}
	svc.Spec.Traffic = w.randomTraffic(w.revisionsOf(k))
	return Apply(w.st, []v1.Object{svc}, w.now)
}

// applyStandalone applies a Configuration and a Route following it and naming a revision of
// service a (a cross-object reference).
func (w *world) applyStandalone() (Change, error) {
	w.gen[standaloneCfg]++
	cfg := &v1.Configuration{
		ObjectMeta: metav1.ObjectMeta{Name: standaloneCfg.Name, Namespace: standaloneCfg.Namespace},
		Spec: v1.ConfigurationSpec{Template: v1.RevisionTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cfg-g%d", w.gen[standaloneCfg])},
			Spec:       v1.RevisionSpec{PodSpec: &corev1.PodSpec{Containers: []corev1.Container{{Image: "img"}}}},
		}},
	}
	rt := &v1.Route{
		ObjectMeta: metav1.ObjectMeta{Name: standaloneRoute.Name, Namespace: standaloneRoute.Namespace},
		Spec:       v1.RouteSpec{Traffic: []v1.TrafficTarget{{ConfigurationName: standaloneCfg.Name, Percent: ptr(int64(100)), Tag: "c"}}},
	}
	if revs := w.revisionsOf(Key{"default", "a"}); len(revs) > 0 && w.rng.IntN(2) == 0 {
		rt.Spec.Traffic = append(rt.Spec.Traffic, v1.TrafficTarget{RevisionName: revs[w.rng.IntN(len(revs))], Percent: ptr(int64(0)), Tag: "a"})
	}
	return Apply(w.st, []v1.Object{cfg, rt}, w.now)
}

// step makes one random change and checks everything against the full computations.
func (w *world) step(i int) {
	t := w.t
	w.now = w.now.Add(time.Minute)
	var c Change
	var err error
	var changed []Ref
	switch op := w.rng.IntN(11); {
	case op < 5:
		c, err = w.applyService(worldServices[w.rng.IntN(len(worldServices))])
	case op < 6:
		c, err = w.applyStandalone()
	case op < 7:
		k := worldServices[w.rng.IntN(len(worldServices))]
		if w.rng.IntN(3) == 0 {
			k = standaloneRoute
			c, err = Delete(w.st, Ref{Kind: v1.KindRoute, Key: k})
		} else {
			c, err = Delete(w.st, Ref{Kind: v1.KindService, Key: k})
		}
	case op < 8:
		// Deleting a revision directly: refused while a route names it.
		if keys := sortedKeys(w.st.Revisions); len(keys) > 0 {
			c, err = Delete(w.st, Ref{Kind: v1.KindRevision, Key: keys[w.rng.IntN(len(keys))]})
		}
	default:
		// Instances change: a revision goes up or down, or its endpoints move.
		keys := sortedKeys(w.st.Revisions)
		if len(keys) == 0 {
			return
		}
		k := keys[w.rng.IntN(len(keys))]
		name := k.Namespace + "/" + k.Name
		src := maps.Clone(w.src)
		if _, up := src[name]; up && w.rng.IntN(2) == 0 {
			delete(src, name)
		} else {
			src[name] = Instances{Ready: true, Endpoints: []Endpoint{{Host: fmt.Sprintf("10.0.0.%d", w.rng.IntN(4)), Port: 8080}}}
		}
		w.src = src
		changed = append(changed, Ref{Kind: v1.KindRevision, Key: k})
	}
	if err != nil {
		return // rejected (a reference that would dangle): nothing changed
	}
	for _, r := range c.Delete {
		changed = append(changed, r)
	}
	for _, o := range c.Put {
		changed = append(changed, RefOf(o))
		// Most new revisions come up at once, so that most routes serve something.
		if rev, ok := o.(*v1.Revision); ok && w.st.Revisions[KeyOf(rev)] == nil && w.rng.IntN(5) > 0 {
			src := maps.Clone(w.src)
			src[rev.Namespace+"/"+rev.Name] = Instances{Ready: true, Endpoints: []Endpoint{{Host: "10.1.0.1", Port: 80}}}
			w.src = src
		}
	}
	st := w.st.With(c)

	full := Reconcile(st, w.src, worldCfg, w.now)
	scoped := ReconcileScoped(st, w.src, worldCfg, w.now, changed)
	if a, b := describeAll(t, scoped), describeAll(t, full); a != b {
		t.Fatalf("step %d (changed %v): ReconcileScoped\n%s\nReconcile\n%s", i, changed, a, b)
	}
	st = st.With(Change{Put: scoped})
	if again := Reconcile(st, w.src, worldCfg, w.now.Add(time.Second)); len(again) != 0 {
		t.Fatalf("step %d: Reconcile after ReconcileScoped changed %s", i, describeAll(t, again))
	}
	for _, o := range scoped {
		changed = append(changed, RefOf(o))
	}
	w.st = st
	checkIndex(t, i, st)

	tab := w.builder.Build(st, w.src, changed)
	want := BuildTable(st, w.src, worldCfg)
	if !reflect.DeepEqual(tab, want) {
		g, _ := json.MarshalIndent(tab, "", " ")
		x, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("step %d (changed %v): TableBuilder\n%s\nBuildTable\n%s", i, changed, g, x)
	}
	checkReused(t, i, w.last, tab)
	w.last = tab
}

// checkIndex checks that the index With maintained step by step is the one built from scratch
// from st's maps: ReconcileScoped trusts it to name every affected object.
func checkIndex(t *testing.T, step int, st *State) {
	t.Helper()
	got := st.idx.Load()
	if got == nil {
		t.Fatalf("step %d: With did not carry the index over", step)
	}
	want := buildIndex(st)
	names := [numIndexes]string{"revsByCfg", "routesByCfg", "routesByRev", "cfgsByLatest"}
	for which := range numIndexes {
		g, w := got.at(which), want.at(which)
		for i := range indexShards {
			// A shard With emptied is an empty map, one never written is nil: the same.
			if len(g.shards[i]) != len(w.shards[i]) {
				t.Fatalf("step %d: %s shard %d: %d keys incrementally, %d rebuilt:\n%v\n%v",
					step, names[which], i, len(g.shards[i]), len(w.shards[i]), g.shards[i], w.shards[i])
			}
			for k, vs := range w.shards[i] {
				if gv, ok := g.shards[i][k]; !ok || !slices.Equal(gv, vs) {
					t.Fatalf("step %d: %s[%s]: %v incrementally, %v rebuilt", step, names[which], k, gv, vs)
				}
			}
		}
	}
}

func describeAll(t *testing.T, objs []v1.Object) string {
	t.Helper()
	data, err := json.MarshalIndent(objs, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// checkReused checks that hosts and backends equal to ones of the previous Table are the very
// same values (same slices), which the envoy translator's memo relies on.
func checkReused(t *testing.T, step int, prev, next *Table) {
	t.Helper()
	hosts := map[string]VirtualHost{}
	for _, h := range prev.Hosts {
		hosts[fmt.Sprint(h.Name, h.Visibility, h.Namespace, h.Route, h.Tag)] = h
	}
	for _, h := range next.Hosts {
		old, ok := hosts[fmt.Sprint(h.Name, h.Visibility, h.Namespace, h.Route, h.Tag)]
		if ok && vhostEqual(old, h) && len(h.Routes) > 0 && &old.Routes[0] != &h.Routes[0] {
			t.Errorf("step %d: host %s is unchanged but its routes are a new slice", step, h.Name)
		}
	}
	backends := map[string]Backend{}
	for _, b := range prev.Backends {
		backends[b.Cluster] = b
	}
	for _, b := range next.Backends {
		old, ok := backends[b.Cluster]
		if ok && reflect.DeepEqual(old, b) && len(b.Endpoints) > 0 && &old.Endpoints[0] != &b.Endpoints[0] {
			t.Errorf("step %d: backend %s is unchanged but its endpoints are a new slice", step, b.Cluster)
		}
	}
}

// TestIncrementalMatchesFull runs random sequences of applies (new revisions, traffic splits,
// tags, visibility changes, standalone configurations and routes), deletes and instance
// changes, and after each checks that ReconcileScoped returns exactly what Reconcile does and
// leaves nothing for it to do, and that TableBuilder builds what BuildTable does, reusing every
// unchanged value.
func TestIncrementalMatchesFull(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			w := newWorld(t, seed)
			for i := range 60 {
				w.step(i)
			}
			// A State filled in directly is indexed when first used, and what With derives from
			// it is indexed as if it had been built by With all along.
			lit := &State{Services: maps.Clone(w.st.Services), Configurations: maps.Clone(w.st.Configurations),
				Routes: maps.Clone(w.st.Routes), Revisions: maps.Clone(w.st.Revisions)}
			var del Change
			for _, k := range sortedKeys(lit.Routes) {
				del.Delete = append(del.Delete, Ref{Kind: v1.KindRoute, Key: k})
				break
			}
			checkIndex(t, -1, lit.With(del))
			// A full build from the memo (changed nil) is the same Table too.
			if got, want := w.builder.Build(w.st, w.src, nil), BuildTable(w.st, w.src, worldCfg); !reflect.DeepEqual(got, want) {
				t.Fatal("Build(nil) differs from BuildTable")
			}
		})
	}
}

// TestTableBuilderRevisionOnly changes only a revision (its timeout and its instances) and names
// only it: the hosts serving it must be rebuilt too, since their route timeout comes from it.
func TestTableBuilderRevisionOnly(t *testing.T) {
	src := fakeSource{"default/hello-v1": {Ready: true, Endpoints: []Endpoint{{Host: "10.0.0.1", Port: 80}}}}
	st := apply(t, NewState(), decode(t, svcYAML("hello-v1", "a", "")))
	st = st.With(Change{Put: Reconcile(st, src, Config{}, t0)})
	b := NewTableBuilder(Config{})
	first := b.Build(st, src, nil)

	k := Key{"default", "hello-v1"}
	rev := *st.Revisions[k]
	rev.Spec.TimeoutSeconds = ptr(int64(42))
	st = st.With(Change{Put: []v1.Object{&rev}})
	src = fakeSource{"default/hello-v1": {Ready: true, Endpoints: []Endpoint{{Host: "10.0.0.2", Port: 80}}}}
	got := b.Build(st, src, []Ref{{Kind: v1.KindRevision, Key: k}})
	if want := BuildTable(st, src, Config{}); !reflect.DeepEqual(got, want) {
		t.Fatalf("TableBuilder %+v, BuildTable %+v", got, want)
	}
	if got.Hosts[0].Routes[0].Timeout != 42*time.Second || got.Backends[0].Endpoints[0].Host != "10.0.0.2" {
		t.Fatalf("not rebuilt: %+v", got)
	}
	if again := b.Build(st, src, []Ref{{Kind: v1.KindRevision, Key: k}}); again != got {
		t.Error("a build with nothing different returned a new Table")
	}
	if first.Hosts[0].Routes[0].Timeout != 300*time.Second {
		t.Fatalf("first build: timeout %s", first.Hosts[0].Routes[0].Timeout)
	}
}
