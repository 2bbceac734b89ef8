package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/api/apiserver"
	"github.com/sluice-dev/sluice/envoy"
	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/routing/store"
	v1 "github.com/sluice-dev/sluice/routing/v1"
	"github.com/sluice-dev/sluice/xds"
)

func service(name, rev, endpoint, traffic string) string {
	return fmt.Sprintf(`apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: %s
spec:
  template:
    metadata:
      name: %s
      annotations:
        sluice.dev/endpoints: %q
    spec:
      containers:
      - image: hello
%s`, name, rev, endpoint, traffic)
}

// versions is every resource the server holds, by type and name.
func versions(s *xds.Server) map[string]map[string]string {
	out := map[string]map[string]string{}
	for i, c := range s.Debug("").Caches {
		out[fmt.Sprintf("%d %s", i, c.TypeURL)] = c.Resources
	}
	return out
}

func newServer(t *testing.T) *xds.Server {
	t.Helper()
	srv, err := xds.NewServer(t.Context(), xds.Options{VersionPrefix: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// The loop works from the store's journal and passes diffs down the pipeline. After every step
// its caches must hold exactly what a full pass over the same state gives on a fresh server.
func TestIncrementalSyncEqualsFullSync(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := newServer(t)
	// A gRPC-kind client's LDS subscriptions decide which hosts get API listeners and per-host
	// route configurations; the steps below change them alongside the stored state.
	lds := ldsDelta(t, serveXDS(t, srv))
	wants := func(sub, unsub []string, want ...string) func() error {
		return func() error {
			lds(sub, unsub)
			waitWanted(t, srv, want...)
			return nil
		}
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := routing.Config{Domain: "example.com"}
	revs := &recordedRevisions{}
	loop := New(st, Static{}, envoy.NewTranslator(envoy.Options{}), srv, Options{Routing: cfg, Revisions: revs, Now: func() time.Time { return now }})

	steps := []struct {
		name string
		do   func() error
	}{
		{"a v1", applyYAML(st, service("a", "a-v1", "127.0.0.1:9001", ""))},
		{"grpc wants a, and b before it exists", wants([]string{"a.default.example.com", "b.default.example.com"}, nil,
			"a.default.example.com", "b.default.example.com")},
		{"b v1", applyYAML(st, service("b", "b-v1", "127.0.0.1:9101", ""))},
		{"grpc wants a's tag host to be", wants([]string{"blue-a.default.example.com"}, nil,
			"a.default.example.com", "b.default.example.com", "blue-a.default.example.com")},
		{"a v2 80/20 tagged", applyYAML(st, service("a", "a-v2", "127.0.0.1:9002",
			"  traffic:\n  - {revisionName: a-v1, percent: 80, tag: blue}\n  - {revisionName: a-v2, percent: 20, tag: green}\n"))},
		{"a cut over", applyYAML(st, service("a", "a-v2", "127.0.0.1:9002",
			"  traffic:\n  - {revisionName: a-v1, percent: 0, tag: blue}\n  - {revisionName: a-v2, percent: 100, tag: green}\n"))},
		{"b cluster-local", applyYAML(st, `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: b
  labels: {networking.knative.dev/visibility: cluster-local}
spec:
  template:
    metadata:
      name: b-v1
      annotations: {sluice.dev/endpoints: "127.0.0.1:9101"}
    spec:
      containers: [{image: hello}]
`)},
		{"grpc wants b cluster-local, not b external", wants([]string{"b.default.svc.cluster.local"}, []string{"b.default.example.com"},
			"a.default.example.com", "b.default.svc.cluster.local", "blue-a.default.example.com")},
		{"a untagged", applyYAML(st, service("a", "a-v2", "127.0.0.1:9002", ""))},
		{"grpc lets go of a", wants(nil, []string{"a.default.example.com"},
			"b.default.svc.cluster.local", "blue-a.default.example.com")},
		{"delete b", func() error {
			_, err := st.Delete(context.Background(), routing.Ref{Kind: v1.KindService, Key: routing.Key{Namespace: "default", Name: "b"}})
			return err
		}},
	}
	for _, step := range steps {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		now = now.Add(time.Second)
		if err := loop.Sync(context.Background()); err != nil {
			t.Fatalf("%s: sync: %v", step.name, err)
		}

		// The reference: a full pass over the same state with fresh parts, wanting the same hosts.
		ref := fullPass(t, srv, routing.BuildTable(st.State(), routing.StaticEndpoints{}, cfg))
		got, want := versions(srv), versions(ref)
		if !maps.EqualFunc(got, want, maps.Equal) {
			t.Fatalf("%s: incremental caches differ from a full pass\n got %v\nwant %v", step.name, got, want)
		}
		// What the loop told Revisions, pass by pass, is what a full pass tells: every revision,
		// reachable when a route serves or tags it.
		if got, want := revs.snapshot(), allRevisions(st.State()); !maps.Equal(got, want) {
			t.Fatalf("%s: revisions told incrementally differ from a full pass\n got %v\nwant %v", step.name, got, want)
		}
		// The statuses the loop wrote are the fixed point: nothing is left to reconcile.
		if left := routing.Reconcile(st.State(), routing.StaticEndpoints{}, cfg, now); len(left) != 0 {
			t.Fatalf("%s: %d statuses left to write after the pass", step.name, len(left))
		}
	}
}

func applyYAML(st *store.Store, y string) func() error {
	return func() error {
		objs, err := v1.Decode([]byte(y), "test.yaml")
		if err != nil {
			return err
		}
		_, err = st.Apply(context.Background(), objs, false)
		return err
	}
}

// Run owns its goroutine: it returns when its context ends.
func TestRunStopsWithContext(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	loop := New(st, Static{}, envoy.NewTranslator(envoy.Options{}), newServer(t), Options{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- loop.Run(ctx) }()
	if err := applyYAML(st, service("a", "a-v1", "127.0.0.1:9001", ""))(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v after cancel; want nil", err)
	}
}

// dynamic is an Endpoints source whose instances change by themselves, like issue 3's local
// processes: tests set a revision's instances and the loop hears of it through Changed.
type dynamic struct {
	instances map[string]routing.Instances // by revision name
	changed   []routing.Key
}

func (d *dynamic) Instances(rev *v1.Revision) routing.Instances {
	if in, ok := d.instances[rev.Name]; ok {
		return in
	}
	return routing.Instances{Reason: "Starting", Message: "no instance is up yet"}
}
func (d *dynamic) Changes() <-chan struct{} { return nil }
func (d *dynamic) Changed() []routing.Key {
	c := d.changed
	d.changed = nil
	return c
}
func (d *dynamic) set(rev string, in routing.Instances) {
	d.instances[rev] = in
	d.changed = append(d.changed, routing.Key{Namespace: "default", Name: rev})
}

// A revision that becomes ready with no change to any stored object: only the source says so.
// Its route's served traffic moves in status, and that must reach the table and xDS.
func TestSyncFollowsInstanceReadiness(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	src := &dynamic{instances: map[string]routing.Instances{}}
	srv := newServer(t)
	cfg := routing.Config{Domain: "example.com"}
	loop := New(st, src, envoy.NewTranslator(envoy.Options{}), srv, Options{Routing: cfg})
	check := func(step string) {
		t.Helper()
		if err := loop.Sync(context.Background()); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		ref := fullPass(t, srv, routing.BuildTable(st.State(), src, cfg))
		if got, want := versions(srv), versions(ref); !maps.EqualFunc(got, want, maps.Equal) {
			t.Fatalf("%s: incremental caches differ from a full pass\n got %v\nwant %v", step, got, want)
		}
	}
	ready := func(port int) routing.Instances {
		return routing.Instances{Ready: true, Endpoints: []routing.Endpoint{{Host: "127.0.0.1", Port: uint32(port)}}}
	}
	src.set("a-v1", ready(9001))
	if err := applyYAML(st, service("a", "a-v1", "127.0.0.1:9001", ""))(); err != nil {
		t.Fatal(err)
	}
	check("v1 ready")
	// v2 is created but not ready: the route keeps serving v1.
	if err := applyYAML(st, service("a", "a-v2", "127.0.0.1:9002", ""))(); err != nil {
		t.Fatal(err)
	}
	check("v2 created, not ready")
	if got := st.State().Routes[routing.Key{Namespace: "default", Name: "a"}].Status.Traffic; len(got) != 1 || got[0].RevisionName != "a-v1" {
		t.Fatalf("served traffic while v2 is not ready = %+v; want a-v1", got)
	}
	// v2 becomes ready: nothing stored changed, yet @latest moves to it.
	src.set("a-v2", ready(9002))
	check("v2 ready")
	if got := st.State().Routes[routing.Key{Namespace: "default", Name: "a"}].Status.Traffic; len(got) != 1 || got[0].RevisionName != "a-v2" {
		t.Fatalf("served traffic once v2 is ready = %+v; want a-v2", got)
	}
	// v2 scales: a new endpoint, readiness unchanged.
	src.set("a-v2", routing.Instances{Ready: true, Endpoints: []routing.Endpoint{{Host: "127.0.0.1", Port: 9002}, {Host: "127.0.0.1", Port: 9003}}})
	check("v2 scaled")
}

// countingHandler counts log records with a given message.
type countingHandler struct {
	msg string
	n   chan struct{}
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.n <- struct{}{}:
		default:
		}
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// A failed pass is retried by itself: with static endpoints no later change may ever come.
func TestRunRetriesAFailedPass(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := applyYAML(st, service("a", "a-v1", "127.0.0.1:9001", ""))(); err != nil {
		t.Fatal(err)
	}
	// A closed store fails every status write, so every pass fails.
	st.Close()
	failures := make(chan struct{}, 1)
	log := slog.New(countingHandler{msg: "sync failed; retrying", n: failures})
	loop := New(st, Static{}, envoy.NewTranslator(envoy.Options{}), newServer(t), Options{Logger: log})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- loop.Run(ctx) }()
	for i := range 3 { // the first pass, then two retries with nothing changed
		select {
		case <-failures:
		case <-time.After(time.Minute):
			t.Fatalf("pass %d: no retry within a minute of a failure", i+1)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// recordedRevisions is a Revisions that keeps what it was told.
type recordedRevisions struct {
	mu     sync.Mutex
	revs   map[routing.Key]bool // reachable
	pushes int
}

func (r *recordedRevisions) Upsert(rev *v1.Revision, reachable bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.revs == nil {
		r.revs = map[routing.Key]bool{}
	}
	r.revs[routing.KeyOf(rev)] = reachable
}

func (r *recordedRevisions) Delete(k routing.Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.revs, k)
}

func (r *recordedRevisions) Retain(keep func(routing.Key) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	maps.DeleteFunc(r.revs, func(k routing.Key, _ bool) bool { return !keep(k) })
}

func (r *recordedRevisions) Pushed(*routing.Table, routing.TableDiff) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pushes++
}

func (r *recordedRevisions) snapshot() map[routing.Key]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.revs)
}

// allRevisions is what a full pass tells Revisions about st.
func allRevisions(st *routing.State) map[routing.Key]bool {
	out := map[routing.Key]bool{}
	for k := range st.Routes {
		for _, rk := range st.ServedRevisions(k) {
			if st.Revisions[rk] != nil {
				out[rk] = true
			}
		}
	}
	for k := range st.Revisions {
		if !out[k] {
			out[k] = false
		}
	}
	return out
}

type causeKey struct{}

// A pass runs under the context of the write that caused it: an API call's values (a trace,
// later) reach the push and the status write, and every cause is listed. A pass nobody wrote for
// carries none. The API's handler hands its request's context to the store.
func TestPassRunsUnderTheChangesCause(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	type pass struct {
		cause  any
		causes int
	}
	var passes []pass
	pushes := &pushLog{}
	srv, err := xds.NewServer(t.Context(), xds.Options{VersionPrefix: "test", Logger: slog.New(pushes)})
	if err != nil {
		t.Fatal(err)
	}
	loop := New(st, Static{}, envoy.NewTranslator(envoy.Options{}), srv, Options{
		Routing: routing.Config{Domain: "example.com"},
		Synced: func(ctx context.Context, _ SyncStats) {
			passes = append(passes, pass{ctx.Value(causeKey{}), len(Causes(ctx))})
		},
	})
	api := apiserver.New(st, apiserver.Options{})
	for i, name := range []string{"a", "b"} {
		body := strings.NewReader(service(name, name+"-v1", "127.0.0.1:9001", ""))
		req := httptest.NewRequestWithContext(context.WithValue(t.Context(), causeKey{}, i), "POST", "http://127.0.0.1/api/v1/apply", body)
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("apply %s: %d %s", name, rec.Code, rec.Body)
		}
	}
	loopCtx, stop := context.WithCancel(t.Context())
	if err := loop.Sync(loopCtx); err != nil {
		t.Fatal(err)
	}
	if err := loop.Sync(loopCtx); err != nil {
		t.Fatal(err)
	}
	want := []pass{{cause: 0, causes: 2}, {cause: nil, causes: 0}}
	if !slices.Equal(passes, want) {
		t.Fatalf("passes saw causes %+v, want %+v", passes, want)
	}
	// The push of the first pass happened in the API call's context.
	if got := pushes.causes(); !slices.Equal(got, []any{0}) {
		t.Fatalf("xDS pushes logged in contexts carrying %v, want the first API call's [0]", got)
	}
	// The loop's own cancellation still stops a pass that runs under a cause.
	ctx, cancel := passContext(loopCtx, []context.Context{context.WithValue(context.Background(), causeKey{}, 1)})
	defer cancel()
	stop()
	<-ctx.Done()
}

// pushLog is a slog.Handler that keeps the cause carried by the context of each "xDS pushed" record.
type pushLog struct {
	mu  sync.Mutex
	got []any
}

func (p *pushLog) Enabled(context.Context, slog.Level) bool { return true }
func (p *pushLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "xDS pushed" {
		p.mu.Lock()
		p.got = append(p.got, ctx.Value(causeKey{}))
		p.mu.Unlock()
	}
	return nil
}
func (p *pushLog) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *pushLog) WithGroup(string) slog.Handler      { return p }
func (p *pushLog) causes() []any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}
