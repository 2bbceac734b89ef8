// Package scaling is Knative's KPA decision as pure functions: the global autoscaler configuration and its
// per-revision annotations laid over it (Config, ForRevision; the annotations' keys, limits and parsing
// are routing/v1/autoscaling's, which admission shares), the per-tick decision of how many
// instances a revision wants (Decide, modelled on knative.dev/serving pkg/autoscaler/scaling), and the
// bounds and scale-to-zero gating applied to that decision (Bound, modelled on the KPA reconciler's scaler).
//
// Nothing here reads a clock or keeps hidden state: every function takes `now` and returns the state the
// caller keeps for the next tick, so the behaviour is reproducible in table tests.
package scaling

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sluice-dev/sluice/routing/v1/autoscaling"
)

// BucketSize is the granularity of the metric windows; the panic window is never shorter.
const BucketSize = time.Second

// Config is every knob of the KPA for one revision (or, from Defaults, the global ones).
type Config struct {
	Metric autoscaling.Metric
	// Target is the per-instance value of Metric aimed at before utilization, from the target
	// annotation; 0 means "not set": the metric's default, or containerConcurrency when that is set.
	Target                   float64
	ConcurrencyTargetDefault float64 // container-concurrency-target-default
	RPSTargetDefault         float64 // requests-per-second-target-default
	TargetUtilization        float64 // fraction in (0, 1]; the annotation is a percentage
	ContainerConcurrency     int64   // the revision's hard limit per instance; 0 = unlimited

	MinScale        int32 // 0 = may scale to zero
	MaxScale        int32 // 0 = unbounded
	InitialScale    int32 // instances a new revision starts with before it has metrics
	ActivationScale int32 // at least this many instances whenever it is not at zero
	// AllowZeroInitialScale lets initial-scale be 0 (Knative's allow-zero-initial-scale, default false).
	AllowZeroInitialScale bool

	StableWindow             time.Duration
	PanicWindowPercentage    float64 // panic window = StableWindow × this / 100
	PanicThresholdPercentage float64 // panic when desired-by-panic-window / ready ≥ this / 100
	MaxScaleUpRate           float64
	MaxScaleDownRate         float64

	// TargetBurstCapacity is the spare capacity (in Metric units) below which the activator stays in the
	// data path. 0 = the activator is only in the path at zero; -1 = always in the path.
	TargetBurstCapacity float64
	ActivatorCapacity   float64

	ScaleToZeroGracePeriod        time.Duration
	ScaleToZeroPodRetentionPeriod time.Duration
	ScaleDownDelay                time.Duration
	EnableScaleToZero             bool
}

// Defaults returns Knative's global config-autoscaler defaults.
func Defaults() Config {
	return Config{
		Metric:                   autoscaling.MetricConcurrency,
		ConcurrencyTargetDefault: 100,
		RPSTargetDefault:         200,
		TargetUtilization:        0.7,
		InitialScale:             1,
		ActivationScale:          1,
		StableWindow:             60 * time.Second,
		PanicWindowPercentage:    10,
		PanicThresholdPercentage: 200,
		MaxScaleUpRate:           1000,
		MaxScaleDownRate:         2,
		TargetBurstCapacity:      211,
		ActivatorCapacity:        100,
		ScaleToZeroGracePeriod:   30 * time.Second,
		EnableScaleToZero:        true,
	}
}

// Targets resolves what the autoscaler aims at per instance (target, after utilization) and the most
// one instance can take (total), like Knative's ResolveMetricTarget: for concurrency, containerConcurrency
// replaces the default target and caps an annotation target above it; rps ignores containerConcurrency.
func (c Config) Targets() (target, total float64) {
	if c.Metric == autoscaling.MetricRPS {
		total = c.RPSTargetDefault
	} else {
		total = float64(c.ContainerConcurrency)
		if total == 0 {
			total = c.ConcurrencyTargetDefault
		}
	}
	if c.Target > 0 {
		total = c.Target
		if c.Metric != autoscaling.MetricRPS && c.ContainerConcurrency > 0 {
			total = math.Min(c.Target, float64(c.ContainerConcurrency))
		}
	}
	return math.Max(autoscaling.TargetMin, total*c.TargetUtilization), total
}

// PanicWindow is the stable window scaled by the panic window percentage, in whole buckets, at least one.
func (c Config) PanicWindow() time.Duration {
	w := time.Duration(float64(c.StableWindow) * c.PanicWindowPercentage / 100).Truncate(BucketSize)
	return max(w, BucketSize)
}

// Validate checks a global configuration, with the ranges Knative's config-autoscaler enforces.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Metric != autoscaling.MetricConcurrency && c.Metric != autoscaling.MetricRPS {
		bad("metric %q must be %q or %q", c.Metric, autoscaling.MetricConcurrency, autoscaling.MetricRPS)
	}
	if c.Target < 0 || (c.Target > 0 && c.Target < autoscaling.TargetMin) {
		bad("target %g must be 0 (default) or >= %g", c.Target, autoscaling.TargetMin)
	}
	if c.ConcurrencyTargetDefault < autoscaling.TargetMin {
		bad("container-concurrency-target-default %g must be >= %g", c.ConcurrencyTargetDefault, autoscaling.TargetMin)
	}
	if c.RPSTargetDefault < autoscaling.TargetMin {
		bad("requests-per-second-target-default %g must be >= %g", c.RPSTargetDefault, autoscaling.TargetMin)
	}
	if c.TargetUtilization <= 0 || c.TargetUtilization > 1 {
		bad("target utilization %g must be in (0, 1]", c.TargetUtilization)
	}
	if c.ContainerConcurrency < 0 {
		bad("containerConcurrency %d must be >= 0", c.ContainerConcurrency)
	}
	if c.MinScale < 0 || c.MaxScale < 0 {
		bad("min-scale %d and max-scale %d must be >= 0", c.MinScale, c.MaxScale)
	}
	if c.MaxScale != 0 && c.MaxScale < c.MinScale {
		bad("max-scale %d is less than min-scale %d", c.MaxScale, c.MinScale)
	}
	if c.InitialScale < 0 || (c.InitialScale == 0 && !c.AllowZeroInitialScale) {
		bad("initial-scale %d must be >= 1 (or 0 with allow-zero-initial-scale)", c.InitialScale)
	}
	if c.ActivationScale < 1 {
		bad("activation-scale %d must be >= 1", c.ActivationScale)
	}
	if c.MaxScale != 0 && c.ActivationScale > c.MaxScale {
		bad("activation-scale %d is more than max-scale %d", c.ActivationScale, c.MaxScale)
	}
	if c.StableWindow < autoscaling.WindowMin || c.StableWindow > autoscaling.WindowMax || c.StableWindow.Truncate(time.Second) != c.StableWindow {
		bad("stable window %v must be whole seconds between %v and %v", c.StableWindow, autoscaling.WindowMin, autoscaling.WindowMax)
	}
	if c.PanicWindowPercentage < autoscaling.PanicWindowPercentageMin || c.PanicWindowPercentage > autoscaling.PanicWindowPercentageMax {
		bad("panic-window-percentage %g must be between %g and %g", c.PanicWindowPercentage, autoscaling.PanicWindowPercentageMin, autoscaling.PanicWindowPercentageMax)
	}
	if c.PanicThresholdPercentage < autoscaling.PanicThresholdPercentageMin || c.PanicThresholdPercentage > autoscaling.PanicThresholdPercentageMax {
		bad("panic-threshold-percentage %g must be between %g and %g", c.PanicThresholdPercentage, autoscaling.PanicThresholdPercentageMin, autoscaling.PanicThresholdPercentageMax)
	}
	if c.MaxScaleUpRate <= 1 {
		bad("max-scale-up-rate %g must be > 1", c.MaxScaleUpRate)
	}
	if c.MaxScaleDownRate <= 1 {
		bad("max-scale-down-rate %g must be > 1", c.MaxScaleDownRate)
	}
	if c.TargetBurstCapacity < 0 && c.TargetBurstCapacity != -1 {
		bad("target-burst-capacity %g must be >= 0 or -1", c.TargetBurstCapacity)
	}
	if c.ActivatorCapacity < 1 {
		bad("activator-capacity %g must be >= 1", c.ActivatorCapacity)
	}
	if c.ScaleToZeroGracePeriod < 0 {
		bad("scale-to-zero-grace-period %v must be >= 0", c.ScaleToZeroGracePeriod)
	}
	if c.ScaleToZeroPodRetentionPeriod < 0 || c.ScaleToZeroPodRetentionPeriod > autoscaling.WindowMax {
		bad("scale-to-zero-pod-retention-period %v must be between 0s and %v", c.ScaleToZeroPodRetentionPeriod, autoscaling.WindowMax)
	}
	if c.ScaleDownDelay < 0 || c.ScaleDownDelay > autoscaling.WindowMax || c.ScaleDownDelay.Truncate(time.Second) != c.ScaleDownDelay {
		bad("scale-down-delay %v must be whole seconds between 0s and %v", c.ScaleDownDelay, autoscaling.WindowMax)
	}
	return errors.Join(errs...)
}
