package store

// BenchmarkStateMemory measures the heap a store's State retains at 1,000 and 10,000 services × 2
// revisions, once built by applies and status writes and once loaded back from disk. It is a
// measurement, not a timing: run it once per size.
//
//	go test -run '^$' -bench StateMemory -benchtime 1x ./routing/store/
//
// Reported: MB-applied and MB-reopened (HeapAlloc after a GC, less that before the store was
// opened) and B/object-… (the same over the 5 objects each service makes: Service,
// Configuration, Route and 2 Revisions), and ms-open, how long the reopen took (loading costs
// time as well as memory; reported, not asserted).

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/routing"
	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// benchService is Service i at generation gen, shaped as the control-plane benchmarks' (see
// controlplane/bench_test.go): gen 1 creates NAME-v1; gen 2 creates NAME-v2
// and splits v1Percent / 100-v1Percent between them, no tags.
func benchService(i, gen int, v1Percent int64) *v1.Service {
	name := fmt.Sprintf("svc-%05d", i)
	svc := &v1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindService},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.ServiceSpec{ConfigurationSpec: v1.ConfigurationSpec{Template: v1.RevisionTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{
				Name:        fmt.Sprintf("%s-v%d", name, gen),
				Annotations: map[string]string{v1.AnnotationEndpoints: fmt.Sprintf("10.%d.%d.%d:8080", gen, i>>8&255, i&255)},
			},
			Spec: v1.RevisionSpec{PodSpec: &corev1.PodSpec{Containers: []corev1.Container{{
				Image: "ghcr.io/knative/helloworld-go:latest",
				Env:   []corev1.EnvVar{{Name: "TARGET", Value: fmt.Sprintf("v%d", gen)}},
			}}}},
		}}},
	}
	if gen == 2 {
		p1, p2 := v1Percent, 100-v1Percent
		svc.Spec.Traffic = []v1.TrafficTarget{
			{RevisionName: name + "-v1", Percent: &p1},
			{RevisionName: name + "-v2", Percent: &p2},
		}
	}
	return svc
}

// readyEverywhere says every revision is ready, keeping nothing per revision, so that the heap
// measured is the State's and not an endpoint source's.
type readyEverywhere struct{}

var oneEndpoint = []routing.Endpoint{{Host: "10.0.0.1", Port: 8080}}

func (readyEverywhere) Instances(*v1.Revision) routing.Instances {
	return routing.Instances{Ready: true, Endpoints: oneEndpoint}
}

// fillStore applies n services with two revisions each in batches of 500 (as the API would
// receive them) and then writes statuses as the control-plane loop does, until they settle.
func fillStore(tb testing.TB, s *Store, n int) {
	tb.Helper()
	const batch = 500
	for lo := 0; lo < n; lo += batch {
		var objs []v1.Object
		for i := lo; i < min(lo+batch, n); i++ {
			objs = append(objs, benchService(i, 1, 0), benchService(i, 2, 80))
		}
		if _, err := s.Apply(context.Background(), objs, false); err != nil {
			tb.Fatalf("apply services %d-%d: %v", lo, lo+batch-1, err)
		}
	}
	s.TakeChanged() // the loop drains the journal; left alone it would be measured too
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for pass := 0; ; pass++ {
		updates := routing.Reconcile(s.State(), readyEverywhere{}, routing.Config{}, now)
		if len(updates) == 0 {
			break
		}
		if pass == 3 {
			tb.Fatalf("statuses still changing after %d passes", pass)
		}
		if err := s.UpdateStatus(context.Background(), updates); err != nil {
			tb.Fatal(err)
		}
	}
}

func heapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC() // a second cycle frees what the first one's finalizers released
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func BenchmarkStateMemory(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			var applied, reopened uint64
			var loadTime time.Duration
			for range b.N {
				dir := b.TempDir()
				base := heapAlloc()
				s, err := Open(dir)
				if err != nil {
					b.Fatal(err)
				}
				fillStore(b, s, n)
				applied = heapAlloc() - base
				runtime.KeepAlive(s.State())
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				s = nil

				base = heapAlloc()
				start := time.Now()
				s, err = Open(dir)
				loadTime = time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				reopened = heapAlloc() - base
				if got := len(s.State().Revisions); got != 2*n {
					b.Fatalf("reopened with %d revisions, want %d", got, 2*n)
				}
				runtime.KeepAlive(s.State())
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
			objects := float64(5 * n)
			b.ReportMetric(float64(applied)/1e6, "MB-applied")
			b.ReportMetric(float64(reopened)/1e6, "MB-reopened")
			b.ReportMetric(float64(applied)/objects, "B/object-applied")
			b.ReportMetric(float64(reopened)/objects, "B/object-reopened")
			b.ReportMetric(float64(loadTime.Milliseconds()), "ms-open")
		})
	}
}
