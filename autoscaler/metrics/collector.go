package metrics

import (
	"sync"
	"time"
)

// Kind tells what sent a report; data-plane clients and the activator see the same requests when the
// activator is in the path, so their loads are compared, never added.
type Kind int

const (
	// DataPlane is a gateway or client sending to the revision: Envoy or a gRPC xDS client.
	DataPlane Kind = iota
	// Activator is sluice's activator, which buffers and forwards requests for the revision.
	Activator
)

func (k Kind) String() string {
	if k == Activator {
		return "activator"
	}
	return "data-plane"
}

// Report is one reporter's load on one revision's cluster over one interval.
type Report struct {
	Reporter string // unique per connection: two streams of one node are two reporters
	Kind     Kind
	Cluster  string // "namespace/revision"
	// InProgress is a snapshot of the requests in flight at the end of the interval.
	InProgress uint64
	// Issued, Succeeded and Errored count requests during the interval.
	Issued, Succeeded, Errored uint64
	Interval                   time.Duration
	// At is when the report was received.
	At time.Time
}

// Load is a revision's total load at one moment.
type Load struct {
	Concurrency float64 // requests in flight
	RPS         float64 // requests issued per second
}

// Averages is what the KPA decides on, for one revision.
type Averages struct {
	StableConcurrency, PanicConcurrency float64
	StableRPS, PanicRPS                 float64
	// HasData is false when the stable window holds no sample (the revision was never sampled, or not
	// for a whole window).
	HasData bool
}

// DefaultStaleAfter is how long a report counts without a newer one from its reporter: a few intervals
// of the default 1s, so one late report does not drop a reporter's load to zero.
const DefaultStaleAfter = 3 * time.Second

// Collector aggregates reports per revision. It keeps the latest report per (reporter, cluster) and a
// pair of windows per tracked revision; memory is O(reporters × clusters each reports + tracked
// revisions × window seconds). Safe for concurrent use.
type Collector struct {
	staleAfter time.Duration

	mu        sync.Mutex
	reporters map[string]*reporter
	revisions map[string]*revision
}

type reporter struct {
	kind     Kind
	clusters map[string]latest
}

type latest struct {
	inProgress, rps float64
	at              time.Time
}

type revision struct {
	concurrency, rps *Window
}

// NewCollector returns a collector whose reports count for staleAfter (DefaultStaleAfter if 0).
func NewCollector(staleAfter time.Duration) *Collector {
	if staleAfter <= 0 {
		staleAfter = DefaultStaleAfter
	}
	return &Collector{
		staleAfter: staleAfter,
		reporters:  map[string]*reporter{},
		revisions:  map[string]*revision{},
	}
}

// Report records a reporter's latest load on a cluster, replacing its previous report for that cluster
// unless that one is newer.
func (c *Collector) Report(r Report) {
	rps := 0.0
	if r.Interval > 0 {
		rps = float64(r.Issued) / r.Interval.Seconds()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rep := c.reporters[r.Reporter]
	if rep == nil {
		rep = &reporter{kind: r.Kind, clusters: map[string]latest{}}
		c.reporters[r.Reporter] = rep
	}
	rep.kind = r.Kind
	if prev, ok := rep.clusters[r.Cluster]; ok && prev.at.After(r.At) {
		return
	}
	rep.clusters[r.Cluster] = latest{inProgress: float64(r.InProgress), rps: rps, at: r.At}
}

// Forget drops everything a reporter reported: it disconnected, its requests no longer count.
func (c *Collector) Forget(reporter string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.reporters, reporter)
}

// Track starts sampling a revision's cluster into windows able to average over window (its stable
// window). Tracking again with a longer window starts new, longer windows; otherwise it is a no-op.
func (c *Collector) Track(cluster string, window time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev, ok := c.revisions[cluster]; ok && rev.concurrency.Capacity() >= window {
		return
	}
	c.revisions[cluster] = &revision{concurrency: NewWindow(window), rps: NewWindow(window)}
}

// Untrack stops sampling a revision and drops its windows.
func (c *Collector) Untrack(cluster string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.revisions, cluster)
}

// Sample records every tracked revision's current load into its windows (call it once a second) and
// drops reports older than the stale period. A tracked revision nobody reports on records zero.
func (c *Collector) Sample(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	loads := c.loadsLocked(now)
	for cluster, rev := range c.revisions {
		l := loads[cluster]
		rev.concurrency.Record(now, l.Concurrency)
		rev.rps.Record(now, l.RPS)
	}
}

// Load is a revision's current load from the reports that are not stale at now, sampled or not; the
// activator's poke and debugging views read it.
func (c *Collector) Load(cluster string, now time.Time) Load {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s sums
	for _, rep := range c.reporters {
		if l, ok := rep.clusters[cluster]; ok && !c.stale(l, now) {
			s.add(rep.kind, l)
		}
	}
	return s.load()
}

// Averages is a tracked revision's averages over the stable and panic windows ending at now.
func (c *Collector) Averages(cluster string, stable, panic time.Duration, now time.Time) Averages {
	c.mu.Lock()
	defer c.mu.Unlock()
	rev, ok := c.revisions[cluster]
	if !ok {
		return Averages{}
	}
	var a Averages
	a.StableConcurrency, a.HasData = rev.concurrency.Average(now, stable)
	a.PanicConcurrency, _ = rev.concurrency.Average(now, panic)
	a.StableRPS, _ = rev.rps.Average(now, stable)
	a.PanicRPS, _ = rev.rps.Average(now, panic)
	return a
}

type sums struct{ dpConc, actConc, dpRPS, actRPS float64 }

func (s *sums) add(k Kind, l latest) {
	if k == Activator {
		s.actConc += l.inProgress
		s.actRPS += l.rps
	} else {
		s.dpConc += l.inProgress
		s.dpRPS += l.rps
	}
}

// load takes the larger of the data plane's and the activators' view: with the activator in the path
// both count the same requests, and without it the activators see none of them.
func (s sums) load() Load {
	return Load{Concurrency: max(s.dpConc, s.actConc), RPS: max(s.dpRPS, s.actRPS)}
}

// loadsLocked sums every cluster's fresh reports in one pass over the reporters, dropping stale ones.
func (c *Collector) loadsLocked(now time.Time) map[string]Load {
	per := map[string]*sums{}
	for id, rep := range c.reporters {
		for cluster, l := range rep.clusters {
			if c.stale(l, now) {
				delete(rep.clusters, cluster)
				continue
			}
			s := per[cluster]
			if s == nil {
				s = &sums{}
				per[cluster] = s
			}
			s.add(rep.kind, l)
		}
		if len(rep.clusters) == 0 {
			delete(c.reporters, id)
		}
	}
	out := make(map[string]Load, len(per))
	for cluster, s := range per {
		out[cluster] = s.load()
	}
	return out
}

func (c *Collector) stale(l latest, now time.Time) bool {
	return now.Sub(l.at) > c.staleAfter
}
