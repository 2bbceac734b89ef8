// Package autoscaling is the autoscaling.knative.dev/* annotations of a revision template: their
// keys, the values they take, and their parsing and validation each on its own, as Knative's
// webhook checks them. Admission (routing/v1) validates with it; the autoscaler
// (autoscaler/scaling) lays what they set over its global configuration. It imports nothing
// from sluice.
package autoscaling

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Annotation keys on a revision template (spec.template.metadata.annotations), as in Knative.
const (
	AnnotationPrefix                   = "autoscaling.knative.dev/"
	ClassAnnotation                    = AnnotationPrefix + "class"
	MetricAnnotation                   = AnnotationPrefix + "metric"
	TargetAnnotation                   = AnnotationPrefix + "target"
	TargetUtilizationAnnotation        = AnnotationPrefix + "target-utilization-percentage"
	MinScaleAnnotation                 = AnnotationPrefix + "min-scale"
	MaxScaleAnnotation                 = AnnotationPrefix + "max-scale"
	InitialScaleAnnotation             = AnnotationPrefix + "initial-scale"
	ActivationScaleAnnotation          = AnnotationPrefix + "activation-scale"
	ScaleDownDelayAnnotation           = AnnotationPrefix + "scale-down-delay"
	WindowAnnotation                   = AnnotationPrefix + "window"
	PanicWindowPercentageAnnotation    = AnnotationPrefix + "panic-window-percentage"
	PanicThresholdPercentageAnnotation = AnnotationPrefix + "panic-threshold-percentage"
	TargetBurstCapacityAnnotation      = AnnotationPrefix + "target-burst-capacity"
	PodRetentionAnnotation             = AnnotationPrefix + "scale-to-zero-pod-retention-period"

	// Older spellings Knative still accepts.
	MinScaleAnnotationOld = AnnotationPrefix + "minScale"
	MaxScaleAnnotationOld = AnnotationPrefix + "maxScale"

	// ClassKPA is the only autoscaler class sluice implements.
	ClassKPA = "kpa.autoscaling.knative.dev"
	ClassHPA = "hpa.autoscaling.knative.dev"
)

// Metric is what a revision scales on.
type Metric string

const (
	// MetricConcurrency scales on requests in flight per instance (Knative's default).
	MetricConcurrency Metric = "concurrency"
	// MetricRPS scales on requests per second per instance.
	MetricRPS Metric = "rps"
)

// Limits Knative's webhook and config-autoscaler enforce; sluice enforces the same so a template that
// Knative accepts is accepted here and the other way round.
const (
	WindowMin                   = 6 * time.Second
	WindowMax                   = time.Hour
	PanicWindowPercentageMin    = 1.0
	PanicWindowPercentageMax    = 100.0
	PanicThresholdPercentageMin = 110.0
	PanicThresholdPercentageMax = 1000.0
	// TargetMin is the smallest per-instance target; it keeps desired = ceil(load / target) finite.
	TargetMin = 0.01
)

// ValidateAnnotations checks a revision template's autoscaling annotations on their own, for admission:
// each error names the annotation, the bad value and what is allowed. It does not know the global
// configuration, so it lets initial-scale 0 through: whether the operator allows it
// (allow-zero-initial-scale) is the autoscaler's to say (scaling.Config.ForRevision), and a
// revision it refuses is not Ready with why.
func ValidateAnnotations(annotations map[string]string) error {
	_, err := Parse(annotations, true)
	return err
}

// Annotations is what a revision's annotations set, one field per key; nil (an empty Metric)
// means "not set, keep the global value".
type Annotations struct {
	Metric                                            Metric
	Target, TargetUtilizationPercentage               *float64
	PanicWindowPercentage, PanicThresholdPercentage   *float64
	TargetBurstCapacity                               *float64
	MinScale, MaxScale, InitialScale, ActivationScale *int32
	ScaleDownDelay, Window, PodRetention              *time.Duration
}

// Parse reads a revision template's autoscaling annotations; every problem is reported, together.
// initial-scale 0 is accepted only with allowZeroInitialScale. Annotations under the prefix that
// it does not know are ignored, as Knative ignores them.
func Parse(a map[string]string, allowZeroInitialScale bool) (Annotations, error) {
	var o Annotations
	var errs []error
	fail := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %q %s", key, a[key], fmt.Sprintf(format, args...)))
	}

	if v, ok := a[ClassAnnotation]; ok && v != ClassKPA {
		fail(ClassAnnotation, "is not supported: sluice implements only the %s class (no HorizontalPodAutoscaler)", ClassKPA)
	}
	if v, ok := a[MetricAnnotation]; ok {
		switch Metric(v) {
		case MetricConcurrency, MetricRPS:
			o.Metric = Metric(v)
		case "cpu", "memory":
			fail(MetricAnnotation, "is not supported: it needs the %s class, sluice scales on %q or %q", ClassHPA, MetricConcurrency, MetricRPS)
		default:
			fail(MetricAnnotation, "must be %q or %q", MetricConcurrency, MetricRPS)
		}
	}

	float := func(key string, lo, hi float64, extra string) *float64 {
		v, ok := a[key]
		if !ok {
			return nil
		}
		f, err := strconv.ParseFloat(v, 64)
		switch {
		case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
			fail(key, "must be a number%s", extra)
		case f < lo || f > hi:
			if hi == math.MaxFloat64 {
				fail(key, "must be >= %g%s", lo, extra)
			} else {
				fail(key, "must be between %g and %g", lo, hi)
			}
		default:
			return &f
		}
		return nil
	}
	o.Target = float(TargetAnnotation, TargetMin, math.MaxFloat64, "")
	o.TargetUtilizationPercentage = float(TargetUtilizationAnnotation, 1, 100, "")
	o.PanicWindowPercentage = float(PanicWindowPercentageAnnotation, PanicWindowPercentageMin, PanicWindowPercentageMax, "")
	o.PanicThresholdPercentage = float(PanicThresholdPercentageAnnotation, PanicThresholdPercentageMin, PanicThresholdPercentageMax, "")
	if v, ok := a[TargetBurstCapacityAnnotation]; ok {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f == -1 {
			o.TargetBurstCapacity = &f
		} else {
			o.TargetBurstCapacity = float(TargetBurstCapacityAnnotation, 0, math.MaxFloat64, " or -1 (activator always in the path)")
		}
	}

	integer := func(key string, lo int64) *int32 {
		v, ok := a[key]
		if !ok {
			return nil
		}
		i, err := strconv.ParseInt(v, 10, 32)
		switch {
		case err != nil && errors.Is(err, strconv.ErrRange):
			fail(key, "must be between %d and %d", lo, math.MaxInt32)
		case err != nil:
			fail(key, "must be a whole number >= %d", lo)
		case i < lo:
			fail(key, "must be >= %d", lo)
		default:
			n := int32(i)
			return &n
		}
		return nil
	}
	scaleKey := func(key, old string) string {
		_, hasNew := a[key]
		_, hasOld := a[old]
		if hasNew && hasOld {
			errs = append(errs, fmt.Errorf("%s and %s are the same setting: keep only %s", key, old, key))
			return ""
		}
		if hasOld {
			return old
		}
		return key
	}
	minKey, maxKey := scaleKey(MinScaleAnnotation, MinScaleAnnotationOld), scaleKey(MaxScaleAnnotation, MaxScaleAnnotationOld)
	if minKey != "" {
		o.MinScale = integer(minKey, 0)
	}
	if maxKey != "" {
		o.MaxScale = integer(maxKey, 0)
	}
	if o.MinScale != nil && o.MaxScale != nil && *o.MaxScale != 0 && *o.MaxScale < *o.MinScale {
		errs = append(errs, fmt.Errorf("%s=%d is less than %s=%d", maxKey, *o.MaxScale, minKey, *o.MinScale))
	}
	initialMin := int64(1)
	if allowZeroInitialScale {
		initialMin = 0
	}
	o.InitialScale = integer(InitialScaleAnnotation, initialMin)
	o.ActivationScale = integer(ActivationScaleAnnotation, 1)
	if o.ActivationScale != nil && o.MaxScale != nil && *o.MaxScale != 0 && *o.ActivationScale > *o.MaxScale {
		errs = append(errs, fmt.Errorf("%s=%d is more than %s=%d", ActivationScaleAnnotation, *o.ActivationScale, maxKey, *o.MaxScale))
	}

	duration := func(key string, lo, hi time.Duration) *time.Duration {
		v, ok := a[key]
		if !ok {
			return nil
		}
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			fail(key, "must be a duration such as \"60s\"")
		case d < lo || d > hi:
			fail(key, "must be between %v and %v", lo, hi)
		case d.Truncate(time.Second) != d && key != PodRetentionAnnotation:
			// The windows are made of 1s buckets; Knative refuses sub-second precision for them too.
			fail(key, "must be whole seconds")
		default:
			return &d
		}
		return nil
	}
	o.Window = duration(WindowAnnotation, WindowMin, WindowMax)
	o.ScaleDownDelay = duration(ScaleDownDelayAnnotation, 0, WindowMax)
	o.PodRetention = duration(PodRetentionAnnotation, 0, WindowMax)

	return o, errors.Join(errs...)
}
