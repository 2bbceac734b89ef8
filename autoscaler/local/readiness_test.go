package local

import (
	"testing"
	"time"
)

func TestBackoffNext(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, ResetAfter: 10 * time.Second}
	for _, tc := range []struct {
		prev, uptime, want time.Duration
	}{
		{0, 0, 100 * time.Millisecond},
		{100 * time.Millisecond, time.Millisecond, 200 * time.Millisecond},
		{400 * time.Millisecond, time.Millisecond, 800 * time.Millisecond},
		{800 * time.Millisecond, time.Millisecond, time.Second},
		{time.Second, time.Millisecond, time.Second},
		{time.Second, 10 * time.Second, 100 * time.Millisecond},
	} {
		if got := b.next(tc.prev, tc.uptime); got != tc.want {
			t.Errorf("next(%v, %v) = %v, want %v", tc.prev, tc.uptime, got, tc.want)
		}
	}
}

func TestStartupInterval(t *testing.T) {
	prev := time.Duration(0)
	for step := range 20 {
		d := startupInterval(step)
		if d < prev || d > startupProbeMax {
			t.Fatalf("startupInterval(%d) = %v after %v: want non-decreasing, at most %v", step, d, prev, startupProbeMax)
		}
		prev = d
	}
	if startupInterval(0) != startupProbeFirst || prev != startupProbeMax {
		t.Errorf("intervals go from %v to %v, want %v to %v", startupInterval(0), prev, startupProbeFirst, startupProbeMax)
	}
}

func TestReadinessThresholds(t *testing.T) {
	p := Probe{Period: 10 * time.Second, SuccessThreshold: 2, FailureThreshold: 3}
	var r readiness
	steps := []struct {
		ok          bool
		wantReady   bool
		wantFlipped bool
	}{
		{false, false, false},
		{true, false, false},
		{true, true, true}, // two successes in a row
		{false, true, false},
		{false, true, false},
		{true, true, false}, // a success resets the failures
		{false, true, false},
		{false, true, false},
		{false, false, true}, // three failures in a row
		{true, false, false},
		{true, true, true},
	}
	for i, s := range steps {
		flipped := r.observe(s.ok, p)
		if flipped != s.wantFlipped || r.ready != s.wantReady {
			t.Fatalf("step %d (ok=%v): ready=%v flipped=%v, want ready=%v flipped=%v", i, s.ok, r.ready, flipped, s.wantReady, s.wantFlipped)
		}
	}
}

func TestReadinessInterval(t *testing.T) {
	p := Probe{Period: 7 * time.Second, SuccessThreshold: 1, FailureThreshold: 1}
	var r readiness
	r.observe(false, p)
	if got := r.interval(p); got >= startupProbeMax+1 {
		t.Errorf("interval before first ready = %v, want the fast startup one", got)
	}
	r.observe(true, p)
	if got := r.interval(p); got != p.Period {
		t.Errorf("interval once ready = %v, want the period %v", got, p.Period)
	}
	r.observe(false, p)
	if got := r.interval(p); got != p.Period {
		t.Errorf("interval once not ready again = %v, want the period %v", got, p.Period)
	}
}
