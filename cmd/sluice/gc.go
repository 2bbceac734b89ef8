package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// defaultGCPercent is the GC target sluice serve uses unless GOGC says otherwise. sluice's heap
// is mostly long-lived state (objects, routing table, xDS resources) with little churn between
// changes, so Go's default of 100 (grow to twice the live heap before collecting) mostly buys
// idle memory: at 10,000 services, 50 took steady RSS from about 420 MB to about 340 MB.
const defaultGCPercent = 50

// goDefaultGCPercent is Go's own default, which a standalone activator keeps: its heap is all
// garbage of requests in flight.
const goDefaultGCPercent = 100

// minGCHeadroom is the least allocation between two collections. A percent of a small live heap
// is a few MB (Go's floor is 4 MB × GOGC/100), and the activator under load makes garbage at
// tens of MB a second: at 50 % and a 10 MB heap it collected dozens of times a second, and
// collection was a fifth of its CPU. Above a live heap of minGCHeadroom × 100 / percent (64 MB
// at 50 %) the percent rules alone, so large deployments keep their memory profile.
const minGCHeadroom = 32 << 20

// gcTuner keeps the GC percent at its base for a large heap and raises it for a small one, so
// that a collection never comes sooner than minHeadroom bytes of allocation after the last.
type gcTuner struct {
	base        int
	minHeadroom uint64
	every       time.Duration
	liveHeap    func() uint64 // the heap live after the last collection; 0 before the first
	setPercent  func(int) int // debug.SetGCPercent
	log         *slog.Logger

	current int // the percent last set; 0 before the first
}

// newGCTuner returns nil when GOGC is set: the user's percent is left as it is. Call apply
// before the heap grows (a restart's load of the store) and run for the rest.
func newGCTuner(base int, log *slog.Logger) *gcTuner {
	if _, set := os.LookupEnv("GOGC"); set {
		return nil
	}
	return &gcTuner{base: base, minHeadroom: minGCHeadroom, every: time.Second, liveHeap: liveHeapBytes, setPercent: debug.SetGCPercent, log: log}
}

// gcPercentFor is the percent for a live heap of live bytes: base, or more when base % of live
// is less than minHeadroom.
func gcPercentFor(base int, minHeadroom, live uint64) int {
	if live == 0 {
		return base // no collection yet: nothing to size against
	}
	return max(base, int((minHeadroom*100+live-1)/live))
}

// apply sets the percent for the live heap now, if it is not set already.
func (t *gcTuner) apply() {
	if p := gcPercentFor(t.base, t.minHeadroom, t.liveHeap()); p != t.current {
		t.setPercent(p)
		t.current = p
		if t.log != nil {
			t.log.Debug("GC percent for the live heap", "percent", p)
		}
	}
}

// run applies the percent every tick until ctx is done. Setting it takes the heap lock, not a
// stop of the world.
func (t *gcTuner) run(ctx context.Context) error {
	t.apply()
	tick := time.NewTicker(t.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			t.apply()
		}
	}
}

// liveHeapBytes reads the live heap as of the last collection.
func liveHeapBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
