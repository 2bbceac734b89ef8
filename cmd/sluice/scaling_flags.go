package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/sluice-dev/sluice/autoscaler/scaling"
	"github.com/sluice-dev/sluice/routing/v1/autoscaling"
)

// scalingFlags are Knative's config-autoscaler keys as serve flags: the global defaults that a
// revision's autoscaling.knative.dev/* annotations refine. Names and defaults are Knative's.
type scalingFlags struct {
	cfg            scaling.Config
	metric         string
	utilizationPct float64
	tick           time.Duration
}

func bindScalingFlags(f *pflag.FlagSet) *scalingFlags {
	s := &scalingFlags{cfg: scaling.Defaults()}
	c := &s.cfg
	f.StringVar(&s.metric, "autoscaling-metric", string(c.Metric), "metric revisions scale on unless annotated: concurrency or rps")
	f.Float64Var(&c.ConcurrencyTargetDefault, "container-concurrency-target-default", c.ConcurrencyTargetDefault,
		"concurrent requests per instance aimed at, for revisions with neither a target annotation nor containerConcurrency")
	f.Float64Var(&c.RPSTargetDefault, "requests-per-second-target-default", c.RPSTargetDefault, "requests per second per instance aimed at, for the rps metric")
	f.Float64Var(&s.utilizationPct, "target-utilization-percentage", c.TargetUtilization*100,
		"share of the target the autoscaler fills before adding an instance (1-100)")
	f.DurationVar(&c.StableWindow, "stable-window", c.StableWindow, "window the stable average is taken over (6s-1h, whole seconds)")
	f.Float64Var(&c.PanicWindowPercentage, "panic-window-percentage", c.PanicWindowPercentage, "panic window as a percentage of the stable window")
	f.Float64Var(&c.PanicThresholdPercentage, "panic-threshold-percentage", c.PanicThresholdPercentage,
		"panic when the panic window asks for this percentage of the ready instances")
	f.Float64Var(&c.MaxScaleUpRate, "max-scale-up-rate", c.MaxScaleUpRate, "most a tick may multiply the ready instances by")
	f.Float64Var(&c.MaxScaleDownRate, "max-scale-down-rate", c.MaxScaleDownRate, "most a tick may divide the ready instances by")
	f.Float64Var(&c.TargetBurstCapacity, "target-burst-capacity", c.TargetBurstCapacity,
		"spare capacity below which the activator stays in the data path; 0: only at zero, -1: always")
	f.Float64Var(&c.ActivatorCapacity, "activator-capacity", c.ActivatorCapacity, "concurrent requests one activator is counted for")
	f.DurationVar(&c.ScaleToZeroGracePeriod, "scale-to-zero-grace-period", c.ScaleToZeroGracePeriod,
		"how long an idle revision keeps its last instance once the activator is in its path")
	f.DurationVar(&c.ScaleToZeroPodRetentionPeriod, "scale-to-zero-pod-retention-period", c.ScaleToZeroPodRetentionPeriod,
		"how long the last instance stays after a revision went idle")
	f.DurationVar(&c.ScaleDownDelay, "scale-down-delay", c.ScaleDownDelay, "how long a lower decision must hold before instances stop")
	f.Int32Var(&c.InitialScale, "initial-scale", c.InitialScale, "instances a new revision starts with")
	f.BoolVar(&c.AllowZeroInitialScale, "allow-zero-initial-scale", c.AllowZeroInitialScale, "let revisions ask for initial-scale 0")
	f.Int32Var(&c.MinScale, "min-scale", c.MinScale, "instances every revision keeps at least (0: may scale to zero)")
	f.Int32Var(&c.MaxScale, "max-scale", c.MaxScale, "instances a revision gets at most (0: unbounded)")
	f.BoolVar(&c.EnableScaleToZero, "enable-scale-to-zero", c.EnableScaleToZero, "let idle revisions go to zero instances")
	f.DurationVar(&s.tick, "autoscaler-tick-interval", 2*time.Second, "how often every revision's scale is decided")
	return s
}

// config is the validated global configuration.
func (s *scalingFlags) config() (scaling.Config, error) {
	c := s.cfg
	c.Metric = autoscaling.Metric(s.metric)
	c.TargetUtilization = s.utilizationPct / 100
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("autoscaler flags: %w", err)
	}
	if s.tick <= 0 {
		return c, fmt.Errorf("--autoscaler-tick-interval %v must be positive", s.tick)
	}
	return c, nil
}
