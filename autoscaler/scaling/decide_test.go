package scaling

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/routing/v1/autoscaling"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// revision builds a per-revision Config the way the autoscaler will: global defaults plus annotations.
func revision(t *testing.T, cc int64, annotations ...string) Config {
	t.Helper()
	a := map[string]string{}
	for i := 0; i+1 < len(annotations); i += 2 {
		a[autoscaling.AnnotationPrefix+annotations[i]] = annotations[i+1]
	}
	cfg, err := Defaults().ForRevision(a, cc)
	if err != nil {
		t.Fatalf("ForRevision(%v, %d): %v", a, cc, err)
	}
	return cfg
}

type tick struct {
	at            int // seconds after t0
	stable, panic float64
	noData        bool
	ready         int32
	unreachable   bool

	want          int32
	wantPanic     bool
	wantValid     bool // checked only when want == -1
	wantReasonHas string
}

func runTicks(t *testing.T, cfg Config, st State, ticks []tick) {
	t.Helper()
	for i, tk := range ticks {
		in := Input{StableAverage: tk.stable, PanicAverage: tk.panic, HasData: !tk.noData, Ready: tk.ready, Reachable: !tk.unreachable}
		var d Decision
		d, st = Decide(cfg, in, st, at(tk.at))
		if d.Desired != tk.want || d.Panicking != tk.wantPanic || d.Valid != (tk.want >= 0) {
			t.Errorf("tick %d (t+%ds %+v): got desired %d panicking %v valid %v (%q), want %d panicking %v",
				i, tk.at, in, d.Desired, d.Panicking, d.Valid, d.Reason, tk.want, tk.wantPanic)
		}
		if tk.wantReasonHas != "" && !strings.Contains(d.Reason, tk.wantReasonHas) {
			t.Errorf("tick %d: reason %q does not contain %q", i, d.Reason, tk.wantReasonHas)
		}
	}
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		start State
		ticks []tick
	}{{
		// The seed article: 50 concurrent requests, target 10, 70% utilization.
		name: "seed example settles at ceil(50/(10*0.7)) = 8",
		cfg:  revision(t, 0, "target", "10"),
		ticks: []tick{
			{at: 0, stable: 50, panic: 50, ready: 8, want: 8, wantReasonHas: "stable: 50 concurrent / target 7 = 8"},
		},
	}, {
		name: "stable scale up below the panic threshold",
		cfg:  revision(t, 0, "target", "10"),
		ticks: []tick{
			{at: 0, stable: 21, panic: 21, ready: 2, want: 3, wantReasonHas: "stable: 21 concurrent / target 7 = 3"},
		},
	}, {
		name: "the seed's ramp from one instance panics straight to 8",
		cfg:  revision(t, 0, "target", "10"),
		ticks: []tick{
			{at: 0, stable: 5, panic: 50, ready: 1, want: 8, wantPanic: true, wantReasonHas: "panic: 50 concurrent / target 7 = 8"},
		},
	}, {
		name: "panic entry, no scale-down while panicking, extension, exit one stable window after the last tick over",
		cfg:  revision(t, 0, "target", "10"),
		ticks: []tick{
			{at: 0, stable: 7, panic: 35, ready: 2, want: 5, wantPanic: true},
			{at: 2, stable: 7, panic: 7, ready: 5, want: 5, wantPanic: true, wantReasonHas: "holding 5"},
			{at: 30, stable: 14, panic: 70, ready: 5, want: 10, wantPanic: true}, // 10/5 >= 2: extends to t+30
			{at: 80, stable: 7, panic: 7, ready: 10, want: 10, wantPanic: true},  // 30+60 > 80
			{at: 90, stable: 7, panic: 7, ready: 10, want: 10, wantPanic: true},  // not before: still panicking
			{at: 91, stable: 7, panic: 7, ready: 10, want: 5, wantReasonHas: "max scale-down rate 2"},
		},
	}, {
		name: "in panic the stable count wins when it is larger",
		cfg:  revision(t, 0, "target", "10"),
		ticks: []tick{
			{at: 0, stable: 70, panic: 29, ready: 2, want: 10, wantPanic: true}, // ceil(29/7)=5, 5/2 >= 2
		},
	}, {
		name: "max scale-up rate",
		cfg: func() Config {
			c := revision(t, 0, "target", "10", "panic-threshold-percentage", "1000")
			c.MaxScaleUpRate = 2
			return c
		}(),
		ticks: []tick{
			{at: 0, stable: 70, panic: 70, ready: 2, want: 4, wantReasonHas: "max scale-up rate 2"},
			// Zero ready counts as one: up to ceil(2 x 1), and 10/1 is over the 1000% threshold.
			{at: 2, stable: 70, panic: 70, ready: 0, want: 2, wantPanic: true},
		},
	}, {
		name: "max scale-down rate halves per tick while reachable, unreachable drops at once",
		cfg:  Defaults(),
		ticks: []tick{
			{at: 0, stable: 0, panic: 0, ready: 10, want: 5},
			{at: 2, stable: 0, panic: 0, ready: 5, want: 2},
			{at: 4, stable: 0, panic: 0, ready: 1, want: 0},
			{at: 6, stable: 0, panic: 0, ready: 10, unreachable: true, want: 0},
		},
	}, {
		name: "rps metric uses requests-per-second-target-default 200 at 70%",
		cfg:  revision(t, 0, "metric", "rps"),
		ticks: []tick{
			{at: 0, stable: 300, panic: 300, ready: 3, want: 3, wantReasonHas: "stable: 300 rps / target 140 = 3"},
		},
	}, {
		name: "rps ignores containerConcurrency",
		cfg:  revision(t, 1, "metric", "rps", "target", "10"),
		ticks: []tick{
			{at: 0, stable: 70, panic: 70, ready: 10, want: 10},
		},
	}, {
		name: "containerConcurrency replaces the default target",
		cfg:  revision(t, 10),
		ticks: []tick{
			{at: 0, stable: 50, panic: 50, ready: 8, want: 8},
		},
	}, {
		name: "containerConcurrency caps a larger target annotation",
		cfg:  revision(t, 10, "target", "50"),
		ticks: []tick{
			{at: 0, stable: 50, panic: 50, ready: 8, want: 8},
		},
	}, {
		name: "a target annotation under containerConcurrency wins",
		cfg:  revision(t, 10, "target", "5"),
		ticks: []tick{
			{at: 0, stable: 50, panic: 50, ready: 15, want: 15}, // 50 / 3.5 = 14.3
		},
	}, {
		name: "target-utilization-percentage",
		cfg:  revision(t, 0, "target", "10", "target-utilization-percentage", "100"),
		ticks: []tick{
			{at: 0, stable: 50, panic: 50, ready: 5, want: 5},
		},
	}, {
		name: "scale-down delay holds the highest count of the last delay",
		cfg:  revision(t, 0, "target", "10", "scale-down-delay", "10s"),
		ticks: []tick{
			{at: 0, stable: 35, panic: 35, ready: 5, want: 5},
			{at: 2, stable: 7, panic: 7, ready: 5, want: 5, wantReasonHas: "scale-down delay 10s holds 5"},
			{at: 9, stable: 7, panic: 7, ready: 5, want: 5},
			{at: 10, stable: 7, panic: 7, ready: 5, want: 2}, // the 5 from t0 is out of (t+0, t+10]
			{at: 12, stable: 21, panic: 21, ready: 2, want: 3},
		},
	}, {
		name: "no data is no decision",
		cfg:  Defaults(),
		ticks: []tick{
			{at: 0, noData: true, ready: 1, want: -1},
		},
	}, {
		name:  "a restart with instances starts in panic and does not scale down",
		cfg:   Defaults(),
		start: StartState(3, t0),
		ticks: []tick{
			{at: 2, stable: 0, panic: 0, ready: 3, want: 3, wantPanic: true},
			{at: 61, stable: 0, panic: 0, ready: 3, want: 1}, // panic over: floor(3/2) = 1
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runTicks(t, tt.cfg, tt.start, tt.ticks) })
	}
}

func TestDecideLeavesCallerStateAlone(t *testing.T) {
	cfg := revision(t, 0, "scale-down-delay", "10s")
	_, st := Decide(cfg, Input{StableAverage: 700, PanicAverage: 700, HasData: true, Ready: 10, Reachable: true}, State{}, at(0))
	before := append([]sample(nil), st.delay...)
	Decide(cfg, Input{StableAverage: 0, HasData: true, Ready: 10, Reachable: true}, st, at(20))
	if len(st.delay) != len(before) || st.delay[0] != before[0] {
		t.Fatalf("Decide changed the caller's state: %v, was %v", st.delay, before)
	}
}

func TestExcessBurstCapacity(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		in    Input
		want  int32
		valid bool
	}{
		{"default 211: 3 x 100 - 211 - 50", Defaults(), Input{PanicAverage: 50, HasData: true, Ready: 3}, 39, true},
		{"one instance cannot cover 211", Defaults(), Input{HasData: true, Ready: 1}, -111, true},
		{"containerConcurrency is the capacity", revision(t, 10, "target-burst-capacity", "5"), Input{PanicAverage: 12, HasData: true, Ready: 2}, 3, true},
		{"0: only at zero", revision(t, 0, "target-burst-capacity", "0"), Input{PanicAverage: 500, HasData: true, Ready: 1}, 0, true},
		{"-1: always", revision(t, 0, "target-burst-capacity", "-1"), Input{HasData: true, Ready: 100}, -1, true},
		{"no data still says whether the instances cover the burst", Defaults(), Input{Ready: 3}, 89, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := Decide(tt.cfg, tt.in, State{}, t0)
			if d.ExcessBurstCapacity != tt.want || d.Valid != tt.valid {
				t.Errorf("EBC %d valid %v, want %d valid %v", d.ExcessBurstCapacity, d.Valid, tt.want, tt.valid)
			}
		})
	}
}
