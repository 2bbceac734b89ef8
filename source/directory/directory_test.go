package directory

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/routing/store"
	v1 "github.com/sluice-dev/sluice/routing/v1"
)

func service(name, image string) string {
	return `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: ` + name + `
spec:
  template:
    spec:
      containers:
      - image: ` + image + `
`
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func key(name string) routing.Key { return routing.Key{Namespace: "default", Name: name} }

func TestSync(t *testing.T) {
	st := openStore(t)
	dir := t.TempDir()
	write(t, dir, "a.yaml", service("a", "example.com/a:v1"))
	write(t, dir, "b.yaml", service("b", "example.com/b:v1"))

	if _, err := Sync(context.Background(), st, dir); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	if st.State().Services[key("a")] == nil || st.State().Services[key("b")] == nil {
		t.Fatal("first sync did not apply both files")
	}

	// A bad edit keeps the last good state, the good file included.
	write(t, dir, "a.yaml", service("a", "example.com/a:v2"))
	write(t, dir, "b.yaml", strings.Replace(service("b", "example.com/b:v2"), "containers:", "containerz:", 1))
	_, err := Sync(context.Background(), st, dir)
	if err == nil || !strings.Contains(err.Error(), "b.yaml") || !strings.Contains(err.Error(), "containerz") {
		t.Fatalf("sync with a bad file: err = %v, want it to name b.yaml and the field", err)
	}
	if img := st.State().Services[key("a")].Spec.Template.Spec.Containers[0].Image; img != "example.com/a:v1" {
		t.Errorf("a is %s after a failed sync, want the last good v1", img)
	}

	// Removing a file deletes what it applied; objects applied by other means stay.
	if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	objs := decodeAll(t, service("manual", "example.com/m:v1"))
	if _, err := st.Apply(context.Background(), objs, false); err != nil {
		t.Fatal(err)
	}
	rep, err := Sync(context.Background(), st, dir)
	pruned := rep.Pruned
	if err != nil {
		t.Fatalf("sync after removing b.yaml: %v", err)
	}
	if len(pruned) != 1 || pruned[0] != (routing.Ref{Kind: "Service", Key: key("b")}) {
		t.Errorf("pruned = %v, want Service default/b", pruned)
	}
	s := st.State()
	if s.Services[key("b")] != nil || s.Configurations[key("b")] != nil {
		t.Errorf("b is still stored after its file was removed")
	}
	if s.Services[key("manual")] == nil {
		t.Errorf("a service applied outside the directory was pruned")
	}
	if img := s.Services[key("a")].Spec.Template.Spec.Containers[0].Image; img != "example.com/a:v2" {
		t.Errorf("a is %s, want v2 once the directory is valid again", img)
	}
}

// TestRunFollowsEdits drives the real fsnotify loop. It waits on the store's change signal,
// never on a clock; the deadline only turns a hang into a failure.
func TestRunFollowsEdits(t *testing.T) {
	st := openStore(t)
	dir := t.TempDir()
	write(t, dir, "a.yaml", service("a", "example.com/a:v1"))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w := &Watcher{Dir: dir, Store: st, Log: slog.New(slog.DiscardHandler), Debounce: time.Millisecond}
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	waitFor(t, st, func(s *routing.State) bool { return s.Services[key("a")] != nil })
	write(t, dir, "b.yaml", service("b", "example.com/b:v1"))
	waitFor(t, st, func(s *routing.State) bool { return s.Services[key("b")] != nil })
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, st, func(s *routing.State) bool { return s.Services[key("a")] == nil })
}

func waitFor(t *testing.T, st *store.Store, cond func(*routing.State) bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !cond(st.State()) {
		select {
		case <-st.Changes():
		case <-deadline:
			t.Fatal("the watcher never applied the change")
		}
	}
}

func TestRunRefusesMissingDir(t *testing.T) {
	w := &Watcher{Dir: filepath.Join(t.TempDir(), "nope"), Store: openStore(t)}
	err := w.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Run on a missing dir: %v, want an error naming it", err)
	}
}

func decodeAll(t *testing.T, yaml string) []v1.Object {
	t.Helper()
	objs, err := v1.Decode([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// An object the user applied by hand after the directory did is theirs: the next sync must not
// silently put the file's version back (README: "the service now belongs to you").
func TestSyncLeavesHandAppliedObjectsAlone(t *testing.T) {
	st := openStore(t)
	dir := t.TempDir()
	write(t, dir, "a.yaml", service("a", "example.com/a:v1"))
	if _, err := Sync(context.Background(), st, dir); err != nil {
		t.Fatal(err)
	}
	// By hand, without the directory's annotation: a new image.
	if _, err := st.Apply(context.Background(), decodeAll(t, service("a", "example.com/a:hand")), false); err != nil {
		t.Fatal(err)
	}
	rep, err := Sync(context.Background(), st, dir)
	if err != nil {
		t.Fatal(err)
	}
	if img := st.State().Services[key("a")].Spec.Template.Spec.Containers[0].Image; img != "example.com/a:hand" {
		t.Errorf("a is %s after a sync; the hand-applied example.com/a:hand was overwritten", img)
	}
	if len(rep.Skipped) != 1 || rep.Skipped[0] != (routing.Ref{Kind: "Service", Key: key("a")}) {
		t.Errorf("skipped = %v, want Service default/a", rep.Skipped)
	}
	// Removing the file does not delete what is no longer the directory's.
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	if rep, err := Sync(context.Background(), st, dir); err != nil || len(rep.Pruned) != 0 || st.State().Services[key("a")] == nil {
		t.Errorf("sync after removing a.yaml: pruned %v, err %v; want the hand-applied service kept", rep.Pruned, err)
	}
}

// A file holding a resourceVersion (copied from "sluice get -o yaml") still syncs every time:
// the directory says what the objects are, it is not a read-modify-write.
func TestSyncIgnoresResourceVersions(t *testing.T) {
	st := openStore(t)
	dir := t.TempDir()
	withVersion := func(image string) string {
		return strings.Replace(service("a", image), "  name: a\n", "  name: a\n  resourceVersion: \"0123456789abcdef\"\n", 1)
	}
	for _, image := range []string{"example.com/a:v1", "example.com/a:v2"} {
		write(t, dir, "a.yaml", withVersion(image))
		if !strings.Contains(withVersion(image), "resourceVersion") {
			t.Fatal("the test's file has no resourceVersion")
		}
		if _, err := Sync(context.Background(), st, dir); err != nil {
			t.Fatalf("sync of %s: %v", image, err)
		}
		if got := st.State().Services[key("a")].Spec.Template.Spec.Containers[0].Image; got != image {
			t.Errorf("image %s after the sync, want %s", got, image)
		}
	}
}
