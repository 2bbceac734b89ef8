// Package autoscaler runs Knative's KPA for the revisions sluice scales. Every tick it asks the
// pure decision functions of autoscaler/scaling what each revision needs, given the load the
// data plane and the activators reported (autoscaler/metrics), and carries the answer out:
// instances through a Scaler (local processes standalone, Deployments on Kubernetes), and the
// data path through the load assignments it answers the control-plane loop with (it is the
// loop's endpoint source for scaled revisions).
//
// The data path moves in one direction before the instances do. Going to zero, the revision's
// gateway load assignment is flipped to the activator, and only once every connected client has
// acknowledged that push does the autoscaler let Bound scale to zero. An instance that stops is
// first left out of the assignments and the push acknowledged (Scaler's stop hook,
// WaitRemoved), so no request is sent to an instance that is going away.
package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/sluice-dev/sluice/autoscaler/metrics"
	"github.com/sluice-dev/sluice/autoscaler/scaling"
	"github.com/sluice-dev/sluice/routing"
	v1 "github.com/sluice-dev/sluice/routing/v1"
	"github.com/sluice-dev/sluice/routing/v1/autoscaling"
	"github.com/sluice-dev/sluice/xds"
)

// Scaler runs revisions' instances.
type Scaler interface {
	// Check says whether rev can run at all; its error becomes the revision's not-Ready reason.
	Check(rev *v1.Revision) error
	// Scale sets how many instances rev should have.
	Scale(rev *v1.Revision, n int)
	// Forget stops every instance of a revision that is gone.
	Forget(key routing.Key)
	// Instances are a revision's instances now.
	Instances(key routing.Key) Instances
	// Changes is signalled (coalescing) when some revision's Instances changed; Changed names them.
	Changes() <-chan struct{}
	Changed() []routing.Key
}

// Instances are a Scaler's view of one revision.
type Instances struct {
	Desired, Actual, Ready int
	// Endpoints are the ready instances, sorted.
	Endpoints []routing.Endpoint
	// Failure says why instances do not become ready (an exit code, a failing probe); "" if none.
	Failure string
	// Restarts counts the restarts of the current instances after they crashed; LastCrash says
	// how the latest such crash ended ("instance NAME exit status 1: ..."), "" if none.
	Restarts  int
	LastCrash string
}

// Metrics are the load the autoscaler decides on: metrics.Collector, fed by the LRS server.
// Revisions are named by their cluster ("namespace/revision").
type Metrics interface {
	// Track starts keeping a revision's load over window; Untrack stops.
	Track(cluster string, window time.Duration)
	Untrack(cluster string)
	// Sample records every tracked revision's current load; the autoscaler calls it every second
	// and before a poked decision.
	Sample(now time.Time)
	// Averages are the revision's load averaged over the stable and the panic window ending at now.
	Averages(cluster string, stable, panic time.Duration, now time.Time) metrics.Averages
}

// Acks tell when the data plane applied a change: xds.Server.
type Acks interface {
	WaitAcked(ctx context.Context, typeURL, name, version string) error
}

// Options configure an Autoscaler.
type Options struct {
	// Defaults are the global autoscaling configuration revisions' annotations refine.
	Defaults scaling.Config
	// Activator is where gateways send a revision's requests while the activator is in its path.
	Activator routing.Endpoint
	// TickInterval is how often every revision is decided on; default 2s (Knative's).
	TickInterval time.Duration
	Logger       *slog.Logger
	Now          func() time.Time
}

// Status is what `sluice get revisions` shows of a revision's scale.
type Status struct {
	Desired, Actual, Ready int32
	Mode                   string // "serve" or "proxy"
	Reason                 string
	Restarts               int32  // Instances.Restarts
	LastCrash              string // Instances.LastCrash
}

// Autoscaler owns the scale of every revision that has a Scaler-runnable template.
type Autoscaler struct {
	opts    Options
	scaler  Scaler
	metrics Metrics
	acks    Acks
	log     *slog.Logger

	wake    chan struct{} // a tick is wanted now (a poke, a new revision, an acknowledged flip)
	changes chan struct{} // to the control-plane loop: Changed has something

	// scaleMu orders Tick's Scale calls with Delete's Forget, so a revision deleted while a tick
	// decided on it is never scaled up again after it was forgotten. It is taken before mu, never
	// while mu is held, and held only across Scaler calls that do not block.
	scaleMu sync.Mutex
	mu      sync.Mutex
	revs    map[routing.Key]*revision
	changed map[routing.Key]bool
	// pushed are the load assignments of scaled revisions that the last passes pushed: what
	// connected clients have been sent (or are being sent). The loop says so with Pushed.
	pushed          map[routing.Key]pushedBackend
	synced          chan struct{} // closed (and replaced) after every pass that pushed
	clustersChanged chan struct{} // closed (and replaced) when a revision is added or removed
	waits           sync.WaitGroup
	ctx             context.Context // Run's; nil before Run
}

// revision is the autoscaler's record of one scaled revision.
type revision struct {
	rev    *v1.Revision
	cfg    scaling.Config
	cfgErr error
	dec    scaling.State
	bound  scaling.BoundState
	// mode is what Instances answers: the activator or the instances.
	mode scaling.Mode
	// flip counts mode changes, so an acknowledgement of an older flip is ignored.
	flip uint64
	// activatorSince is when clients acknowledged the flip to the activator; zero otherwise.
	activatorSince time.Time
	// waiting is the flip (plus one) whose acknowledgement a goroutine waits for; 0 for none.
	waiting   uint64
	everReady bool
	// reachable says some route serves the revision or names it with a tag (the loop's Upsert).
	reachable bool
	last      scaling.Action
	desired   int32
	decided   bool
}

// New returns an Autoscaler; Run drives it. The control-plane loop tells it which revisions exist
// (Upsert, Delete, Retain) and what it pushed (Pushed).
func New(scaler Scaler, metrics Metrics, acks Acks, opts Options) *Autoscaler {
	if opts.TickInterval <= 0 {
		opts.TickInterval = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Autoscaler{
		opts: opts, scaler: scaler, metrics: metrics, acks: acks, log: opts.Logger,
		wake:    make(chan struct{}, 1),
		changes: make(chan struct{}, 1),
		revs:    map[routing.Key]*revision{},
		changed: map[routing.Key]bool{},
		pushed:  map[routing.Key]pushedBackend{},
		synced:  make(chan struct{}),

		clustersChanged: make(chan struct{}),
	}
}

// Run ticks until ctx is done, then waits for the goroutines it started.
func (a *Autoscaler) Run(ctx context.Context) {
	a.mu.Lock()
	a.ctx = ctx
	a.mu.Unlock()
	defer a.waits.Wait()
	t := time.NewTicker(a.opts.TickInterval)
	defer t.Stop()
	sample := time.NewTicker(metrics.BucketSize)
	defer sample.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.scaler.Changes():
			// The scaler's news is the loop's too (the revision's instances changed).
			a.signal()
			continue
		case <-sample.C:
			a.metrics.Sample(a.opts.Now())
			continue
		case <-t.C:
		case <-a.wake:
			// A poke: the load that caused it must be in the windows before deciding.
			a.metrics.Sample(a.opts.Now())
		}
		a.Tick()
	}
}

// Poke asks for a decision now rather than at the next tick when the revision (named by its
// cluster, "namespace/revision") is at zero: the activator holds a request for it.
func (a *Autoscaler) Poke(cluster string) {
	ns, name, ok := strings.Cut(cluster, "/")
	if !ok {
		return
	}
	a.mu.Lock()
	r := a.revs[routing.Key{Namespace: ns, Name: name}]
	atZero := r != nil && r.desired == 0
	a.mu.Unlock()
	if atZero {
		a.poke()
	}
}

func (a *Autoscaler) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *Autoscaler) signal() {
	select {
	case a.changes <- struct{}{}:
	default:
	}
}

// Tick decides every scaled revision once. It never holds its lock while calling the Scaler,
// whose stop hook (WaitRemoved) takes that lock.
func (a *Autoscaler) Tick() {
	a.mu.Lock()
	keys := make([]routing.Key, 0, len(a.revs))
	for k := range a.revs {
		keys = append(keys, k)
	}
	a.mu.Unlock()
	now := a.opts.Now()
	for _, key := range keys {
		inst := a.scaler.Instances(key)
		a.mu.Lock()
		r := a.revs[key]
		if r == nil || r.cfgErr != nil {
			a.mu.Unlock()
			continue
		}
		rev, cfg, reachable := r.rev, r.cfg, r.reachable
		a.mu.Unlock()

		in := scaling.Input{Ready: int32(inst.Ready), Reachable: reachable}
		avg := a.metrics.Averages(clusterOf(key), cfg.StableWindow, panicWindow(cfg), now)
		in.StableAverage, in.PanicAverage, in.HasData = avg.StableConcurrency, avg.PanicConcurrency, avg.HasData
		if cfg.Metric == autoscaling.MetricRPS {
			in.StableAverage, in.PanicAverage = avg.StableRPS, avg.PanicRPS
		}

		a.mu.Lock()
		if inst.Ready > 0 {
			r.everReady = true
		}
		if !r.decided {
			r.dec = scaling.StartState(int32(inst.Ready), now)
			r.decided = true
		}
		var d scaling.Decision
		d, r.dec = scaling.Decide(cfg, in, r.dec, now)
		var act scaling.Action
		act, r.bound = scaling.Bound(cfg, d, scaling.Observed{Ready: int32(inst.Ready), ActivatorSince: r.activatorSince}, r.bound, now)
		if act.Mode != r.mode {
			a.setModeLocked(key, r, act.Mode)
		}
		if r.mode == scaling.ModeProxy && r.activatorSince.IsZero() && r.waiting != r.flip+1 {
			a.awaitActivatorLocked(key, r)
		}
		if act.Scale >= 0 {
			r.desired = act.Scale
		}
		if act.Reason != r.last.Reason || act.Scale != r.last.Scale {
			a.log.Debug("scale decision", "revision", key, "desired", act.Scale, "ready", inst.Ready,
				"mode", act.Mode, "reason", act.Reason)
		}
		r.last = act
		a.mu.Unlock()
		if act.Scale >= 0 {
			a.scaleMu.Lock()
			a.mu.Lock()
			current := a.revs[key] == r // not deleted (nor recreated) while this tick decided
			a.mu.Unlock()
			if current {
				a.scaler.Scale(rev, int(act.Scale))
			}
			a.scaleMu.Unlock()
		}
	}
}

// setModeLocked points the revision's data path at the activator or at its instances.
func (a *Autoscaler) setModeLocked(key routing.Key, r *revision, m scaling.Mode) {
	r.mode = m
	r.flip++
	r.activatorSince = time.Time{}
	a.changed[key] = true
	a.signal()
}

// awaitActivatorLocked starts a goroutine that sets activatorSince once clients acknowledged a
// push that sends the revision's requests to the activator: only then may it scale to zero.
func (a *Autoscaler) awaitActivatorLocked(key routing.Key, r *revision) {
	if a.ctx == nil {
		return
	}
	flip, ctx := r.flip, a.ctx
	r.waiting = flip + 1
	a.waits.Add(1)
	go func() {
		defer a.waits.Done()
		err := a.waitPushed(ctx, key, func(in pushedBackend) bool {
			return len(in.Endpoints) == 1 && in.Endpoints[0] == a.opts.Activator
		})
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("activator flip not acknowledged", "revision", key, "err", err)
			}
			return
		}
		a.mu.Lock()
		if r := a.revs[key]; r != nil && r.flip == flip {
			r.activatorSince = a.opts.Now()
		}
		a.mu.Unlock()
		a.poke()
	}()
}

// WaitRemoved returns once no load assignment pushed to clients lists addr for the revision, and
// every connected client acknowledged that: the Scaler's hook before it stops an instance.
func (a *Autoscaler) WaitRemoved(ctx context.Context, key routing.Key, addr routing.Endpoint) error {
	start := time.Now()
	err := a.waitPushed(ctx, key, func(in pushedBackend) bool {
		return !slices.Contains(in.Endpoints, addr) && !slices.Contains(in.Instances, addr)
	})
	a.log.Debug("instance removal acknowledged", "revision", key, "addr", addr, "took", time.Since(start), "err", err)
	return err
}

// waitPushed waits until the answer last pushed for key satisfies ok, then until every client
// subscribed to the revision's load assignments acknowledged what it holds now.
func (a *Autoscaler) waitPushed(ctx context.Context, key routing.Key, ok func(pushedBackend) bool) error {
	for {
		a.mu.Lock()
		in, found := a.pushed[key]
		done := !found || ok(in)
		next, running := a.synced, a.ctx
		a.mu.Unlock()
		if done {
			break
		}
		// Once the autoscaler stopped (serve is shutting down) no pass will push again.
		var stopped <-chan struct{}
		if running != nil {
			stopped = running.Done()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stopped:
			return ErrStopping
		case <-next:
		}
	}
	err := a.acks.WaitAcked(ctx, resource.EndpointType, clusterOf(key), "current")
	if errors.Is(err, xds.ErrNotFound) {
		return nil // gone from the caches: nobody can be sent to it
	}
	return err
}

// pushedBackend is what clients were sent for a scaled revision: where its requests go
// (Endpoints: the instances, or the activator) and where the activator forwards (Instances).
type pushedBackend struct {
	Endpoints, Instances []routing.Endpoint
}

// Pushed is called by the control-plane loop after every pass that pushed, with the table it
// pushed and what of it changed: the load assignments of the scaled revisions diff names are now
// what clients are being sent. Waits for acknowledgements (WaitRemoved, the flip to the
// activator) start from here.
func (a *Autoscaler) Pushed(tab *routing.Table, diff routing.TableDiff) {
	a.mu.Lock()
	defer a.mu.Unlock()
	record := func(k routing.Key) {
		b, ok := tab.Backend(clusterOf(k))
		if !ok || b.Scaled == nil {
			delete(a.pushed, k)
			return
		}
		a.pushed[k] = pushedBackend{Endpoints: b.Endpoints, Instances: b.Scaled.Instances}
	}
	if diff.Full {
		clear(a.pushed)
		for k := range a.revs {
			record(k)
		}
	} else {
		for _, c := range diff.Backends {
			ns, name, _ := strings.Cut(c, "/")
			k := routing.Key{Namespace: ns, Name: name}
			if _, ok := a.revs[k]; ok {
				record(k)
			} else {
				delete(a.pushed, k)
			}
		}
	}
	close(a.synced)
	a.synced = make(chan struct{})
}

// Changes is signalled when some revision's load assignment changed (its instances or its mode).
func (a *Autoscaler) Changes() <-chan struct{} { return a.changes }

// Changed names the revisions whose Instances changed since the last call.
func (a *Autoscaler) Changed() []routing.Key {
	keys := a.scaler.Changed()
	// A revision is Ready from its first ready instance on, even if that instance crashes
	// before the next tick: note it here, where the loop learns of the change, so that
	// Instances only reads.
	var ready []routing.Key
	for _, k := range keys {
		if a.scaler.Instances(k).Ready > 0 {
			ready = append(ready, k)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range ready {
		if r := a.revs[k]; r != nil {
			r.everReady = true
		}
	}
	for k := range a.changed {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	clear(a.changed)
	return keys
}

// ErrStopping is WaitRemoved's answer once the autoscaler has stopped: nothing will push the
// removal any more.
var ErrStopping = errors.New("sluice is stopping: the removal will not be pushed")

// Reasons a scaled revision is not ready.
const (
	ReasonDeploying           = "Deploying"
	ReasonInvalidAutoscaling  = "InvalidAutoscaling"
	ReasonCannotRun           = "CannotRun"
	ReasonInstancesNotStarted = "InstancesFailing"
)

// Instances answers the control-plane loop for rev: static endpoints when the revision has them,
// else its instances or the activator. It only reads: a revision the loop has not upserted yet
// (Reconcile asks before the loop tells) gets the answer of a new record, which starts with the
// activator in its path.
func (a *Autoscaler) Instances(rev *v1.Revision) routing.Instances {
	if _, static := rev.Annotations[v1.AnnotationEndpoints]; static {
		return routing.StaticEndpoints{}.Instances(rev)
	}
	if err := a.scaler.Check(rev); err != nil {
		return routing.Instances{Reason: ReasonCannotRun, Message: err.Error()}
	}
	key := routing.KeyOf(rev)
	inst := a.scaler.Instances(key)
	a.mu.Lock()
	r := a.revs[key]
	var (
		cfg       scaling.Config
		cfgErr    error
		mode      = scaling.ModeProxy
		everReady bool
	)
	if r != nil {
		cfg, cfgErr, mode, everReady = r.cfg, r.cfgErr, r.mode, r.everReady
	}
	a.mu.Unlock()
	if r == nil {
		cfg, cfgErr = a.configOf(rev)
	}
	if cfgErr != nil {
		return routing.Instances{Reason: ReasonInvalidAutoscaling, Message: cfgErr.Error()}
	}
	ready := everReady || inst.Ready > 0 || cfg.InitialScale == 0
	in := routing.Instances{Scaled: true, Backends: inst.Endpoints, Ready: ready}
	if mode == scaling.ModeProxy || len(inst.Endpoints) == 0 {
		in.Endpoints = []routing.Endpoint{a.opts.Activator}
	} else {
		in.Endpoints = inst.Endpoints
	}
	if !in.Ready {
		in.Reason, in.Message = ReasonDeploying, fmt.Sprintf("waiting for %d instance(s) to become ready", max(1, cfg.InitialScale))
		if inst.Failure != "" {
			in.Reason, in.Message = ReasonInstancesNotStarted, inst.Failure
		}
	}
	return in
}

// configOf is rev's autoscaling configuration: the defaults refined by its annotations.
func (a *Autoscaler) configOf(rev *v1.Revision) (scaling.Config, error) {
	cc := int64(0)
	if rev.Spec.ContainerConcurrency != nil {
		cc = *rev.Spec.ContainerConcurrency
	}
	return a.opts.Defaults.ForRevision(rev.Annotations, cc)
}

// scales reports whether the autoscaler scales rev: not static endpoints, and a template its
// Scaler can run.
func (a *Autoscaler) scales(rev *v1.Revision) bool {
	if _, static := rev.Annotations[v1.AnnotationEndpoints]; static {
		return false
	}
	return a.scaler.Check(rev) == nil
}

// Upsert records that rev exists (Knative's MultiScaler.Create, or Update) and whether some route
// serves it or names it with a tag. A new revision is tracked and decided on at once (its initial
// scale), starting with the activator in its path. A revision that is not scaled (static
// endpoints, a template the Scaler cannot run) is not recorded, and forgotten if it was.
func (a *Autoscaler) Upsert(rev *v1.Revision, reachable bool) {
	key := routing.KeyOf(rev)
	if !a.scales(rev) {
		a.Delete(key)
		return
	}
	// The pass that upserts rev computed its status from Instances: a revision it found Ready
	// stays Ready (it is activated on demand), even if its instance crashes before the next tick.
	ready := routing.RevisionReady(rev)
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.revs[key]; r != nil {
		r.rev, r.reachable = rev, reachable
		r.everReady = r.everReady || ready
		return
	}
	r := &revision{rev: rev, mode: scaling.ModeProxy, reachable: reachable, everReady: ready}
	r.cfg, r.cfgErr = a.configOf(rev)
	if r.cfgErr == nil && r.cfg.InitialScale == 0 {
		r.everReady = true
	}
	a.revs[key] = r
	if r.cfgErr == nil {
		a.metrics.Track(clusterOf(key), r.cfg.StableWindow)
		a.clustersChangedLocked()
	}
	a.poke() // start its initial scale now, not at the next tick
}

// Delete forgets a revision that is gone (Knative's MultiScaler.Delete): its instances stop and
// its load is no longer tracked.
func (a *Autoscaler) Delete(key routing.Key) {
	a.scaleMu.Lock()
	defer a.scaleMu.Unlock()
	a.mu.Lock()
	r := a.revs[key]
	if r == nil {
		a.mu.Unlock()
		return
	}
	delete(a.revs, key)
	// pushed stays: clients hold the revision's load assignment until a pass pushes its removal,
	// and the stop hook of the instances Forget stops (WaitRemoved) must wait for that push.
	// Pushed drops the entry then.
	delete(a.changed, key)
	if r.cfgErr == nil {
		a.clustersChangedLocked()
	}
	a.mu.Unlock()
	a.scaler.Forget(key)
	if r.cfgErr == nil {
		a.metrics.Untrack(clusterOf(key))
	}
}

// Retain deletes every revision keep says is gone.
func (a *Autoscaler) Retain(keep func(routing.Key) bool) {
	a.mu.Lock()
	var gone []routing.Key
	for k := range a.revs {
		if !keep(k) {
			gone = append(gone, k)
		}
	}
	a.mu.Unlock()
	for _, k := range gone {
		a.Delete(k)
	}
}

// Clusters are the clusters of the revisions it scales, sorted, and a channel closed when they
// change: what the LRS server asks Envoy gateways to report.
func (a *Autoscaler) Clusters() ([]string, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	names := make([]string, 0, len(a.revs))
	for k, r := range a.revs {
		if r.cfgErr == nil {
			names = append(names, clusterOf(k))
		}
	}
	slices.Sort(names)
	return names, a.clustersChanged
}

func (a *Autoscaler) clustersChangedLocked() {
	close(a.clustersChanged)
	a.clustersChanged = make(chan struct{})
}

// Status is the revision's scale as `sluice get revisions` shows it; ok is false for a revision
// the autoscaler does not scale.
func (a *Autoscaler) Status(key routing.Key) (s Status, ok bool) {
	a.mu.Lock()
	r := a.revs[key]
	if r == nil {
		a.mu.Unlock()
		return Status{}, false
	}
	s = Status{Desired: r.desired, Mode: r.mode.String(), Reason: r.last.Reason}
	if r.cfgErr != nil {
		s.Reason = r.cfgErr.Error()
	}
	a.mu.Unlock()
	inst := a.scaler.Instances(key)
	s.Actual, s.Ready = int32(inst.Actual), int32(inst.Ready)
	s.Restarts, s.LastCrash = int32(inst.Restarts), inst.LastCrash
	if inst.Failure != "" {
		s.Reason += "; " + inst.Failure
	}
	return s, true
}

func clusterOf(k routing.Key) string { return routing.ClusterName(k.Namespace, k.Name) }

// panicWindow is the revision's panic window, a percentage of its stable window.
func panicWindow(c scaling.Config) time.Duration {
	return time.Duration(float64(c.StableWindow) * c.PanicWindowPercentage / 100)
}
