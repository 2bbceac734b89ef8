package store

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sluice-dev/sluice/routing"
	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// checkAsStored fails unless every object of s's State encodes exactly as its stored value and as
// a plain decode of that value: sharing parts between objects must change no object, and since
// the stored bytes were written when each object was, a shared part mutated afterwards would
// show here as a difference.
func checkAsStored(t *testing.T, s *Store) {
	t.Helper()
	st := s.State()
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		for kind, name := range buckets {
			ferr := tx.Bucket(name).ForEach(func(k, v []byte) error {
				n++
				plain, err := decodeValue(kind, v)
				if err != nil {
					return err
				}
				ref := routing.RefOf(plain)
				obj := st.Get(ref)
				if obj == nil {
					t.Errorf("%s is stored but not in the State", ref)
					return nil
				}
				got, _ := json.Marshal(obj)
				want, _ := json.Marshal(plain)
				if string(got) != string(v) || string(got) != string(want) {
					t.Errorf("%s in memory differs from the store:\n got %s\nwant %s", ref, got, v)
				}
				return nil
			})
			if ferr != nil {
				return ferr
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := len(st.Services) + len(st.Configurations) + len(st.Routes) + len(st.Revisions); n != want {
		t.Errorf("store holds %d objects, State %d", n, want)
	}
}

func samePtr[T any](a, b []T) bool { return len(a) > 0 && len(b) > 0 && &a[0] == &b[0] }

func sameMapPtr(a, b map[string]string) bool {
	return a != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// checkShared fails unless the Service's template, its Configuration's and its latest Revision's
// spec are one value, as admission makes them and a load must make them again.
func checkShared(t *testing.T, st *routing.State, name, latest string) {
	t.Helper()
	k := routing.Key{Namespace: "default", Name: name}
	svc, cfg, rt := st.Services[k], st.Configurations[k], st.Routes[k]
	rev := st.Revisions[routing.Key{Namespace: "default", Name: latest}]
	if svc == nil || cfg == nil || rt == nil || rev == nil {
		t.Fatalf("%s: missing objects", name)
	}
	if pod := svc.Spec.Template.Spec.PodSpec; pod == nil || cfg.Spec.Template.Spec.PodSpec != pod || rev.Spec.PodSpec != pod {
		t.Errorf("%s: the template's pod spec is copied, not shared, between Service, Configuration and Revision", name)
	}
	if !sameMapPtr(svc.Spec.Template.Annotations, rev.Annotations) {
		t.Errorf("%s: the template's annotations are copied, not shared, with Revision %s", name, latest)
	}
	if !sameMapPtr(cfg.Labels, rt.Labels) {
		t.Errorf("%s: the Configuration's and Route's labels are copied, not shared", name)
	}
	if !samePtr(rt.Spec.Traffic, rt.Status.Traffic) || !samePtr(svc.Spec.Traffic, rt.Spec.Traffic) {
		t.Errorf("%s: equal traffic lists are copied, not shared", name)
	}
}

func TestSharedPartsChangeNothingStored(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	fillStore(t, s, 20)
	checkShared(t, s.State(), "svc-00003", "svc-00003-v2")

	// A template change for one service, a traffic-only change for another, and their
	// statuses: the revisions and objects left behind must keep what they were.
	s.now = func() time.Time { return time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC) }
	gen3 := benchService(1, 3, 50)
	gen3.Spec.Traffic = benchService(1, 2, 50).Spec.Traffic
	if _, err := s.Apply(context.Background(), []v1.Object{gen3, benchService(2, 2, 30)}, false); err != nil {
		t.Fatal(err)
	}
	if updates := routing.Reconcile(s.State(), readyEverywhere{}, routing.Config{}, s.now()); len(updates) > 0 {
		if err := s.UpdateStatus(context.Background(), updates); err != nil {
			t.Fatal(err)
		}
	}
	checkAsStored(t, s)
	checkShared(t, s.State(), "svc-00001", "svc-00001-v3")
	checkShared(t, s.State(), "svc-00002", "svc-00002-v2")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	defer s.Close()
	checkAsStored(t, s)
	for _, c := range []struct{ name, latest string }{{"svc-00001", "svc-00001-v3"}, {"svc-00002", "svc-00002-v2"}, {"svc-00007", "svc-00007-v2"}} {
		checkShared(t, s.State(), c.name, c.latest)
	}
	// Reconciling the loaded State finds nothing to change: it is the State that was saved.
	if left := routing.Reconcile(s.State(), readyEverywhere{}, routing.Config{}, time.Now()); len(left) != 0 {
		t.Errorf("after reopen, Reconcile changes %d objects", len(left))
	}
}

// Pod specs are shared by content across objects, even when the revision specs around them
// differ in their limits, whether built by an apply or loaded from disk.
func TestEqualPodSpecsShared(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	a, b := benchService(1, 1, 0), benchService(2, 1, 0)
	// Same image and env (TARGET=v1) in both; only the limits differ.
	a.Spec.Template.Spec.ContainerConcurrency = ptr(int64(5))
	b.Spec.Template.Spec.ContainerConcurrency = ptr(int64(10))
	if _, err := s.Apply(context.Background(), []v1.Object{a, b}, false); err != nil {
		t.Fatal(err)
	}
	check := func(st *routing.State) {
		t.Helper()
		sa, sb := st.Services[routing.Key{Namespace: "default", Name: "svc-00001"}], st.Services[routing.Key{Namespace: "default", Name: "svc-00002"}]
		if sa.Spec.Template.Spec.PodSpec != sb.Spec.Template.Spec.PodSpec {
			t.Error("equal pod specs of two services are copies")
		}
		if *sa.Spec.Template.Spec.ContainerConcurrency != 5 || *sb.Spec.Template.Spec.ContainerConcurrency != 10 {
			t.Error("sharing the pod spec mixed up the limits around it")
		}
		for _, name := range []string{"svc-00001", "svc-00002"} {
			k := routing.Key{Namespace: "default", Name: name}
			pod := st.Services[k].Spec.Template.Spec.PodSpec
			if st.Configurations[k].Spec.Template.Spec.PodSpec != pod || st.Revisions[routing.Key{Namespace: "default", Name: name + "-v1"}].Spec.PodSpec != pod {
				t.Errorf("%s: the pod spec is copied between Service, Configuration and Revision", name)
			}
		}
	}
	check(s.State())
	checkAsStored(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	check(s.State())
	checkAsStored(t, s)
}

func ptr[T any](v T) *T { return &v }
