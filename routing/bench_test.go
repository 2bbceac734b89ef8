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
					Spec: v1.RevisionSpec{PodSpec: corev1.PodSpec{Containers: []corev1.Container{{
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
