package routing

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// benchState has n Services, each with two revisions split 80/20 and a tag, all ready.
func benchState(b *testing.B, n int) (*State, EndpointSource) {
	b.Helper()
	st := NewState()
	var objs []v1.Object
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		for g, target := range []string{"a", "b"} {
			svc := &v1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
				Spec: v1.ServiceSpec{ConfigurationSpec: v1.ConfigurationSpec{Template: v1.RevisionTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{
						Name:        fmt.Sprintf("%s-v%d", name, g+1),
						Annotations: map[string]string{v1.AnnotationEndpoints: fmt.Sprintf("10.%d.%d.%d:8080", i>>16&255, i>>8&255, i&255)},
					},
					Spec: v1.RevisionSpec{PodSpec: &corev1.PodSpec{Containers: []corev1.Container{{
						Image: "hello", Env: []corev1.EnvVar{{Name: "TARGET", Value: target}},
					}}}},
				}}},
			}
			if g == 1 {
				svc.Spec.Traffic = []v1.TrafficTarget{
					{RevisionName: name + "-v1", Percent: ptr(int64(80)), Tag: "v1"},
					{LatestRevision: ptr(true), Percent: ptr(int64(20))},
				}
			}
			objs = append(objs, svc)
		}
	}
	c, err := Apply(st, objs, t0)
	if err != nil {
		b.Fatal(err)
	}
	st = st.With(c)
	src := StaticEndpoints{}
	st = st.With(Change{Put: Reconcile(st, src, Config{}, t0)})
	return st, src
}

func BenchmarkBuildTable(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st, src := benchState(b, n)
			b.ResetTimer()
			for b.Loop() {
				if tab := BuildTable(st, src, Config{}); len(tab.Backends) != 2*n {
					b.Fatalf("%d backends", len(tab.Backends))
				}
			}
		})
	}
}

// BenchmarkReconcile measures the steady state: nothing changed, nothing to return.
func BenchmarkReconcile(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st, src := benchState(b, n)
			now := t0.Add(time.Minute)
			b.ResetTimer()
			for b.Loop() {
				if out := Reconcile(st, src, Config{}, now); len(out) != 0 {
					b.Fatalf("%d changed", len(out))
				}
			}
		})
	}
}

// trafficChange is svc-7's traffic moved to 50/50: the Change Apply makes, the State with it,
// the refs it touched, and the State once ReconcileScoped's statuses are applied too, with all
// the refs that changed.
type trafficChange struct {
	change          Change
	applied         *State
	changed         []Ref
	settled         *State
	changedSettling []Ref
}

func benchTrafficChange(b *testing.B, st *State, src EndpointSource) (*v1.Service, trafficChange) {
	b.Helper()
	svc := v1.Clone(st.Services[Key{"default", "svc-7"}])
	svc.Status = v1.ServiceStatus{}
	svc.Spec.Traffic[0].Percent = ptr(int64(50))
	svc.Spec.Traffic[1].Percent = ptr(int64(50))
	c, err := Apply(st, []v1.Object{svc}, t0)
	if err != nil {
		b.Fatal(err)
	}
	tc := trafficChange{change: c, applied: st.With(c)}
	for _, o := range c.Put {
		tc.changed = append(tc.changed, RefOf(o))
	}
	out := ReconcileScoped(tc.applied, src, Config{}, t0.Add(time.Minute), tc.changed)
	if len(out) == 0 {
		b.Fatal("the traffic change changed no status")
	}
	tc.settled = tc.applied.With(Change{Put: out})
	tc.changedSettling = append([]Ref(nil), tc.changed...)
	for _, o := range out {
		tc.changedSettling = append(tc.changedSettling, RefOf(o))
	}
	return svc, tc
}

// BenchmarkApply is one Service's traffic changed through admission, and the new State.
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st, src := benchState(b, n)
			svc, _ := benchTrafficChange(b, st, src)
			b.ResetTimer()
			for b.Loop() {
				c, err := Apply(st, []v1.Object{svc}, t0)
				if err != nil {
					b.Fatal(err)
				}
				_ = st.With(c)
			}
		})
	}
}

// BenchmarkReconcileScoped reconciles what one Service's traffic change affects.
func BenchmarkReconcileScoped(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st, src := benchState(b, n)
			_, tc := benchTrafficChange(b, st, src)
			now := t0.Add(time.Minute)
			b.ResetTimer()
			for b.Loop() {
				if out := ReconcileScoped(tc.applied, src, Config{}, now, tc.changed); len(out) == 0 {
					b.Fatal("nothing changed")
				}
			}
		})
	}
}

// downSource is src with one revision down.
type downSource struct {
	EndpointSource
	rev string
}

func (d downSource) Instances(rev *v1.Revision) Instances {
	if rev.Name == d.rev {
		return Instances{Reason: "Down", Message: "bench: down"}
	}
	return d.EndpointSource.Instances(rev)
}

// BenchmarkReconcileScopedRevision reconciles what one Revision going down affects: itself, its
// Configuration, the Route serving it and their Service.
func BenchmarkReconcileScopedRevision(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st, src := benchState(b, n)
			down := downSource{src, "svc-7-v1"}
			changed := []Ref{{Kind: v1.KindRevision, Key: Key{"default", "svc-7-v1"}}}
			now := t0.Add(time.Minute)
			b.ResetTimer()
			for b.Loop() {
				if out := ReconcileScoped(st, down, Config{}, now, changed); len(out) == 0 {
					b.Fatal("nothing changed")
				}
			}
		})
	}
}

// BenchmarkTableBuilderTraffic rebuilds the Table after one Service's traffic changed, going
// back and forth between the two States so that every build has a change to make.
func BenchmarkTableBuilderTraffic(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st, src := benchState(b, n)
			_, tc := benchTrafficChange(b, st, src)
			tb := NewTableBuilder(Config{})
			prev := tb.Build(st, src, nil)
			states := [2]*State{tc.settled, st}
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if tab := tb.Build(states[i%2], src, tc.changedSettling); tab == prev {
					b.Fatal("nothing rebuilt")
				} else {
					prev = tab
				}
				i++
			}
		})
	}
}

// movedEndpoints is src with one revision's endpoints moved.
type movedEndpoints struct {
	EndpointSource
	rev string
	to  []Endpoint
}

func (m movedEndpoints) Instances(rev *v1.Revision) Instances {
	if rev.Name == m.rev {
		return Instances{Ready: true, Endpoints: m.to}
	}
	return m.EndpointSource.Instances(rev)
}

// BenchmarkTableBuilderEndpoints rebuilds the Table after one revision's endpoints changed,
// alternating between two sets of endpoints.
func BenchmarkTableBuilderEndpoints(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st, src := benchState(b, n)
			tb := NewTableBuilder(Config{})
			prev := tb.Build(st, src, nil)
			srcs := [2]EndpointSource{
				movedEndpoints{src, "svc-7-v1", []Endpoint{{Host: "10.9.9.9", Port: 8080}}},
				src,
			}
			changed := []Ref{{Kind: v1.KindRevision, Key: Key{"default", "svc-7-v1"}}}
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if tab := tb.Build(st, srcs[i%2], changed); tab == prev {
					b.Fatal("nothing rebuilt")
				} else {
					prev = tab
				}
				i++
			}
		})
	}
}
