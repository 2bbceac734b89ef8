package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/routing"
	v1 "github.com/sluice-dev/sluice/routing/v1"
	"github.com/sluice-dev/sluice/source"
)

const helloV1 = `
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
  namespace: default
spec:
  template:
    metadata:
      annotations:
        sluice.dev/endpoints: "127.0.0.1:8081"
    spec:
      containers:
      - image: example.com/hello:v1
`

const helloV2 = `
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
  namespace: default
spec:
  template:
    metadata:
      annotations:
        sluice.dev/endpoints: "127.0.0.1:8082"
    spec:
      containers:
      - image: example.com/hello:v2
`

const badTraffic = `
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: broken
  namespace: default
spec:
  template:
    spec:
      containers:
      - image: example.com/broken:v1
  traffic:
  - revisionName: broken-00009
    percent: 100
`

func decode(t *testing.T, docs ...string) []v1.Object {
	t.Helper()
	objs, err := v1.Decode([]byte(strings.Join(docs, "\n---\n")), "test.yaml")
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return objs
}

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

var helloKey = routing.Key{Namespace: "default", Name: "hello"}

func TestStatePersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	res, err := s.Apply(context.Background(), decode(t, helloV1), false)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(res.Objects) != 1 || res.Objects[0].Action != source.Created {
		t.Fatalf("Objects = %+v, want one created", res.Objects)
	}
	if want := []routing.Key{{Namespace: "default", Name: "hello-00001"}}; !equalKeys(res.Revisions, want) {
		t.Fatalf("Revisions = %v, want %v", res.Revisions, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	defer s.Close()
	st := s.State()
	if st.Services[helloKey] == nil || st.Configurations[helloKey] == nil || st.Routes[helloKey] == nil {
		t.Fatalf("after reopen: service, configuration and route of hello should exist: %+v", st)
	}
	if st.Revisions[routing.Key{Namespace: "default", Name: "hello-00001"}] == nil {
		t.Fatalf("after reopen: revision hello-00001 missing")
	}

	// The same YAML again is a no-op: nothing written, nothing signalled, pointers kept.
	before := st.Services[helloKey]
	res, err = s.Apply(context.Background(), decode(t, helloV1), false)
	if err != nil {
		t.Fatalf("re-Apply: %v", err)
	}
	if res.Objects[0].Action != source.Unchanged || len(res.Revisions) != 0 {
		t.Fatalf("re-Apply result = %+v, want unchanged and no revision", res)
	}
	if s.State().Services[helloKey] != before {
		t.Errorf("an unchanged apply replaced the stored Service")
	}
	select {
	case <-s.Changes():
		t.Errorf("an unchanged apply signalled a change")
	default:
	}

	res, err = s.Apply(context.Background(), decode(t, helloV2), false)
	if err != nil {
		t.Fatalf("Apply v2: %v", err)
	}
	if res.Objects[0].Action != source.Configured {
		t.Errorf("v2 action = %s, want configured", res.Objects[0].Action)
	}
	if want := []routing.Key{{Namespace: "default", Name: "hello-00002"}}; !equalKeys(res.Revisions, want) {
		t.Errorf("v2 Revisions = %v, want %v", res.Revisions, want)
	}
}

func TestApplyErrorWritesNothing(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	// The valid document comes first: an error in the second must keep the first out too.
	_, err := s.Apply(context.Background(), decode(t, helloV1, badTraffic), false)
	if err == nil {
		t.Fatal("Apply with traffic to an unknown revision: want an error")
	}
	if !strings.Contains(err.Error(), "broken-00009") {
		t.Errorf("error %q should name the unknown revision", err)
	}
	if _, ok := errors.AsType[*source.AdmissionError](err); !ok {
		t.Errorf("error %T is not an *source.AdmissionError", err)
	}
	if n := count(s.State()); n != 0 {
		t.Errorf("in memory: %d objects after a failed apply, want 0", n)
	}
	select {
	case <-s.Changes():
		t.Errorf("a failed apply signalled a change")
	default:
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	if n := count(s.State()); n != 0 {
		t.Errorf("on disk: %d objects after a failed apply, want 0", n)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	res, err := s.Apply(context.Background(), decode(t, helloV1), true)
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if len(res.Objects) != 1 || res.Objects[0].Action != source.Created || len(res.Revisions) != 1 {
		t.Errorf("dry run result = %+v, want the service created with one revision", res)
	}
	if n := count(s.State()); n != 0 {
		t.Errorf("dry run left %d objects in memory", n)
	}
	select {
	case <-s.Changes():
		t.Errorf("a dry run signalled a change")
	default:
	}
	s.Close()
	s = open(t, dir)
	defer s.Close()
	if n := count(s.State()); n != 0 {
		t.Errorf("dry run left %d objects on disk", n)
	}
}

func TestOpenLockedDataDir(t *testing.T) {
	old := lockTimeout
	lockTimeout = 10 * time.Millisecond
	t.Cleanup(func() { lockTimeout = old })

	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	_, err := Open(dir)
	if err == nil {
		t.Fatal("second Open of the same data dir: want an error")
	}
	if want := "data dir " + dir + " is in use by another sluice"; !strings.Contains(err.Error(), want) {
		t.Errorf("error = %q, want it to contain %q", err, want)
	}
}

func TestUpdateStatusKeepsNewerSpec(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	if _, err := s.Apply(context.Background(), decode(t, helloV1), false); err != nil {
		t.Fatal(err)
	}
	<-s.Changes()
	stale := *s.State().Services[helloKey] // what a reconcile loop read before the next apply
	if _, err := s.Apply(context.Background(), decode(t, helloV2), false); err != nil {
		t.Fatal(err)
	}
	stale.Status.LatestCreatedRevisionName = "hello-00001"
	stale.Status.URL = "http://hello.default.example.com"
	if err := s.UpdateStatus(context.Background(), []v1.Object{&stale}); err != nil {
		t.Fatalf("UpdateStatus: %v", err)
	}
	got := s.State().Services[helloKey]
	if img := got.Spec.Template.Spec.Containers[0].Image; img != "example.com/hello:v2" {
		t.Errorf("image = %s: the status write clobbered the newer spec", img)
	}
	if got.Status.URL != "http://hello.default.example.com" {
		t.Errorf("status URL = %q, want the written status", got.Status.URL)
	}

	// A status for an object deleted meanwhile is dropped, not resurrected.
	if _, err := s.Delete(context.Background(), routing.Ref{Kind: v1.KindService, Key: helloKey}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.UpdateStatus(context.Background(), []v1.Object{&stale}); err != nil {
		t.Fatalf("UpdateStatus after delete: %v", err)
	}
	if s.State().Services[helloKey] != nil {
		t.Errorf("UpdateStatus resurrected a deleted service")
	}
}

func TestDelete(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := s.Apply(context.Background(), decode(t, helloV1), false); err != nil {
		t.Fatal(err)
	}
	_, err := s.Delete(context.Background(), routing.Ref{Kind: v1.KindService, Key: routing.Key{Namespace: "default", Name: "nope"}})
	if !errors.Is(err, source.ErrNotFound) {
		t.Errorf("Delete of a missing service: err = %v, want source.ErrNotFound", err)
	}
	if _, err := s.Delete(context.Background(), routing.Ref{Kind: v1.KindService, Key: helloKey}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if n := count(s.State()); n != 0 {
		t.Errorf("%d objects left after deleting the only service, want 0 (owned objects cascade)", n)
	}
	s.Close()
	s = open(t, dir)
	defer s.Close()
	if n := count(s.State()); n != 0 {
		t.Errorf("%d objects on disk after delete, want 0", n)
	}
}

func TestChangesCoalesce(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	if _, err := s.Apply(context.Background(), decode(t, helloV1), false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(context.Background(), decode(t, helloV2), false); err != nil {
		t.Fatal(err)
	}
	<-s.Changes()
	select {
	case <-s.Changes():
		t.Errorf("two changes gave two signals; a pending signal must absorb the second")
	default:
	}
}

func count(st *routing.State) int {
	return len(st.Services) + len(st.Configurations) + len(st.Routes) + len(st.Revisions)
}

func equalKeys(a, b []routing.Key) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTakeChangedJournalsAppliesAndDeletesButNotStatuses(t *testing.T) {
	s := open(t, t.TempDir())
	if refs, all := take(s); len(refs) != 0 || all {
		t.Fatalf("fresh store journal = %v, %v; want empty", refs, all)
	}
	if _, err := s.Apply(context.Background(), decode(t, helloV1), false); err != nil {
		t.Fatal(err)
	}
	refs, all := take(s)
	if all {
		t.Fatal("journal overflowed after one apply")
	}
	got := map[string]bool{}
	for _, r := range refs {
		got[r.String()] = true
	}
	for _, want := range []routing.Ref{
		{Kind: v1.KindService, Key: routing.Key{Namespace: "default", Name: "hello"}},
		{Kind: v1.KindConfiguration, Key: routing.Key{Namespace: "default", Name: "hello"}},
		{Kind: v1.KindRoute, Key: routing.Key{Namespace: "default", Name: "hello"}},
		{Kind: v1.KindRevision, Key: routing.Key{Namespace: "default", Name: "hello-00001"}},
	} {
		if !got[want.String()] {
			t.Errorf("journal %v lacks %v", refs, want)
		}
	}
	if refs, _ := take(s); len(refs) != 0 {
		t.Errorf("second TakeChanged = %v; want empty (it drains)", refs)
	}

	svc := *s.State().Services[routing.Key{Namespace: "default", Name: "hello"}]
	svc.Status.URL = "http://hello.default.example.com"
	if err := s.UpdateStatus(context.Background(), []v1.Object{&svc}); err != nil {
		t.Fatal(err)
	}
	if refs, _ := take(s); len(refs) != 0 {
		t.Errorf("status write journaled %v; the loop writing statuses must not hear of its own writes", refs)
	}
	select {
	case <-s.Changes():
		// The apply's signal may still be pending; that is fine as long as the status write
		// added nothing to the journal.
	default:
	}

	if _, err := s.Delete(context.Background(), routing.Ref{Kind: v1.KindService, Key: routing.Key{Namespace: "default", Name: "hello"}}); err != nil {
		t.Fatal(err)
	}
	if refs, _ := take(s); len(refs) != 4 {
		t.Errorf("journal after delete = %v; want the service and the 3 objects it owned", refs)
	}
}

// take is TakeChanged as the journal's refs and overflow flag.
func take(s *Store) ([]routing.Ref, bool) {
	c := s.TakeChanged()
	return c.Refs, c.All
}

type causeKey struct{}

// The contexts of applies and deletes come back with what they changed, so the loop's pass can
// work under them; status writes and dry runs add none, and the count is bounded.
func TestTakeChangedCarriesTheWritesContexts(t *testing.T) {
	s := open(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), causeKey{}, "apply-1"))
	if _, err := s.Apply(ctx, decode(t, helloV1), false); err != nil {
		t.Fatal(err)
	}
	cancel() // the API call returned; its values must outlive it
	if _, err := s.Apply(context.WithValue(context.Background(), causeKey{}, "dry"), decode(t, helloV2), true); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateStatus(context.WithValue(context.Background(), causeKey{}, "status"), []v1.Object{s.State().Services[routing.Key{Namespace: "default", Name: "hello"}]}); err != nil {
		t.Fatal(err)
	}
	c := s.TakeChanged()
	if len(c.Causes) != 1 || c.Causes[0].Value(causeKey{}) != "apply-1" || c.Causes[0].Err() != nil {
		t.Fatalf("causes after one apply, a dry run and a status write = %v; want the apply's, not cancelled", c.Causes)
	}
	for i := range source.MaxCauses + 5 {
		if _, err := s.Delete(context.WithValue(context.Background(), causeKey{}, i), routing.Ref{Kind: v1.KindService, Key: routing.Key{Namespace: "default", Name: "hello"}}); err != nil && !errors.Is(err, source.ErrNotFound) {
			t.Fatal(err)
		}
		if _, err := s.Apply(context.Background(), decode(t, helloV1), false); err != nil {
			t.Fatal(err)
		}
	}
	if c := s.TakeChanged(); len(c.Causes) != source.MaxCauses || c.Causes[0].Value(causeKey{}) != 0 {
		t.Errorf("causes after many writes: %d, first %v; want the first %d", len(c.Causes), c.Causes[0].Value(causeKey{}), source.MaxCauses)
	}
}
