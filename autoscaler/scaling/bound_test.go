package scaling

import (
	"strings"
	"testing"
	"time"
)

const no = -1 << 30

func valid(n int32) Decision {
	return Decision{Desired: n, Valid: true, ExcessBurstCapacity: 10, Reason: "decided"}
}

type boundTick struct {
	at             int
	d              Decision
	ready          int32
	activatorSince int // seconds after t0; no = not acknowledged

	want          int32
	wantMode      Mode
	wantWait      Wait
	wantRecheck   time.Duration
	wantReasonHas string
}

func runBound(t *testing.T, cfg Config, st BoundState, ticks []boundTick) {
	t.Helper()
	for i, tk := range ticks {
		obs := Observed{Ready: tk.ready}
		if tk.activatorSince != no {
			obs.ActivatorSince = at(tk.activatorSince)
		}
		var a Action
		a, st = Bound(cfg, tk.d, obs, st, at(tk.at))
		if a.Scale != tk.want || a.Mode != tk.wantMode || a.Wait != tk.wantWait || a.RecheckAfter != tk.wantRecheck {
			t.Errorf("tick %d (t+%ds, desired %d, ready %d): got scale %d mode %v wait %v recheck %v (%q), want %d %v %v %v",
				i, tk.at, tk.d.Desired, tk.ready, a.Scale, a.Mode, a.Wait, a.RecheckAfter, a.Reason, tk.want, tk.wantMode, tk.wantWait, tk.wantRecheck)
		}
		if tk.wantReasonHas != "" && !strings.Contains(a.Reason, tk.wantReasonHas) {
			t.Errorf("tick %d: reason %q does not contain %q", i, a.Reason, tk.wantReasonHas)
		}
	}
}

func TestBound(t *testing.T) {
	noData := Decision{Desired: -1, ExcessBurstCapacity: 10, Reason: "no metrics yet"}
	tests := []struct {
		name  string
		cfg   Config
		st    BoundState
		ticks []boundTick
	}{{
		name: "initial-scale until that many are ready, then the decision",
		cfg:  revision(t, 0, "initial-scale", "3"),
		ticks: []boundTick{
			{at: 0, d: noData, ready: 0, activatorSince: no, want: 3, wantMode: ModeProxy, wantReasonHas: "initial-scale 3"},
			{at: 2, d: valid(1), ready: 1, activatorSince: no, want: 3, wantMode: ModeServe, wantReasonHas: "initial-scale 3 (decided)"},
			{at: 4, d: valid(1), ready: 3, activatorSince: no, want: 1, wantMode: ModeServe},
			{at: 6, d: noData, ready: 1, activatorSince: no, want: -1, wantMode: ModeServe},
		},
	}, {
		name: "min-scale keeps instances and never scales to zero",
		cfg:  revision(t, 0, "min-scale", "2"),
		st:   BoundState{Initialized: true, ActiveSince: at(-600)},
		ticks: []boundTick{
			{at: 0, d: valid(0), ready: 2, activatorSince: 0, want: 2, wantMode: ModeServe, wantReasonHas: "min-scale 2 (decided)"},
		},
	}, {
		name: "max-scale caps",
		cfg:  revision(t, 0, "max-scale", "5"),
		st:   BoundState{Initialized: true},
		ticks: []boundTick{
			{at: 0, d: valid(8), ready: 5, activatorSince: no, want: 5, wantMode: ModeServe, wantReasonHas: "max-scale 5"},
		},
	}, {
		name: "activation-scale: at least that many when not at zero",
		cfg:  revision(t, 0, "activation-scale", "3"),
		st:   BoundState{Initialized: true},
		ticks: []boundTick{
			{at: 0, d: valid(1), ready: 0, activatorSince: 0, want: 3, wantMode: ModeProxy, wantReasonHas: "activation-scale 3"},
			{at: 2, d: valid(4), ready: 3, activatorSince: no, want: 4, wantMode: ModeServe},
		},
	}, {
		name: "scale to zero: a stable window active, then the activator in the path, then the grace period",
		cfg:  Defaults(),
		st:   BoundState{Initialized: true},
		ticks: []boundTick{
			{at: 0, d: valid(1), ready: 1, activatorSince: no, want: 1, wantMode: ModeServe},
			{at: 30, d: valid(0), ready: 1, activatorSince: no, want: 1, wantMode: ModeServe, wantWait: WaitStableWindow, wantRecheck: 30 * time.Second},
			{at: 60, d: valid(0), ready: 1, activatorSince: no, want: -1, wantMode: ModeProxy, wantWait: WaitActivator},
			{at: 65, d: valid(0), ready: 1, activatorSince: 62, want: -1, wantMode: ModeProxy, wantWait: WaitGracePeriod, wantRecheck: 27 * time.Second},
			{at: 89, d: valid(0), ready: 1, activatorSince: 62, want: -1, wantMode: ModeProxy, wantWait: WaitGracePeriod, wantRecheck: 3 * time.Second},
			// Like Knative: idle for the grace period with the activator confirmed in the path is enough.
			{at: 90, d: valid(0), ready: 1, activatorSince: 62, want: 0, wantMode: ModeProxy, wantReasonHas: "idle: scale to zero"},
			{at: 92, d: valid(0), ready: 0, activatorSince: 62, want: 0, wantMode: ModeProxy},
		},
	}, {
		name: "activator in the path long before: fast path to zero once inactive",
		cfg:  revision(t, 0, "target-burst-capacity", "-1"),
		st:   BoundState{Initialized: true, ActiveSince: at(-120)},
		ticks: []boundTick{
			{at: 0, d: valid(0), ready: 1, activatorSince: -100, want: 0, wantMode: ModeProxy},
		},
	}, {
		name: "pod retention period keeps the last instance longer than the grace period",
		cfg:  revision(t, 0, "scale-to-zero-pod-retention-period", "90s"),
		st:   BoundState{Initialized: true, ActiveSince: at(-120)},
		ticks: []boundTick{
			{at: 0, d: valid(0), ready: 1, activatorSince: no, want: -1, wantMode: ModeProxy, wantWait: WaitActivator},
			{at: 40, d: valid(0), ready: 1, activatorSince: 1, want: -1, wantMode: ModeProxy, wantWait: WaitPodRetention, wantRecheck: 50 * time.Second},
			{at: 90, d: valid(0), ready: 1, activatorSince: 1, want: 0, wantMode: ModeProxy},
		},
	}, {
		name: "traffic back while going idle: active again, the stable window restarts",
		cfg:  Defaults(),
		st:   BoundState{Initialized: true, ActiveSince: at(-120)},
		ticks: []boundTick{
			{at: 0, d: valid(0), ready: 1, activatorSince: no, want: -1, wantMode: ModeProxy, wantWait: WaitActivator},
			{at: 5, d: valid(1), ready: 1, activatorSince: 3, want: 1, wantMode: ModeServe},
			{at: 10, d: valid(0), ready: 1, activatorSince: no, want: 1, wantMode: ModeServe, wantWait: WaitStableWindow, wantRecheck: 55 * time.Second},
		},
	}, {
		name: "enable-scale-to-zero false keeps one",
		cfg:  func() Config { c := Defaults(); c.EnableScaleToZero = false; return c }(),
		st:   BoundState{Initialized: true, ActiveSince: at(-120)},
		ticks: []boundTick{
			{at: 0, d: valid(0), ready: 1, activatorSince: 0, want: 1, wantMode: ModeServe, wantReasonHas: "scale to zero disabled"},
		},
	}, {
		name: "initial-scale 0 never starts an instance",
		cfg:  func() Config { c := Defaults(); c.AllowZeroInitialScale, c.InitialScale = true, 0; return c }(),
		ticks: []boundTick{
			{at: 0, d: noData, ready: 0, activatorSince: no, want: -1, wantMode: ModeProxy, wantReasonHas: "no metrics yet"},
			{at: 2, d: valid(0), ready: 0, activatorSince: no, want: 0, wantMode: ModeProxy, wantReasonHas: "idle at zero"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runBound(t, tt.cfg, tt.st, tt.ticks) })
	}
}

func TestBoundMode(t *testing.T) {
	tests := []struct {
		name  string
		tbc   string
		ebc   int32
		ready int32
		want  Mode
	}{
		{"negative excess burst capacity keeps the activator", "211", -5, 3, ModeProxy},
		{"enough capacity serves directly", "211", 0, 3, ModeServe},
		{"no ready instance needs the activator", "211", 50, 0, ModeProxy},
		{"target-burst-capacity 0 serves whenever an instance is ready", "0", 0, 1, ModeServe},
		{"target-burst-capacity 0 at zero", "0", 0, 0, ModeProxy},
		{"target-burst-capacity -1 always proxies", "-1", -1, 10, ModeProxy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := revision(t, 0, "target-burst-capacity", tt.tbc)
			d := Decision{Desired: 3, Valid: true, ExcessBurstCapacity: tt.ebc}
			a, _ := Bound(cfg, d, Observed{Ready: tt.ready}, BoundState{Initialized: true}, t0)
			if a.Mode != tt.want {
				t.Errorf("mode %v, want %v", a.Mode, tt.want)
			}
		})
	}
}

// The two halves together, the way the autoscaler loop will call them: the seed's 50 requests ramp a
// revision from zero to 8, and going idle takes it back to zero through the activator.
func TestDecideAndBoundFromZeroAndBack(t *testing.T) {
	cfg := revision(t, 0, "target", "10")
	var st State
	var bs BoundState
	ready := int32(0)
	activatorSince := time.Time{}
	step := func(s int, stable, panic float64) Action {
		now := at(s)
		d, st2 := Decide(cfg, Input{StableAverage: stable, PanicAverage: panic, HasData: true, Ready: ready, Reachable: true}, st, now)
		st = st2
		a, bs2 := Bound(cfg, d, Observed{Ready: ready, ActivatorSince: activatorSince}, bs, now)
		bs = bs2
		if a.Mode == ModeProxy && activatorSince.IsZero() {
			activatorSince = now // clients acknowledge at once in this test
		} else if a.Mode == ModeServe {
			activatorSince = time.Time{}
		}
		if a.Scale >= 0 {
			ready = a.Scale // instances come up at once in this test
		}
		return a
	}
	if a := step(0, 5, 50); a.Scale != 8 || a.Mode != ModeProxy {
		t.Fatalf("from zero: %+v, want 8 in proxy mode", a)
	}
	for s := 2; s <= 120; s += 2 {
		step(s, 50, 50)
	}
	// 8 x 10 - 211 - 50 < 0: at this load the activator stays in the path with the default burst capacity.
	if a := step(122, 50, 50); a.Scale != 8 || a.Mode != ModeProxy {
		t.Fatalf("steady: %+v, want 8", a)
	}
	// Idle from t+124: the averages fall as the windows fill with zeros (60s stable, 6s panic).
	idle := func(s int, window float64) float64 { return 50 * max(0, window-float64(s-124)) / window }
	a := Action{Scale: -1}
	s := 124
	scales := []int32{}
	for ; s < 600 && a.Scale != 0; s += 2 {
		a = step(s, idle(s, 60), idle(s, 6))
		if a.Scale >= 0 && (len(scales) == 0 || scales[len(scales)-1] != a.Scale) {
			scales = append(scales, a.Scale)
		}
	}
	t.Logf("idle for %ds: scales %v, last reason %q", s-124, scales, a.Reason)
	if a.Scale != 0 {
		t.Fatalf("idle for %ds: %+v, want zero", s-124, a)
	}
	// No instance goes before the stable window has no traffic in it; then at most halving per tick.
	if s-124 < 60 {
		t.Fatalf("scaled to zero after %ds idle, before a stable window without traffic", s-124)
	}
	if want := []int32{8, 7, 6, 5, 4, 3, 2, 1, 0}; len(scales) < 4 || scales[len(scales)-1] != 0 || scales[len(scales)-2] != 1 {
		t.Fatalf("scales on the way down %v, want a descent like %v", scales, want)
	}
}
