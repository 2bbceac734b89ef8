package routing

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// upInstances is an EndpointSource for tests: a revision is up (with one endpoint) when named
// in the map, down otherwise.
type upInstances map[string]bool

func (u upInstances) Instances(rev *v1.Revision) Instances {
	if !u[rev.Name] {
		return Instances{Reason: "Down", Message: "test: " + rev.Name + " is down"}
	}
	return Instances{Ready: true, Endpoints: []Endpoint{{Host: "10.0.0.1", Port: 8080}}}
}

func decode(t testing.TB, yaml string) []v1.Object {
	t.Helper()
	objs, err := v1.Decode([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return objs
}

func decodeFile(t testing.TB, path string) []v1.Object {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := v1.Decode(data, filepath.Base(path))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return objs
}

func apply(t testing.TB, st *State, objs []v1.Object) *State {
	t.Helper()
	c, err := Apply(st, objs, t0)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return st.With(c)
}

// settle reconciles st and checks that a second reconcile finds nothing to change.
func settle(t testing.TB, st *State, src EndpointSource, now time.Time) *State {
	t.Helper()
	st = st.With(Change{Put: Reconcile(st, src, Config{}, now)})
	if again := Reconcile(st, src, Config{}, now.Add(time.Minute)); len(again) != 0 {
		t.Fatalf("Reconcile did not reach a fixed point: second call changed %d objects, first %s", len(again), v1.Describe(again[0]))
	}
	return st
}

// served is a route's status.traffic as "tag:revision=percent" strings, for compact assertions.
func served(st *State, ns, name string) []string {
	r := st.Routes[Key{ns, name}]
	if r == nil {
		return nil
	}
	var out []string
	for _, tt := range r.Status.Traffic {
		p := int64(-1)
		if tt.Percent != nil {
			p = *tt.Percent
		}
		out = append(out, tt.Tag+":"+tt.RevisionName+"="+strconv.FormatInt(p, 10))
	}
	return out
}

func ptr[T any](v T) *T { return &v }
