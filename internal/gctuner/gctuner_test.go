package gctuner

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		name string
		base int
		live uint64
		want int
	}{
		{"no collection yet", 50, 0, 50},
		{"small heap: 32 MB of headroom", 50, 8 * mb, 400},
		{"rounds up, never under the headroom", 50, 6 * mb, 534},
		{"tiny heap: the runtime's minimum, which grows with the percent, stays under live + 32 MB", 50, 3 * mb, 875},
		{"at the crossover", 50, 64 * mb, 50},
		{"large heap: the base", 50, 157 * mb, 50},
		{"Go's default base", 100, 16 * mb, 200},
		{"Go's default, large", 100, 40 * mb, 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := gcPercentFor(c.base, 32*mb, c.live)
			if got != c.want {
				t.Errorf("gcPercentFor(%d, 32 MB, %d MB) = %d, want %d", c.base, c.live/mb, got, c.want)
			}
			// The runtime's goal: the larger of live × (1 + p/100) and 4 MB × p/100.
			goal := max(c.live*uint64(100+got)/100, goHeapMinimum*uint64(got)/100)
			// Over live + 32 MB by at most the one percent point that rounding up may add.
			if c.live > 0 && got != c.base && goal > c.live+32*mb+c.live/100 {
				t.Errorf("percent %d: heap goal %.1f MB, over live + 32 MB", got, float64(goal)/mb)
			}
		})
	}
}

// The tuner sets the percent before it runs and after every collection, following the live
// heap, but not for a drift of less than a tenth; it stops with its context.
func TestGCTunerFollowsTheLiveHeap(t *testing.T) {
	const mb = 1 << 20
	var mu sync.Mutex
	live := uint64(0)
	var set []int
	armed := make(chan chan<- struct{}, 1)
	tuner := &Tuner{
		base: 50, minHeadroom: 32 * mb,
		liveHeap:   func() uint64 { mu.Lock(); defer mu.Unlock(); return live },
		setPercent: func(p int) int { mu.Lock(); set = append(set, p); mu.Unlock(); return 0 },
		afterGC:    func(ch chan<- struct{}) { armed <- ch },
	}
	tuner.Apply()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tuner.Run(ctx) }()

	collect := func(heap uint64) {
		ch := <-armed // the tuner applied and re-armed: a collection may come
		mu.Lock()
		live = heap
		mu.Unlock()
		ch <- struct{}{}
	}
	collect(16 * mb)  // 200 %
	collect(17 * mb)  // 189 %: within a tenth, left at 200
	collect(200 * mb) // the base
	<-armed
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []int{50, 200, 50}; !slices.Equal(set, want) {
		t.Errorf("percents set = %v, want %v", set, want)
	}
}

// afterNextGC's signal comes from a real collection.
func TestAfterNextGCFires(t *testing.T) {
	ch := make(chan struct{}, 1)
	afterNextGC(ch)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		select {
		case <-ch:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("no signal after collections for 30s")
}
