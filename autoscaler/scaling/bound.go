package scaling

import (
	"fmt"
	"time"
)

// Mode is where the data path of a revision points.
type Mode int

const (
	// ModeServe sends traffic straight to the revision's instances.
	ModeServe Mode = iota
	// ModeProxy sends traffic to the activator, which buffers it and load-balances to the instances.
	ModeProxy
)

func (m Mode) String() string {
	if m == ModeProxy {
		return "proxy"
	}
	return "serve"
}

// Wait names what Bound is waiting for before the scale can change.
type Wait int

const (
	WaitNothing Wait = iota
	// WaitStableWindow: the revision has been active for less than a stable window; it keeps one instance.
	WaitStableWindow
	// WaitActivator: the data path has to be flipped to the activator (Mode is ModeProxy) and the
	// clients have to acknowledge it before the last instance can go.
	WaitActivator
	// WaitPodRetention: scale-to-zero-pod-retention-period has not passed since the revision went idle.
	WaitPodRetention
	// WaitGracePeriod: the activator has not been in the path for scale-to-zero-grace-period yet.
	WaitGracePeriod
)

func (w Wait) String() string {
	switch w {
	case WaitStableWindow:
		return "stable-window"
	case WaitActivator:
		return "activator"
	case WaitPodRetention:
		return "pod-retention"
	case WaitGracePeriod:
		return "grace-period"
	}
	return "nothing"
}

// Observed is what Bound needs to know about the revision's instances and data path.
type Observed struct {
	Ready int32
	// ActivatorSince is when every client acknowledged a data path that points only at the activator;
	// zero when it does not (yet). Knative probes the activator for this; sluice knows it from xDS acks.
	ActivatorSince time.Time
}

// BoundState is what Bound remembers between ticks of one revision. The zero value is a revision that
// never had an instance.
type BoundState struct {
	// ActiveSince is when the revision last went from wanting zero instances to wanting some.
	ActiveSince time.Time
	// InactiveSince is when it decided to go to zero; zero while active.
	InactiveSince time.Time
	// Initialized is set once the revision had initial-scale instances ready; until then it asks for
	// at least initial-scale.
	Initialized bool
}

// Action is what to do with a revision's scale and data path.
type Action struct {
	// Scale is the number of instances to run; -1 leaves the scale as it is.
	Scale int32
	// Mode is where the data path should point.
	Mode Mode
	// Wait is what keeps the scale from changing, with RecheckAfter how long at most until it may
	// (0: nothing time-bound; the next tick decides).
	Wait         Wait
	RecheckAfter time.Duration
	// Reason explains the outcome for `sluice get revisions`.
	Reason string
}

// Bound turns a decision into an action, like the KPA reconciler's scaler: initial-scale until the
// revision first has that many ready, min/max-scale, activation-scale, then scale to zero only after the
// revision has been active for a stable window, the data path points at the activator, and the grace
// period (and pod retention period) have passed.
func Bound(cfg Config, d Decision, obs Observed, st BoundState, now time.Time) (Action, BoundState) {
	if !st.Initialized && obs.Ready >= cfg.InitialScale {
		st.Initialized = true
	}
	mode := ModeServe
	if cfg.TargetBurstCapacity == -1 || obs.Ready == 0 || d.ExcessBurstCapacity < 0 {
		mode = ModeProxy
	}

	desired, reason := d.Desired, d.Reason
	switch {
	case !d.Valid && st.Initialized:
		return Action{Scale: -1, Mode: mode, Reason: reason}, st
	case !d.Valid:
		desired, reason = cfg.InitialScale, fmt.Sprintf("initial-scale %d", cfg.InitialScale)
	case !st.Initialized && desired < cfg.InitialScale:
		desired, reason = cfg.InitialScale, fmt.Sprintf("initial-scale %d (%s)", cfg.InitialScale, reason)
	}
	if desired < cfg.MinScale {
		desired, reason = cfg.MinScale, fmt.Sprintf("min-scale %d (%s)", cfg.MinScale, reason)
	}
	if cfg.MaxScale != 0 && desired > cfg.MaxScale {
		desired, reason = cfg.MaxScale, fmt.Sprintf("max-scale %d (%s)", cfg.MaxScale, reason)
	}
	if desired > 0 && desired < cfg.ActivationScale {
		desired, reason = cfg.ActivationScale, fmt.Sprintf("activation-scale %d (%s)", cfg.ActivationScale, reason)
	}

	if desired > 0 {
		if st.ActiveSince.IsZero() || !st.InactiveSince.IsZero() {
			st.ActiveSince, st.InactiveSince = now, time.Time{}
		}
		return Action{Scale: desired, Mode: mode, Reason: reason}, st
	}

	// The revision wants zero instances.
	if !cfg.EnableScaleToZero {
		return Action{Scale: 1, Mode: mode, Reason: "scale to zero disabled (" + reason + ")"}, st
	}
	if st.ActiveSince.IsZero() && obs.Ready == 0 {
		// Never active: nothing to drain, and the activator is already what it must point at.
		return Action{Scale: 0, Mode: ModeProxy, Reason: "idle at zero"}, st
	}
	if st.InactiveSince.IsZero() {
		if active := now.Sub(st.ActiveSince); !st.ActiveSince.IsZero() && active < cfg.StableWindow {
			left := cfg.StableWindow - active
			return Action{Scale: 1, Mode: mode, Wait: WaitStableWindow, RecheckAfter: left,
				Reason: fmt.Sprintf("idle: keeping 1 until active for the stable window (%v left)", left.Round(100*time.Millisecond))}, st
		}
		st.InactiveSince = now
	}

	// Inactive: the activator must be in the path before the last instance goes.
	keep := Action{Scale: -1, Mode: ModeProxy}
	if obs.ActivatorSince.IsZero() {
		keep.Wait, keep.Reason = WaitActivator, "idle: waiting for clients to send to the activator"
		return keep, st
	}
	grace, retention := cfg.ScaleToZeroGracePeriod, cfg.ScaleToZeroPodRetentionPeriod
	inactive := now.Sub(st.InactiveSince)
	if inactive >= max(grace, retention) {
		return Action{Scale: 0, Mode: ModeProxy, Reason: "idle: scale to zero"}, st
	}
	if retention > 0 && inactive < retention {
		keep.Wait, keep.RecheckAfter = WaitPodRetention, retention-inactive
		keep.Reason = fmt.Sprintf("idle: pod retention period, %v left", keep.RecheckAfter.Round(100*time.Millisecond))
		return keep, st
	}
	// The activator may have been in the path since before the revision went idle (a negative excess
	// burst capacity, or target-burst-capacity -1): the grace period counts from then.
	if left := grace - now.Sub(obs.ActivatorSince); left > 0 {
		keep.Wait, keep.RecheckAfter = WaitGracePeriod, left
		keep.Reason = fmt.Sprintf("idle: activator in the path, grace period %v left", left.Round(100*time.Millisecond))
		return keep, st
	}
	return Action{Scale: 0, Mode: ModeProxy, Reason: "idle: scale to zero"}, st
}
