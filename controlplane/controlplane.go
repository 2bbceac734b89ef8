// Package controlplane is the loop that turns desired state into pushed xDS: source (what
// changed) → routing (reconcile statuses, build the table) → envoy (translate) → xds (diff and
// push). It is the only writer of statuses and the only caller of the translator and of the xDS
// server's Update, so none of those need to be safe for concurrent use.
//
// The loop depends on three small interfaces, so each mode plugs in its own parts: a Source of
// desired state (source.Source: the bbolt store standalone, informers on Kubernetes), Endpoints
// (where revisions' instances are: the sluice.dev/endpoints annotation, the autoscaler for local
// processes, EndpointSlices), and Revisions (what scales them, told of every revision's lifecycle
// as Knative's MultiScaler is).
package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluice-dev/sluice/envoy"
	"github.com/sluice-dev/sluice/routing"
	v1 "github.com/sluice-dev/sluice/routing/v1"
	"github.com/sluice-dev/sluice/source"
	"github.com/sluice-dev/sluice/xds"
)

// Endpoints is where revisions' instances come from.
type Endpoints interface {
	routing.EndpointSource
	// Changes is signalled (coalescing) when some revision's instances changed; nil for a source
	// whose answers depend only on the stored objects, like the sluice.dev/endpoints annotation.
	Changes() <-chan struct{}
	// Changed returns the revisions whose instances changed since the last call.
	Changed() []routing.Key
}

// Revisions is what scales revisions (the autoscaler). The loop tells it every revision's
// lifecycle explicitly, as Knative's MultiScaler is told by its reconciler: it never learns of a
// revision by being asked for its instances, so its answers (Endpoints.Instances) have no side
// effects.
type Revisions interface {
	// Upsert says rev exists (new, or changed) and whether some route serves it or tags it.
	Upsert(rev *v1.Revision, reachable bool)
	// Delete says the revision is gone.
	Delete(key routing.Key)
	// Retain deletes every revision keep says is gone; a full pass calls it after upserting all.
	Retain(keep func(routing.Key) bool)
	// Pushed says the pass pushed tab to the clients: the backends diff names (all of them
	// when diff.Full) are what clients are now sent. Waits for acknowledgements start from here.
	Pushed(tab *routing.Table, diff routing.TableDiff)
}

// Static is the standalone source of issue 2: the sluice.dev/endpoints annotation.
type Static struct{ routing.StaticEndpoints }

// Changes is nil: static endpoints change only with the stored revisions.
func (Static) Changes() <-chan struct{} { return nil }

// Changed is empty for the same reason.
func (Static) Changed() []routing.Key { return nil }

// Options configure a Loop.
type Options struct {
	Routing routing.Config
	Logger  *slog.Logger
	// Revisions, when set, is told every revision's lifecycle (the autoscaler).
	Revisions Revisions
	// Now is the clock for condition transition times; default time.Now.
	Now func() time.Time
	// Synced, when set, is called after every pass with the pass's context (the causes' values)
	// and what it pushed (benchmarks, tests, the memory releaser).
	Synced func(ctx context.Context, s SyncStats)
}

// SyncStats describe one pass of the loop.
type SyncStats struct {
	StatusUpdates int
	Hosts         int
	Backends      int
	XDS           xds.UpdateStats
	Took          time.Duration
}

// Loop owns the translation from state to xDS.
type Loop struct {
	src    source.Source
	eps    Endpoints
	revs   Revisions
	tables *routing.TableBuilder
	tr     *envoy.Translator
	xds    *xds.Server
	opts   Options
	log    *slog.Logger
	// synced is false until a full pass succeeded; until then every pass is a full one.
	synced bool
	// served are the revisions each route served (or tagged) as of the last pass: what a route
	// that changes or goes away made reachable before. Kept rather than the last pass's whole
	// State, which would pin a second copy of every object whose status that pass wrote.
	served map[routing.Key][]routing.Key
}

// New returns a Loop; Run drives it.
func New(src source.Source, eps Endpoints, tr *envoy.Translator, srv *xds.Server, opts Options) *Loop {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// The loop builds what gRPC clients want: reading the wanted hosts now, before the server
	// serves anyone, has the server hold gRPC clients' requests for hosts until a pass built
	// them from the very first client on (see xds.Server.WantedSnapshot).
	srv.WantedSnapshot()
	return &Loop{src: src, eps: eps, revs: opts.Revisions, tables: routing.NewTableBuilder(opts.Routing), tr: tr, xds: srv, opts: opts, log: opts.Logger}
}

// Run syncs once at start and then after every change of the source or of endpoints, until ctx
// is done. A failed pass is logged and retried: the last good resources keep being served
// meanwhile.
func (l *Loop) Run(ctx context.Context) error {
	// A failed pass (a disk error writing statuses, say) is retried with backoff, not only on the
	// next change: with static endpoints there may be no next change for a long time, and
	// clients would keep stale resources until then.
	var (
		retry   <-chan time.Time
		backoff = minRetry
	)
	pass := func() {
		if err := l.Sync(ctx); err != nil {
			l.log.Error("sync failed; retrying", "err", err, "in", backoff)
			retry = time.After(backoff)
			backoff = min(2*backoff, maxRetry)
			return
		}
		retry, backoff = nil, minRetry
	}
	pass()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.src.Changes():
		case <-l.eps.Changes():
		case <-l.xds.WantedChanges():
			// A gRPC client subscribed to a host (or let go of one): Sync builds (or drops)
			// its API listener and route configuration. Its watch waits for them meanwhile.
		case <-retry:
		}
		pass()
	}
}

// Retry bounds for a failed pass.
const (
	minRetry = 100 * time.Millisecond
	maxRetry = 30 * time.Second
)

// causesKey is the context key of a pass's causes.
type causesKey struct{}

// Causes are the contexts of the writes a pass works on behalf of (source.Changed.Causes),
// oldest first: an API call's, a watch event's. A tracer links the pass to each of them.
func Causes(ctx context.Context) []context.Context {
	c, _ := ctx.Value(causesKey{}).([]context.Context)
	return c
}

// passContext is the context of one pass: a child of its first cause, so that what the cause
// carries (a trace) flows from the write to the push, cancelled with the loop's ctx, and with
// every cause reachable through Causes.
func passContext(loop context.Context, causes []context.Context) (context.Context, context.CancelFunc) {
	if len(causes) == 0 {
		return context.WithCancel(loop)
	}
	ctx, cancel := context.WithCancel(context.WithValue(causes[0], causesKey{}, causes))
	stop := context.AfterFunc(loop, cancel)
	return ctx, func() { stop(); cancel() }
}

// Sync runs one pass: over what changed since the last pass, or over everything on the first one
// (and after a failure, or when more changed than the source kept track of). ctx is the loop's;
// the pass runs in a child of the changes' first cause.
func (l *Loop) Sync(ctx context.Context) error {
	start := time.Now()
	ch := l.src.TakeChanged()
	ctx, cancel := passContext(ctx, ch.Causes)
	defer cancel()
	changed := ch.Refs
	full := ch.All || !l.synced
	// A failed pass is redone in full: what it took from the journal is lost with it.
	l.synced = false

	st := l.src.State()
	// Revisions whose instances changed need a new table; they need reconciling only when their
	// readiness changed too. Scaling is the common case, and reconciling scans every revision
	// and route of the State.
	reconcile := changed[:len(changed):len(changed)] // capped: appends to either must not write into the other
	for _, k := range l.eps.Changed() {
		ref := routing.Ref{Kind: v1.KindRevision, Key: k}
		changed = append(changed, ref)
		if rev := st.Revisions[k]; rev == nil || !routing.RevisionStatusCurrent(rev, l.eps.Instances(rev)) {
			reconcile = append(reconcile, ref)
		}
	}
	var updates []v1.Object
	if full {
		updates = routing.Reconcile(st, l.eps, l.opts.Routing, l.opts.Now())
	} else {
		updates = routing.ReconcileScoped(st, l.eps, l.opts.Routing, l.opts.Now(), reconcile)
	}
	if len(updates) > 0 {
		// The table is built from the new statuses before they are stored: a status is derived
		// (the next Reconcile recomputes it), so pushing first takes the disk write off the path
		// from a change to the gateways.
		st = st.With(routing.Change{Put: updates})
		for _, o := range updates {
			changed = append(changed, routing.RefOf(o))
		}
	}
	l.tellRevisions(st, changed, full)
	if full {
		changed = nil // the builder's "everything"
	} else if changed == nil {
		// Nothing stored changed (a pass for the hosts gRPC clients want): an empty diff, not
		// the builder's "everything".
		changed = []routing.Ref{}
	}
	// gRPC clients get API listeners and per-host route configurations only for the hosts they
	// subscribe to; the translator adds the newly wanted ones and removes the rest as changes.
	wanted, wantedGen := l.xds.WantedSnapshot()
	l.tr.SetWanted(wanted)
	// Each stage hands the next what it changed, so a pass costs in proportion to the change:
	// the table's diff names hosts and backends, the translator's names resources, and the xDS
	// server re-diffs only those. A full pass (changed == nil) diffs everything.
	tab, diff := l.tables.BuildDiff(st, l.eps, changed)
	res := l.tr.TranslateDiff(tab, diff)
	stats, err := l.xds.UpdateChanged(ctx, res, l.tr.LastChanges())
	if err != nil {
		return fmt.Errorf("push xDS: %w", err)
	}
	// The wanted hosts are in the caches: requests of gRPC clients held for them can be answered.
	l.xds.WantedServed(wantedGen)
	if l.revs != nil {
		l.revs.Pushed(tab, diff)
	}
	if len(updates) > 0 {
		if err := l.src.UpdateStatus(ctx, updates); err != nil {
			return fmt.Errorf("write statuses: %w", err)
		}
	}
	l.synced = true
	s := SyncStats{StatusUpdates: len(updates), Hosts: len(tab.Hosts), Backends: len(tab.Backends), XDS: stats, Took: time.Since(start)}
	if stats.Changed+stats.Deleted > 0 || s.StatusUpdates > 0 {
		l.log.DebugContext(ctx, "synced", "statuses", s.StatusUpdates, "hosts", s.Hosts, "backends", s.Backends,
			"xdsChanged", stats.Changed, "xdsDeleted", stats.Deleted, "xdsBytes", stats.Bytes, "took", s.Took)
	}
	if l.opts.Synced != nil {
		l.opts.Synced(ctx, s)
	}
	return nil
}

// tellRevisions tells Revisions what this pass changed of revisions' lifecycle: revisions
// created, changed or deleted, and those whose reachability may have changed because a route that
// serves (or served) them changed. st is the state with this pass's statuses. A full pass tells
// every revision and drops the rest.
func (l *Loop) tellRevisions(st *routing.State, changed []routing.Ref, full bool) {
	if l.revs == nil {
		return
	}
	if full || l.served == nil {
		l.served = make(map[routing.Key][]routing.Key, len(st.Routes))
		for k := range st.Routes {
			if s := st.ServedRevisions(k); len(s) > 0 {
				l.served[k] = s
			}
		}
		for k, rev := range st.Revisions {
			l.revs.Upsert(rev, st.Reachable(k))
		}
		l.revs.Retain(func(k routing.Key) bool { return st.Revisions[k] != nil })
		return
	}
	told := map[routing.Key]bool{}
	tell := func(k routing.Key) {
		if told[k] {
			return
		}
		told[k] = true
		if rev := st.Revisions[k]; rev != nil {
			l.revs.Upsert(rev, st.Reachable(k))
		} else {
			l.revs.Delete(k)
		}
	}
	for _, ref := range changed {
		switch ref.Kind {
		case v1.KindRevision:
			tell(ref.Key)
		case v1.KindRoute:
			for _, k := range l.served[ref.Key] {
				tell(k)
			}
			now := st.ServedRevisions(ref.Key)
			for _, k := range now {
				tell(k)
			}
			if len(now) > 0 {
				l.served[ref.Key] = now
			} else {
				delete(l.served, ref.Key)
			}
		}
	}
}
