package routing

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Reachable answers from the index what a scan of every route's status traffic answers.
func TestReachableEqualsAScan(t *testing.T) {
	route := func(ns, name string, served ...string) *v1.Route {
		rt := &v1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		for _, r := range served {
			rt.Status.Traffic = append(rt.Status.Traffic, v1.TrafficTarget{RevisionName: r})
		}
		return rt
	}
	rev := func(ns, name string) *v1.Revision {
		return &v1.Revision{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	st := NewState().With(Change{Put: []v1.Object{
		route("default", "a", "a-1", "a-2"),
		route("other", "b", "a-1"), // same revision name, other namespace
		rev("default", "a-1"), rev("default", "a-2"), rev("default", "a-3"), rev("other", "a-1"), rev("other", "c-1"),
	}})
	st = st.With(Change{Put: []v1.Object{route("default", "a", "a-2")}}) // a-1 no longer served in default
	scan := map[Key]bool{}
	for k := range st.Routes {
		for _, r := range st.ServedRevisions(k) {
			scan[r] = true
		}
	}
	for k := range st.Revisions {
		if got, want := st.Reachable(k), scan[k]; got != want {
			t.Errorf("Reachable(%s) = %v, want %v", k, got, want)
		}
	}
	if !st.Reachable(Key{Namespace: "other", Name: "a-1"}) || st.Reachable(Key{Namespace: "default", Name: "a-1"}) {
		t.Errorf("reachability crossed namespaces or kept a route's old traffic")
	}
}
