package scaling

import (
	"fmt"
	"time"

	"github.com/sluice-dev/sluice/routing/v1/autoscaling"
)

// ForRevision applies a revision's autoscaling annotations (read by autoscaling.Parse) and its
// containerConcurrency on top of c (normally Defaults, or the operator's global config). All
// problems are reported together.
func (c Config) ForRevision(annotations map[string]string, containerConcurrency int64) (Config, error) {
	if containerConcurrency < 0 {
		return c, fmt.Errorf("containerConcurrency %d must be >= 0", containerConcurrency)
	}
	o, err := autoscaling.Parse(annotations, c.AllowZeroInitialScale)
	if err != nil {
		return c, err
	}
	r := c
	r.ContainerConcurrency = containerConcurrency
	if o.Metric != "" {
		r.Metric = o.Metric
	}
	setFloat(&r.Target, o.Target)
	if o.TargetUtilizationPercentage != nil {
		r.TargetUtilization = *o.TargetUtilizationPercentage / 100
	}
	setInt(&r.MinScale, o.MinScale)
	setInt(&r.MaxScale, o.MaxScale)
	setInt(&r.InitialScale, o.InitialScale)
	setInt(&r.ActivationScale, o.ActivationScale)
	setDuration(&r.ScaleDownDelay, o.ScaleDownDelay)
	setDuration(&r.StableWindow, o.Window)
	setFloat(&r.PanicWindowPercentage, o.PanicWindowPercentage)
	setFloat(&r.PanicThresholdPercentage, o.PanicThresholdPercentage)
	setFloat(&r.TargetBurstCapacity, o.TargetBurstCapacity)
	setDuration(&r.ScaleToZeroPodRetentionPeriod, o.PodRetention)
	// Global bounds can clash with a revision's (a global max-scale under the annotation's min-scale,
	// activation-scale over max-scale); say so rather than pick one silently.
	if err := r.Validate(); err != nil {
		return c, fmt.Errorf("autoscaling annotations with the global configuration: %w", err)
	}
	return r, nil
}

func setFloat(dst *float64, v *float64) {
	if v != nil {
		*dst = *v
	}
}

func setInt(dst *int32, v *int32) {
	if v != nil {
		*dst = *v
	}
}

func setDuration(dst *time.Duration, v *time.Duration) {
	if v != nil {
		*dst = *v
	}
}
