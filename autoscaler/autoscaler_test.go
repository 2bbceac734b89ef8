package autoscaler

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/autoscaler/metrics"
	"github.com/sluice-dev/sluice/autoscaler/scaling"
	"github.com/sluice-dev/sluice/routing"
	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// fakeScaler runs nothing: the test says which instances are ready.
type fakeScaler struct {
	mu      sync.Mutex
	desired map[routing.Key]int
	ready   map[routing.Key][]routing.Endpoint
	changes chan struct{}
}

func newFakeScaler() *fakeScaler {
	return &fakeScaler{desired: map[routing.Key]int{}, ready: map[routing.Key][]routing.Endpoint{}, changes: make(chan struct{}, 1)}
}

func (f *fakeScaler) Check(rev *v1.Revision) error {
	if rev.Annotations["test/image-only"] != "" {
		return errors.New("image revisions need Kubernetes mode")
	}
	return nil
}
func (f *fakeScaler) Scale(rev *v1.Revision, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.desired[routing.KeyOf(rev)] = n
}
func (f *fakeScaler) Forget(k routing.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.desired, k)
}
func (f *fakeScaler) Instances(k routing.Key) Instances {
	f.mu.Lock()
	defer f.mu.Unlock()
	eps := f.ready[k]
	return Instances{Desired: f.desired[k], Actual: len(eps), Ready: len(eps), Endpoints: slices.Clone(eps)}
}
func (f *fakeScaler) Changes() <-chan struct{} { return f.changes }
func (f *fakeScaler) Changed() []routing.Key   { return nil }
func (f *fakeScaler) setReady(k routing.Key, eps ...routing.Endpoint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ready[k] = eps
}
func (f *fakeScaler) want(k routing.Key) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.desired[k]
}

// fakeMetrics reports one concurrency level for every window.
type fakeMetrics struct {
	mu    sync.Mutex
	conc  float64
	ok    bool
	track map[string]bool
	// during, when set, runs in Averages: while a tick is deciding, with none of its locks held.
	during func()
}

func (m *fakeMetrics) Track(c string, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.track == nil {
		m.track = map[string]bool{}
	}
	m.track[c] = true
}
func (m *fakeMetrics) Untrack(c string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.track, c)
}
func (m *fakeMetrics) tracked() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.track))
}
func (m *fakeMetrics) Sample(time.Time) {}
func (m *fakeMetrics) Averages(string, time.Duration, time.Duration, time.Time) metrics.Averages {
	if m.during != nil {
		m.during()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return metrics.Averages{StableConcurrency: m.conc, PanicConcurrency: m.conc, HasData: m.ok}
}
func (m *fakeMetrics) set(c float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.conc, m.ok = c, true
}

// fakeAcks acknowledges when the test lets it.
type fakeAcks struct{ ack chan struct{} }

func (f fakeAcks) WaitAcked(ctx context.Context, _, _, _ string) error {
	select {
	case <-f.ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var activator = routing.Endpoint{Host: "127.0.0.1", Port: 8012}

func revisionFor(name string, ann map[string]string) *v1.Revision {
	return &v1.Revision{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Annotations: ann}}
}

// push does what a control-plane pass does for rev: asks for its instances and tells the
// autoscaler it pushed them.
func push(a *Autoscaler, rev *v1.Revision) {
	in := a.Instances(rev)
	b := routing.Backend{Cluster: clusterOf(routing.KeyOf(rev)), Endpoints: in.Endpoints}
	if in.Scaled {
		b.Scaled = &routing.Scaled{Instances: in.Backends}
	}
	a.Pushed(&routing.Table{Backends: []routing.Backend{b}}, routing.TableDiff{Backends: []string{b.Cluster}})
}

// TestScaleFromAndToZero walks one revision through its life: initial scale, ready, serving,
// idle, the flip to the activator (not counted until acknowledged), then zero.
func TestScaleFromAndToZero(t *testing.T) {
	rev := revisionFor("hello-00001", map[string]string{
		"autoscaling.knative.dev/target-burst-capacity": "0", // activator only at zero
		"autoscaling.knative.dev/window":                "6s",
	})
	key := routing.KeyOf(rev)
	sc, m := newFakeScaler(), &fakeMetrics{}
	acks := fakeAcks{ack: make(chan struct{})}
	now := time.Unix(1000, 0)
	defaults := scaling.Defaults()
	defaults.ScaleToZeroGracePeriod = 10 * time.Second
	a := New(sc, m, acks, Options{Defaults: defaults, Activator: activator, Now: func() time.Time { return now }})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); a.waits.Wait() }()
	a.ctx = ctx

	in := a.Instances(rev)
	if in.Ready || in.Reason != ReasonDeploying || !in.Scaled || !slices.Equal(in.Endpoints, []routing.Endpoint{activator}) {
		t.Fatalf("new revision: %+v", in)
	}
	a.Upsert(rev, false)
	a.Tick()
	if got := sc.want(key); got != 1 {
		t.Fatalf("initial scale: scaler asked for %d, want 1", got)
	}

	inst := routing.Endpoint{Host: "127.0.0.1", Port: 9001}
	sc.setReady(key, inst)
	m.set(3)
	now = now.Add(2 * time.Second)
	a.Tick()
	in = a.Instances(rev)
	if !in.Ready || !slices.Equal(in.Endpoints, []routing.Endpoint{inst}) || !slices.Equal(in.Backends, []routing.Endpoint{inst}) {
		t.Fatalf("ready and serving: %+v", in)
	}
	push(a, rev)

	// Idle: no load for a stable window and more.
	m.set(0)
	for range 5 {
		now = now.Add(2 * time.Second)
		a.Tick()
	}
	in = a.Instances(rev)
	if !slices.Equal(in.Endpoints, []routing.Endpoint{activator}) || !slices.Equal(in.Backends, []routing.Endpoint{inst}) {
		t.Fatalf("idle: want the data path on the activator and the instance still known to it: %+v", in)
	}
	if got := sc.want(key); got != 1 {
		t.Fatalf("scaled to %d before the flip to the activator was acknowledged", got)
	}
	// The flip is pushed but not acknowledged: the instance stays, whatever the time.
	push(a, rev)
	now = now.Add(time.Minute)
	a.Tick()
	if got := sc.want(key); got != 1 {
		t.Fatalf("scaled to %d with the flip unacknowledged", got)
	}
	close(acks.ack)
	waitFor(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return !a.revs[key].activatorSince.IsZero()
	})
	// Acknowledged now, and idle for longer than the grace period: zero.
	a.Tick()
	if got := sc.want(key); got != 0 {
		t.Fatalf("after the grace period: scaler asked for %d, want 0", got)
	}
	if s, ok := a.Status(key); !ok || s.Desired != 0 || s.Mode != "proxy" || s.Reason == "" {
		t.Errorf("status at zero: %+v", s)
	}

	// A request at the activator: load again, back to one instance.
	sc.setReady(key)
	m.set(1)
	now = now.Add(time.Second)
	a.Tick()
	if got := sc.want(key); got != 1 {
		t.Fatalf("from zero: scaler asked for %d, want 1", got)
	}
	if in := a.Instances(rev); !in.Ready {
		t.Errorf("a revision at zero must stay Ready (it is activated on demand): %+v", in)
	}
}

func TestNotRunnable(t *testing.T) {
	sc, m := newFakeScaler(), &fakeMetrics{}
	a := New(sc, m, fakeAcks{}, Options{Defaults: scaling.Defaults(), Activator: activator})
	if in := a.Instances(revisionFor("img-00001", map[string]string{"test/image-only": "y"})); in.Ready || in.Reason != ReasonCannotRun || in.Message == "" {
		t.Errorf("image-only: %+v", in)
	}
	if in := a.Instances(revisionFor("bad-00001", map[string]string{"autoscaling.knative.dev/min-scale": "-1"})); in.Ready ||
		in.Reason != ReasonInvalidAutoscaling {
		t.Errorf("bad annotation: %+v", in)
	}
	static := revisionFor("st-00001", map[string]string{v1.AnnotationEndpoints: "10.0.0.1:80"})
	if in := a.Instances(static); !in.Ready || in.Scaled {
		t.Errorf("static endpoints are not scaled: %+v", in)
	}
}

func TestRemovedRevisionIsForgotten(t *testing.T) {
	rev := revisionFor("gone-00001", nil)
	sc, m := newFakeScaler(), &fakeMetrics{}
	a := New(sc, m, fakeAcks{}, Options{Defaults: scaling.Defaults(), Activator: activator})
	a.Upsert(rev, true)
	sc.Scale(rev, 1)
	a.Delete(routing.KeyOf(rev))
	if _, ok := a.Status(routing.KeyOf(rev)); ok {
		t.Error("a revision gone from the state is still scaled")
	}
	if got := sc.want(routing.KeyOf(rev)); got != 0 {
		t.Errorf("scaler still wants %d instances of a deleted revision", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestClustersFollowScaledRevisions(t *testing.T) {
	rev := revisionFor("hello-00001", nil)
	a := New(newFakeScaler(), &fakeMetrics{}, fakeAcks{}, Options{Defaults: scaling.Defaults(), Activator: activator})
	names, changed := a.Clusters()
	if len(names) != 0 {
		t.Fatalf("clusters before any revision = %v", names)
	}
	a.Upsert(rev, true)
	a.Upsert(revisionFor("static-00001", map[string]string{v1.AnnotationEndpoints: "10.0.0.1:80"}), true)
	select {
	case <-changed:
	default:
		t.Fatal("adding a scaled revision did not signal")
	}
	if names, _ = a.Clusters(); !slices.Equal(names, []string{"default/hello-00001"}) {
		t.Fatalf("clusters = %v, want the scaled revision's only", names)
	}
	_, changed = a.Clusters()
	a.Retain(func(routing.Key) bool { return false }) // a full pass that found it gone
	select {
	case <-changed:
	default:
		t.Fatal("removing a revision did not signal")
	}
	if names, _ = a.Clusters(); len(names) != 0 {
		t.Fatalf("clusters after removal = %v", names)
	}
}

// Asking for a revision's instances is a query: it records nothing, tracks nothing and wakes
// nothing. Only the loop's Upsert makes the autoscaler scale a revision.
func TestInstancesHasNoSideEffects(t *testing.T) {
	sc, m := newFakeScaler(), &fakeMetrics{}
	a := New(sc, m, fakeAcks{}, Options{Defaults: scaling.Defaults(), Activator: activator})
	rev := revisionFor("hello-00001", nil)
	_, changed := a.Clusters()
	for range 3 {
		if in := a.Instances(rev); in.Ready || !in.Scaled || in.Reason != ReasonDeploying {
			t.Fatalf("a revision not upserted yet: %+v, want the answer of a new one", in)
		}
	}
	a.Tick()
	if _, ok := a.Status(routing.KeyOf(rev)); ok || sc.want(routing.KeyOf(rev)) != 0 || len(m.tracked()) != 0 {
		t.Fatalf("Instances created a record: status %v, scaler wants %d, tracked %v", ok, sc.want(routing.KeyOf(rev)), m.tracked())
	}
	select {
	case <-changed:
		t.Fatal("Instances changed the clusters the LRS server asks for")
	case <-a.wake:
		t.Fatal("Instances poked the autoscaler")
	default:
	}
	a.Upsert(rev, true)
	a.Tick()
	if sc.want(routing.KeyOf(rev)) != 1 || len(m.tracked()) != 1 {
		t.Fatalf("after Upsert: scaler wants %d, tracked %v; want its initial scale and its load tracked", sc.want(routing.KeyOf(rev)), m.tracked())
	}
}

// A deleted revision's instances stop only once the pass that removes its load assignment was
// pushed: deleting the record must not make WaitRemoved think the removal is out already.
func TestDeletedRevisionsInstancesWaitForTheRemovalPush(t *testing.T) {
	rev := revisionFor("gone-00001", nil)
	key := routing.KeyOf(rev)
	sc := newFakeScaler()
	acks := fakeAcks{ack: make(chan struct{})}
	close(acks.ack) // every client acknowledges at once
	a := New(sc, &fakeMetrics{}, acks, Options{Defaults: scaling.Defaults(), Activator: activator})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.ctx = ctx
	a.Upsert(rev, true)
	inst := routing.Endpoint{Host: "127.0.0.1", Port: 9001}
	sc.setReady(key, inst)
	a.Upsert(rev, true)
	a.Instances(rev)
	push(a, rev) // clients now hold the instance
	a.mu.Lock()
	a.revs[key].mode = scaling.ModeServe
	a.mu.Unlock()
	push(a, rev)

	a.Delete(key) // the loop's next pass: the revision is gone, its instance is stopped...
	removed := make(chan error, 1)
	go func() { removed <- a.WaitRemoved(ctx, key, inst) }() // ...by a stop hook that waits first
	select {
	case err := <-removed:
		t.Fatalf("WaitRemoved returned (%v) before the pass that removes the revision's load assignment pushed", err)
	case <-time.After(50 * time.Millisecond):
	}
	// The same pass pushes the table without the revision's backend.
	a.Pushed(&routing.Table{}, routing.TableDiff{Backends: []string{clusterOf(key)}})
	if err := <-removed; err != nil {
		t.Fatalf("WaitRemoved after the removal was pushed: %v", err)
	}
}

// A tick that decided on a revision while the loop deleted it does not scale it up again after
// it was forgotten: nothing would ever stop those instances.
func TestTickDoesNotScaleARevisionDeletedMeanwhile(t *testing.T) {
	rev := revisionFor("gone-00001", nil)
	key := routing.KeyOf(rev)
	sc, m := newFakeScaler(), &fakeMetrics{}
	a := New(sc, m, fakeAcks{}, Options{Defaults: scaling.Defaults(), Activator: activator})
	a.Upsert(rev, true)
	m.during = func() { a.Delete(key) } // the loop deletes it while the tick reads its load
	a.Tick()
	if got := sc.want(key); got != 0 {
		t.Fatalf("scaler wants %d instances of a revision deleted during the tick, want 0 (forgotten)", got)
	}
}
