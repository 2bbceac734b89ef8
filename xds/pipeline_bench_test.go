package xds

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/envoy"
	"github.com/sluice-dev/sluice/routing"
	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// The control-plane loop's work after one change, from the routing State to the xds caches:
// Build + TranslateDiff + UpdateChanged (the incremental path) against BuildTable + Translate +
// Update (the full path the loop used before), in the same run.
//
//	go test -run '^$' -bench BenchmarkPipeline -benchtime 20x ./xds/

var pipelineShapes = []struct {
	name string
	tags bool
}{
	// envoy's BenchmarkTranslate shape: 80/20 with tags v1 and v2, so a main host with two tag
	// routes and two tag hosts, external and cluster-local: 6 hosts per service.
	{"tagged-6-hosts", true},
	// The common case: 80/20, no tags, external and cluster-local: 2 hosts per service.
	{"split-2-hosts", false},
}

var pipelineSizes = []int{1000, 10000}

var pipelineT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// pipelineState has n Services with two ready revisions split 80/20 (tagged v1/v2 with tags).
func pipelineState(b *testing.B, n int, tags bool) (*routing.State, routing.StaticEndpoints) {
	b.Helper()
	st := routing.NewState()
	var objs []v1.Object
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		for g := range 2 {
			svc := &v1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: fmt.Sprintf("team-%02d", i%50)},
				Spec: v1.ServiceSpec{ConfigurationSpec: v1.ConfigurationSpec{Template: v1.RevisionTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{
						Name:        fmt.Sprintf("%s-v%d", name, g+1),
						Annotations: map[string]string{v1.AnnotationEndpoints: fmt.Sprintf("10.%d.%d.%d:8080", i>>16&255, i>>8&255, i&255)},
					},
					Spec: v1.RevisionSpec{PodSpec: &corev1.PodSpec{Containers: []corev1.Container{{
						Image: "hello", Env: []corev1.EnvVar{{Name: "TARGET", Value: fmt.Sprint(g)}},
					}}}},
				}}},
			}
			if g == 1 {
				p80, p20 := int64(80), int64(20)
				svc.Spec.Traffic = []v1.TrafficTarget{
					{RevisionName: name + "-v1", Percent: &p80},
					{RevisionName: name + "-v2", Percent: &p20},
				}
				if tags {
					svc.Spec.Traffic[0].Tag, svc.Spec.Traffic[1].Tag = "v1", "v2"
				}
			}
			objs = append(objs, svc)
		}
	}
	c, err := routing.Apply(st, objs, pipelineT0)
	if err != nil {
		b.Fatal(err)
	}
	st = st.With(c)
	src := routing.StaticEndpoints{}
	st = st.With(routing.Change{Put: routing.Reconcile(st, src, routing.Config{}, pipelineT0)})
	return st, src
}

// trafficStep moves svc-7's split to 50/50: the State after admission and reconcile, and the
// refs that changed, as the loop would know them.
func trafficStep(b *testing.B, st *routing.State, src routing.EndpointSource) (*routing.State, []routing.Ref) {
	b.Helper()
	key := routing.Key{Namespace: "team-07", Name: "svc-7"}
	svc := v1.Clone(st.Services[key])
	svc.Status = v1.ServiceStatus{}
	p50 := int64(50)
	svc.Spec.Traffic[0].Percent, svc.Spec.Traffic[1].Percent = &p50, &p50
	c, err := routing.Apply(st, []v1.Object{svc}, pipelineT0)
	if err != nil {
		b.Fatal(err)
	}
	var changed []routing.Ref
	for _, o := range c.Put {
		changed = append(changed, routing.RefOf(o))
	}
	next := st.With(c)
	out := routing.ReconcileScoped(next, src, routing.Config{}, pipelineT0.Add(time.Minute), changed)
	for _, o := range out {
		changed = append(changed, routing.RefOf(o))
	}
	return next.With(routing.Change{Put: out}), changed
}

// movedEndpoints is src with one revision's endpoints moved.
type movedEndpoints struct {
	routing.EndpointSource
	rev string
	to  []routing.Endpoint
}

func (m movedEndpoints) Instances(rev *v1.Revision) routing.Instances {
	if rev.Name == m.rev {
		return routing.Instances{Ready: true, Endpoints: m.to}
	}
	return m.EndpointSource.Instances(rev)
}

func quietServer(b *testing.B) *Server {
	b.Helper()
	srv, err := NewServer(b.Context(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	return srv
}

// BenchmarkPipeline alternates between two States (or two endpoint sources) so that every
// iteration pushes one change. full is the baseline; diff is the incremental path.
func BenchmarkPipeline(b *testing.B) {
	for _, shape := range pipelineShapes {
		for _, n := range pipelineSizes {
			st, src := pipelineState(b, n, shape.tags)
			traffic, trafficRefs := trafficStep(b, st, src)
			moved := movedEndpoints{src, "svc-7-v1", []routing.Endpoint{{Host: "10.9.9.9", Port: 8080}}}
			revRef := []routing.Ref{{Kind: v1.KindRevision, Key: routing.Key{Namespace: "team-07", Name: "svc-7-v1"}}}
			cases := []struct {
				name    string
				states  [2]*routing.State
				srcs    [2]routing.EndpointSource
				changed [2][]routing.Ref
			}{
				{"traffic", [2]*routing.State{traffic, st}, [2]routing.EndpointSource{src, src}, [2][]routing.Ref{trafficRefs, trafficRefs}},
				{"endpoints", [2]*routing.State{st, st}, [2]routing.EndpointSource{moved, src}, [2][]routing.Ref{revRef, revRef}},
			}
			for _, c := range cases {
				prefix := fmt.Sprintf("shape=%s/services=%d/change=%s", shape.name, n, c.name)
				b.Run(prefix+"/path=full", func(b *testing.B) {
					tr, srv := envoy.NewTranslator(envoy.Options{}), quietServer(b)
					if _, err := srv.Update(context.Background(), tr.Translate(routing.BuildTable(st, src, routing.Config{}))); err != nil {
						b.Fatal(err)
					}
					var pushed int64
					i := 0
					for b.Loop() {
						tab := routing.BuildTable(c.states[i%2], c.srcs[i%2], routing.Config{})
						i++
						stats, err := srv.Update(context.Background(), tr.Translate(tab))
						if err != nil || stats.Changed == 0 {
							b.Fatalf("%+v %v", stats, err)
						}
						pushed += int64(stats.Changed)
					}
					b.ReportMetric(float64(pushed)/float64(b.N), "resources/op")
				})
				b.Run(prefix+"/path=diff", func(b *testing.B) {
					tb, tr, srv := routing.NewTableBuilder(routing.Config{}), envoy.NewTranslator(envoy.Options{}), quietServer(b)
					tab, d := tb.BuildDiff(st, src, nil)
					if _, err := srv.UpdateChanged(context.Background(), tr.TranslateDiff(tab, d), tr.LastChanges()); err != nil {
						b.Fatal(err)
					}
					var pushed int64
					i := 0
					for b.Loop() {
						tab, d := tb.BuildDiff(c.states[i%2], c.srcs[i%2], c.changed[i%2])
						i++
						res := tr.TranslateDiff(tab, d)
						stats, err := srv.UpdateChanged(context.Background(), res, tr.LastChanges())
						if err != nil || stats.Changed == 0 {
							b.Fatalf("%+v %v", stats, err)
						}
						pushed += int64(stats.Changed)
					}
					b.ReportMetric(float64(pushed)/float64(b.N), "resources/op")
				})
			}
		}
	}
}

// BenchmarkRetainedHeap is the live heap the Translator and the xds caches hold after a full
// translation and push (runtime.ReadMemStats after GC): what the control plane keeps between
// updates on top of the routing State and Table, which are measured before.
//
// gRPC clients get API listeners and per-host route configurations only for the hosts they
// subscribe to (envoy.Translator.SetWanted). wanted=all is every host, as before hosts were
// built on demand (the baseline, in the same run); wanted=100 is a realistic set: 100 hosts that
// some gRPC client dials.
//
//	go test -run '^$' -bench 'BenchmarkRetainedHeap' -benchtime 1x ./xds/
func BenchmarkRetainedHeap(b *testing.B) {
	for _, shape := range pipelineShapes {
		for _, n := range pipelineSizes {
			for _, w := range retainedWanted {
				b.Run(fmt.Sprintf("shape=%s/services=%d/wanted=%s", shape.name, n, w.name), func(b *testing.B) {
					st, src := pipelineState(b, n, shape.tags)
					tab := routing.BuildTable(st, src, routing.Config{})
					var translator, caches uint64
					for b.Loop() {
						translator, caches = retainedHeap(b, tab, w.hosts(tab))
					}
					b.ReportMetric(float64(translator)/(1<<20), "translator-MB")
					b.ReportMetric(float64(caches)/(1<<20), "xds-MB")
					b.ReportMetric(float64(translator+caches)/(1<<20), "total-MB")
				})
			}
		}
	}
	// Issue 2's size in one line: the total of each shape at 10,000 services.
	for _, w := range retainedWanted {
		b.Run("shapes=both/services=10000/wanted="+w.name, func(b *testing.B) {
			totals := make([]uint64, len(pipelineShapes))
			for b.Loop() {
				for i, shape := range pipelineShapes {
					st, src := pipelineState(b, 10_000, shape.tags)
					tab := routing.BuildTable(st, src, routing.Config{})
					translator, caches := retainedHeap(b, tab, w.hosts(tab))
					totals[i] = translator + caches
				}
			}
			for i, shape := range pipelineShapes {
				b.ReportMetric(float64(totals[i])/(1<<20), shape.name+"-total-MB")
			}
		})
	}
}

// retainedWanted are the wanted-host sets BenchmarkRetainedHeap measures.
var retainedWanted = []struct {
	name  string
	hosts func(*routing.Table) map[string]bool // nil: every host
}{
	{"all", func(*routing.Table) map[string]bool { return nil }},
	{"100", func(tab *routing.Table) map[string]bool {
		// Every 1/100th host, so both visibilities and all kinds of host are among them.
		w := map[string]bool{}
		for i := 0; i < len(tab.Hosts) && len(w) < 100; i += max(1, len(tab.Hosts)/100) {
			w[tab.Hosts[i].Name] = true
		}
		return w
	}},
}

// retainedHeap translates tab, wanting the given hosts for gRPC clients, with a new Translator
// and pushes it to a new Server, and returns the live heap each of them holds afterwards.
func retainedHeap(b *testing.B, tab *routing.Table, wanted map[string]bool) (translator, caches uint64) {
	b.Helper()
	base := liveHeap()
	tr := envoy.NewTranslator(envoy.Options{})
	tr.SetWanted(wanted)
	res := tr.Translate(tab)
	if wanted != nil && len(res.APIListeners) != len(wanted) {
		b.Fatalf("%d API listeners for %d wanted hosts", len(res.APIListeners), len(wanted))
	}
	afterTr := liveHeap()
	srv := quietServer(b)
	if _, err := srv.Update(context.Background(), res); err != nil {
		b.Fatal(err)
	}
	res = nil
	afterSrv := liveHeap()
	runtime.KeepAlive(tr)
	runtime.KeepAlive(srv)
	return afterTr - min(base, afterTr), afterSrv - min(afterTr, afterSrv)
}

func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
