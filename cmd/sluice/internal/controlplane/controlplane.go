// Package controlplane is the loop that turns stored state into pushed xDS: store → routing
// (reconcile statuses, build the table) → envoy (translate) → xds (diff and push). It is the only
// writer of statuses and the only caller of the translator and of the xDS server's Update, so
// none of those need to be safe for concurrent use.
package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluice-dev/sluice/envoy"
	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/routing/store"
	v1 "github.com/sluice-dev/sluice/routing/v1"
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
	// Now is the clock for condition transition times; default time.Now.
	Now func() time.Time
	// Synced, when set, is called after every pass with what it pushed (benchmarks, tests).
	Synced func(SyncStats)
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
	store  *store.Store
	eps    Endpoints
	tables *routing.TableBuilder
	tr     *envoy.Translator
	xds    *xds.Server
	opts   Options
	log    *slog.Logger
	// synced is false until a full pass succeeded; until then every pass is a full one.
	synced bool
}

// New returns a Loop; Run drives it.
func New(st *store.Store, eps Endpoints, tr *envoy.Translator, srv *xds.Server, opts Options) *Loop {
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
	return &Loop{store: st, eps: eps, tables: routing.NewTableBuilder(opts.Routing), tr: tr, xds: srv, opts: opts, log: opts.Logger}
}

// Run syncs once at start and then after every stored change or endpoint change, until ctx is
// done. A failed pass is logged and retried on the next change: the last good resources keep
// being served meanwhile.
func (l *Loop) Run(ctx context.Context) error {
	// A failed pass (a disk error writing statuses, say) is retried with backoff, not only on the
	// next change: with static endpoints there may be no next change for a long time, and
	// clients would keep stale resources until then.
	var (
		retry   <-chan time.Time
		backoff = minRetry
	)
	pass := func() {
		if err := l.Sync(); err != nil {
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
		case <-l.store.Changes():
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

// Sync runs one pass: over what changed since the last pass, or over everything on the first one
// (and after a failure, or when more changed than the store's journal holds).
func (l *Loop) Sync() error {
	start := time.Now()
	changed, all := l.store.TakeChanged()
	full := all || !l.synced
	// A failed pass is redone in full: what it took from the journal is lost with it.
	l.synced = false

	st := l.store.State()
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
	stats, err := l.xds.UpdateChanged(res, l.tr.LastChanges())
	if err != nil {
		return fmt.Errorf("push xDS: %w", err)
	}
	// The wanted hosts are in the caches: requests of gRPC clients held for them can be answered.
	l.xds.WantedServed(wantedGen)
	if len(updates) > 0 {
		if err := l.store.UpdateStatus(updates); err != nil {
			return fmt.Errorf("write statuses: %w", err)
		}
	}
	l.synced = true
	s := SyncStats{StatusUpdates: len(updates), Hosts: len(tab.Hosts), Backends: len(tab.Backends), XDS: stats, Took: time.Since(start)}
	if stats.Changed+stats.Deleted > 0 || s.StatusUpdates > 0 {
		l.log.Debug("synced", "statuses", s.StatusUpdates, "hosts", s.Hosts, "backends", s.Backends,
			"xdsChanged", stats.Changed, "xdsDeleted", stats.Deleted, "xdsBytes", stats.Bytes, "took", s.Took)
	}
	if l.opts.Synced != nil {
		l.opts.Synced(s)
	}
	return nil
}
