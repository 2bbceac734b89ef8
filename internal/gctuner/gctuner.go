// Package gctuner sets the Go garbage collector's percent for sluice's processes: a base percent for a
// large heap, raised for a small one so that collections never come sooner than a fixed amount of
// allocation apart.
package gctuner

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// ControlPlanePercent is the GC target sluice serve uses unless GOGC says otherwise. sluice's heap
// is mostly long-lived state (objects, routing table, xDS resources) with little churn between
// changes, so Go's default of 100 (grow to twice the live heap before collecting) mostly buys
// idle memory: at 10,000 services, 50 took steady RSS from about 420 MB to about 340 MB.
const ControlPlanePercent = 50

// GoDefaultPercent is Go's own default, which a standalone activator keeps: its heap is all
// garbage of requests in flight.
const GoDefaultPercent = 100

// minGCHeadroom is the least allocation between two collections. A percent of a small live heap
// is a few MB, and the activator under load makes garbage at tens of MB a second: at 50 % and a
// 10 MB heap it collected dozens of times a second, and collection was a fifth of its CPU. Above
// a live heap of minGCHeadroom × 100 / percent (64 MB at 50 %) the percent rules alone, so large
// deployments keep their memory profile.
const minGCHeadroom = 32 << 20

// goHeapMinimum is the Go runtime's smallest heap goal at GOGC=100; it scales with the percent
// (4 MB × GOGC/100), so a percent raised for a tiny heap must not raise it past live + headroom.
const goHeapMinimum = 4 << 20

// Tuner keeps the GC percent at its base for a large heap and raises it for a small one, so
// that a collection never comes sooner than minHeadroom bytes of allocation after the last.
type Tuner struct {
	base        int
	minHeadroom uint64
	liveHeap    func() uint64 // the heap live after the last collection; 0 before the first
	setPercent  func(int) int // debug.SetGCPercent
	// afterGC arranges one send on ch (never blocking) after the next collection.
	afterGC func(ch chan<- struct{})
	log     *slog.Logger

	current int // the percent last set; 0 before the first
}

// New returns nil when GOGC is set: the user's percent is left as it is. Call apply
// before the heap grows (a restart's load of the store) and run for the rest.
func New(base int, log *slog.Logger) *Tuner {
	if _, set := os.LookupEnv("GOGC"); set {
		return nil
	}
	return &Tuner{base: base, minHeadroom: minGCHeadroom, liveHeap: liveHeapBytes, setPercent: debug.SetGCPercent, afterGC: afterNextGC, log: log}
}

// gcPercentFor is the percent for a live heap of live bytes: base, or more when base % of live
// is less than minHeadroom, but never so much that the runtime's heap minimum (which grows with
// the percent) puts the goal above live + minHeadroom.
func gcPercentFor(base int, minHeadroom, live uint64) int {
	if live == 0 {
		return base // no collection yet: nothing to size against
	}
	p := (minHeadroom*100 + live - 1) / live
	p = min(p, (live+minHeadroom)*100/goHeapMinimum)
	return max(base, int(p))
}

// Apply sets the percent for the live heap now, unless it is within a tenth of the one set:
// the live heap drifts a little every cycle, and the goal need not follow every drift.
func (t *Tuner) Apply() {
	p := gcPercentFor(t.base, t.minHeadroom, t.liveHeap())
	if t.current != 0 && p != t.base && 10*abs(p-t.current) <= t.current {
		return
	}
	if p == t.current {
		return
	}
	t.setPercent(p)
	t.current = p
	if t.log != nil {
		t.log.Debug("GC percent for the live heap", "percent", p)
	}
}

func abs(x int) int { return max(x, -x) }

// Run applies the percent after every collection until ctx is done: the pacer sets the next goal
// from the percent at the end of each cycle, so a heap that just grew tenfold must get its new
// percent at once, not a second later at ten times the goal. Setting the percent takes the heap
// lock, not a stop of the world.
func (t *Tuner) Run(ctx context.Context) error {
	t.Apply()
	collected := make(chan struct{}, 1)
	t.afterGC(collected)
	for {
		select {
		case <-ctx.Done():
			return nil // a collection still armed sends into the buffer and re-arms nothing
		case <-collected:
			t.Apply()
			t.afterGC(collected)
		}
	}
}

// gcSentinel is an object only a collection frees. Not a tiny allocation (under 16 bytes,
// pointer-free), which shares a block with others and may never be freed on its own.
type gcSentinel struct{ _ [32]byte }

// afterNextGC sends on ch once the next collection has freed a fresh sentinel.
func afterNextGC(ch chan<- struct{}) {
	runtime.AddCleanup(new(gcSentinel), func(ch chan<- struct{}) {
		select {
		case ch <- struct{}{}:
		default:
		}
	}, ch)
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
