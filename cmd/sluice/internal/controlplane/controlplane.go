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
	"github.com/sluice-dev/sluice/xds"
)

// Endpoints is where revisions' instances come from.
type Endpoints interface {
	routing.EndpointSource
	// Changes is signalled (coalescing) when some revision's instances changed; nil for a source
	// whose answers depend only on the stored objects, like the sluice.dev/endpoints annotation.
	Changes() <-chan struct{}
}

// Static is the standalone source of issue 2: the sluice.dev/endpoints annotation.
type Static struct{ routing.StaticEndpoints }

// Changes is nil: static endpoints change only with the stored revisions.
func (Static) Changes() <-chan struct{} { return nil }

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
	store *store.Store
	eps   Endpoints
	tr    *envoy.Translator
	xds   *xds.Server
	opts  Options
	log   *slog.Logger
}

// New returns a Loop; Run drives it.
func New(st *store.Store, eps Endpoints, tr *envoy.Translator, srv *xds.Server, opts Options) *Loop {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Loop{store: st, eps: eps, tr: tr, xds: srv, opts: opts, log: opts.Logger}
}

// Run syncs once at start and then after every stored change or endpoint change, until ctx is
// done. A failed pass is logged and retried on the next change: the last good resources keep
// being served meanwhile.
func (l *Loop) Run(ctx context.Context) error {
	if err := l.Sync(); err != nil {
		l.log.Error("sync", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.store.Changes():
		case <-l.eps.Changes():
		}
		if err := l.Sync(); err != nil {
			l.log.Error("sync", "err", err)
		}
	}
}

// Sync runs one pass over the current state.
func (l *Loop) Sync() error {
	start := time.Now()
	st := l.store.State()
	updates := routing.Reconcile(st, l.eps, l.opts.Routing, l.opts.Now())
	if len(updates) > 0 {
		if err := l.store.UpdateStatus(updates); err != nil {
			return fmt.Errorf("write statuses: %w", err)
		}
		st = l.store.State()
	}
	tab := routing.BuildTable(st, l.eps, l.opts.Routing)
	res := l.tr.Translate(tab)
	stats, err := l.xds.Update((*xds.Resources)(res))
	if err != nil {
		return fmt.Errorf("push xDS: %w", err)
	}
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
