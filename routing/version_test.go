package routing

import (
	"errors"
	"strings"
	"testing"
	"time"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// An object applied with a resourceVersion is applied only if the stored one is still what the
// client read; without one it overwrites, as before.
func TestApplyResourceVersionPrecondition(t *testing.T) {
	st := settle(t, apply(t, NewState(), decode(t, svcYAML("", "a", ""))), upInstances{}, t0)
	read := st.Get(Ref{Kind: v1.KindService, Key: Key{"default", "hello"}})
	version := v1.ContentVersion(read)

	withVersion := func(yaml, rv string) []v1.Object {
		objs := decode(t, yaml)
		objs[0].SetResourceVersion(rv)
		return objs
	}

	// What was read is still there: the change goes in.
	c, err := Apply(st, withVersion(svcYAML("", "b", ""), version), t0)
	if err != nil {
		t.Fatalf("apply with the current resourceVersion: %v", err)
	}
	changed := st.With(c)
	if v1.ContentVersion(changed.Get(RefOf(read))) == version {
		t.Fatal("the Service changed and its version did not")
	}

	// Someone else's change landed since: the stale version is refused, naming both.
	_, err = Apply(changed, withVersion(svcYAML("", "c", ""), version), t0)
	conflict, ok := errors.AsType[*ConflictError](err)
	if !ok {
		t.Fatalf("apply with a stale resourceVersion: %v, want a ConflictError", err)
	}
	if !strings.Contains(err.Error(), "Service default/hello: changed since it was read") || !strings.Contains(err.Error(), version) ||
		conflict.Current != v1.ContentVersion(changed.Get(RefOf(read))) {
		t.Errorf("conflict = %q (%+v)", err, conflict)
	}

	// Gone since it was read.
	_, err = Apply(NewState(), withVersion(svcYAML("", "c", ""), version), t0)
	if _, ok := errors.AsType[*ConflictError](err); !ok || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("apply with a resourceVersion of a deleted object: %v", err)
	}

	// Without a version the apply overwrites, and so it does with one sluice never issues (a
	// Kubernetes counter, in YAML exported from a cluster).
	if _, err := Apply(changed, decode(t, svcYAML("", "c", "")), t0); err != nil {
		t.Errorf("apply without a resourceVersion: %v", err)
	}
	if _, err := Apply(changed, withVersion(svcYAML("", "c", ""), "48213"), t0); err != nil {
		t.Errorf("apply with a Kubernetes resourceVersion: %v", err)
	}

	// The same object twice in one call, both read at the same version: the second was read
	// before the first changed it.
	twice := append(withVersion(svcYAML("", "b", ""), version), withVersion(svcYAML("", "c", ""), version)...)
	if _, err := Apply(st, twice, t0); err == nil {
		t.Error("two changes of one read in one call: both applied")
	} else if _, ok := errors.AsType[*ConflictError](err); !ok {
		t.Errorf("two changes of one read in one call: %v, want a ConflictError", err)
	}
}

func TestIsContentVersion(t *testing.T) {
	st := apply(t, NewState(), decode(t, svcYAML("", "a", "")))
	if rv := v1.ContentVersion(st.Services[Key{"default", "hello"}]); !v1.IsContentVersion(rv) {
		t.Errorf("ContentVersion %q is not recognised as one", rv)
	}
	for _, rv := range []string{"", "48213", "0123456789ABCDEF", "0123456789abcdeg", "0123456789abcdef0"} {
		if v1.IsContentVersion(rv) {
			t.Errorf("IsContentVersion(%q) = true", rv)
		}
	}
}

// Status is sluice's own: its updates (readiness, scale) never make a client's version stale.
func TestContentVersionLeavesStatusOut(t *testing.T) {
	st := apply(t, NewState(), decode(t, svcYAML("", "a", "")))
	ref := Ref{Kind: v1.KindService, Key: Key{"default", "hello"}}
	before := v1.ContentVersion(st.Get(ref))
	settled := settle(t, st, upInstances{"hello-00001": true}, t0.Add(time.Minute))
	svc := settled.Services[ref.Key]
	if svc.Status.LatestReadyRevisionName == "" {
		t.Fatalf("the Service did not become ready: %+v", svc.Status)
	}
	if after := v1.ContentVersion(svc); after != before {
		t.Errorf("a status update changed the version: %s → %s", before, after)
	}
	svc2 := v1.Clone(svc)
	svc2.SetResourceVersion("anything")
	if v1.ContentVersion(svc2) != before {
		t.Error("the resourceVersion field itself changed the version")
	}
	svc2.Labels = map[string]string{"team": "a"}
	if v1.ContentVersion(svc2) == before {
		t.Error("a label change left the version as it was")
	}
}
