package main

import (
	"context"
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
		{"rounds up, never under the headroom", 50, 3 * mb, 1067},
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
			if c.live > 0 && uint64(got)*c.live/100 < 32*mb && got != c.base {
				t.Errorf("percent %d leaves %d MB of headroom, under 32 MB", got, uint64(got)*c.live/100/mb)
			}
		})
	}
}

// The tuner sets the percent before it runs, follows the live heap, sets nothing when nothing
// changed, and stops with its context.
func TestGCTunerFollowsTheLiveHeap(t *testing.T) {
	const mb = 1 << 20
	var mu sync.Mutex
	live := uint64(0)
	var set []int
	changed := make(chan struct{}, 16)
	tuner := &gcTuner{
		base: 50, minHeadroom: 32 * mb, every: time.Millisecond,
		liveHeap:   func() uint64 { mu.Lock(); defer mu.Unlock(); return live },
		setPercent: func(p int) int { mu.Lock(); set = append(set, p); mu.Unlock(); changed <- struct{}{}; return 0 },
	}
	tuner.apply()
	<-changed
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tuner.run(ctx) }()

	mu.Lock()
	live = 16 * mb
	mu.Unlock()
	<-changed
	mu.Lock()
	live = 200 * mb
	mu.Unlock()
	<-changed
	time.Sleep(20 * time.Millisecond) // ticks with no change in between
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
