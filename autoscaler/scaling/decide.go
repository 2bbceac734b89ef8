package scaling

import (
	"fmt"
	"math"
	"time"

	"github.com/sluice-dev/sluice/routing/v1/autoscaling"
)

// Input is what the autoscaler observed for one revision at one tick.
type Input struct {
	// StableAverage and PanicAverage are the averages of the revision's Metric (total over all
	// instances) over the stable and the panic window.
	StableAverage, PanicAverage float64
	// HasData is false when the windows hold no sample at all; the decision is then "no decision".
	HasData bool
	// Ready is the number of ready instances.
	Ready int32
	// Reachable is false when no route sends traffic to the revision; it may then drop to zero at
	// once instead of at most halving per tick.
	Reachable bool
}

// State is what Decide remembers between ticks of one revision. The zero value is "not panicking".
type State struct {
	// PanicSince is the last tick that was over the panic threshold; zero when not panicking. Panic
	// ends one stable window after it.
	PanicSince time.Time
	// MaxPanicInstances is the most instances asked for during this panic; panic never scales down.
	MaxPanicInstances int32
	// delay holds the recent desired counts for the scale-down delay, as a monotonic queue: each entry
	// is newer and smaller than the one before it, so the front is the maximum of the window.
	delay []sample
}

type sample struct {
	at    time.Time
	value int32
}

// StartState is the state of a revision's autoscaler that starts with no history (a restart of sluice
// with instances running): like Knative it starts in panic when more than one instance is ready, so the
// lack of history does not scale it down before a stable window of data says so.
func StartState(ready int32, now time.Time) State {
	if ready > 1 {
		return State{PanicSince: now, MaxPanicInstances: ready}
	}
	return State{}
}

// Decision is the autoscaler's answer for one tick.
type Decision struct {
	// Desired is the number of instances wanted, before min/max/initial/activation scale and the
	// scale-to-zero gating (see Bound). It is -1 when Valid is false.
	Desired int32
	// Valid is false when there was no data to decide on (Knative's ScaleValid).
	Valid bool
	// ExcessBurstCapacity is the spare capacity beyond the target burst capacity; negative means the
	// activator has to stay in the data path.
	ExcessBurstCapacity int32
	Panicking           bool
	// Reason says in a few words how Desired came about, for `sluice get revisions`.
	Reason string
}

// Decide is one tick of the KPA for one revision: Knative's pkg/autoscaler/scaling Scale, without the
// clock and the metric client. It returns the decision and the state to pass to the next tick.
func Decide(cfg Config, in Input, st State, now time.Time) (Decision, State) {
	st.delay = append([]sample(nil), st.delay...) // the caller's State stays untouched
	target, total := cfg.Targets()
	ebc := excessBurstCapacity(cfg, in, total)
	if !in.HasData {
		return Decision{Desired: -1, ExcessBurstCapacity: ebc, Panicking: !st.PanicSince.IsZero(), Reason: "no metrics yet"}, st
	}

	// With zero instances the rates still have to allow the first one.
	ready := math.Max(1, float64(in.Ready))
	// Rounding up lets a conservative rate still grow by one instance.
	maxUp := math.Ceil(cfg.MaxScaleUpRate * ready)
	maxDown := 0.0
	if in.Reachable {
		maxDown = math.Floor(ready / cfg.MaxScaleDownRate)
	}
	stableWant := math.Ceil(in.StableAverage / target)
	panicWant := math.Ceil(in.PanicAverage / target)
	stableDesired := int32(math.Min(math.Max(stableWant, maxDown), maxUp))
	panicDesired := int32(math.Min(math.Max(panicWant, maxDown), maxUp))

	overThreshold := panicWant/ready >= cfg.PanicThresholdPercentage/100
	switch {
	case overThreshold:
		// Entering or extending the panic.
		st.PanicSince = now
	case !st.PanicSince.IsZero() && st.PanicSince.Add(cfg.StableWindow).Before(now):
		// The surge has had a stable window to make its way into the stable average.
		st.PanicSince, st.MaxPanicInstances = time.Time{}, 0
	}

	unit := metricUnit(cfg.Metric)
	desired := stableDesired
	reason := fmt.Sprintf("stable: %s %s / target %s = %d", num(in.StableAverage), unit, num(target), stableDesired)
	if !st.PanicSince.IsZero() {
		// The stable average can exceed the panic one (a burst that just ended): provision for both.
		desired = max(stableDesired, panicDesired)
		reason = fmt.Sprintf("panic: %s %s / target %s = %d", num(in.PanicAverage), unit, num(target), panicDesired)
		if desired > st.MaxPanicInstances {
			st.MaxPanicInstances = desired
		} else if desired < st.MaxPanicInstances {
			reason += fmt.Sprintf(", holding %d: no scale-down while panicking", st.MaxPanicInstances)
		}
		desired = st.MaxPanicInstances
	}
	if st.PanicSince.IsZero() && stableWant != float64(stableDesired) {
		if float64(stableDesired) == maxUp {
			reason += fmt.Sprintf(" (max scale-up rate %s from %d ready)", num(cfg.MaxScaleUpRate), in.Ready)
		} else {
			reason += fmt.Sprintf(" (max scale-down rate %s from %d ready)", num(cfg.MaxScaleDownRate), in.Ready)
		}
	}

	if cfg.ScaleDownDelay > 0 {
		st.delay = recordDelay(st.delay, now, cfg.ScaleDownDelay, desired)
		if held := st.delay[0].value; held != desired {
			reason += fmt.Sprintf("; scale-down delay %v holds %d", cfg.ScaleDownDelay, held)
			desired = held
		}
	} else {
		st.delay = nil
	}

	return Decision{
		Desired:             desired,
		Valid:               true,
		ExcessBurstCapacity: ebc,
		Panicking:           !st.PanicSince.IsZero(),
		Reason:              reason,
	}, st
}

// excessBurstCapacity is Knative's EBC: the capacity of the ready instances beyond the burst the
// revision must absorb and the load it carries now. It drives the activator in or out of the path.
func excessBurstCapacity(cfg Config, in Input, total float64) int32 {
	switch {
	case cfg.TargetBurstCapacity == 0:
		return 0
	case cfg.TargetBurstCapacity > 0:
		panicLoad := 0.0
		if in.HasData {
			panicLoad = in.PanicAverage
		}
		return int32(math.Floor(float64(in.Ready)*total - cfg.TargetBurstCapacity - panicLoad))
	default: // -1: the activator is always in the path
		return -1
	}
}

// recordDelay adds a desired count to the scale-down delay window and drops what fell out of it.
// Entries that can never again be the maximum (older and not larger) are dropped too, which bounds
// the queue by the number of distinct decreasing values in the window.
func recordDelay(q []sample, now time.Time, window time.Duration, v int32) []sample {
	for len(q) > 0 && q[len(q)-1].value <= v {
		q = q[:len(q)-1]
	}
	q = append(q, sample{at: now, value: v})
	start := 0
	for start < len(q)-1 && !q[start].at.After(now.Add(-window)) {
		start++
	}
	return q[start:]
}

func metricUnit(m autoscaling.Metric) string {
	if m == autoscaling.MetricRPS {
		return "rps"
	}
	return "concurrent"
}

// num prints a float as briefly as it is exact to two decimals: 50, 7, 0.35.
func num(f float64) string {
	return fmt.Sprintf("%.4g", math.Round(f*100)/100)
}
