package scaling

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

// ValidateAnnotations checks a revision template's autoscaling annotations on their own, for admission:
// each error names the annotation, the bad value and what is allowed. It does not know the global
// configuration, so it lets initial-scale 0 through: whether the operator allows it
// (allow-zero-initial-scale) is ForRevision's to say, and a revision it refuses is not Ready with why.
func ValidateAnnotations(annotations map[string]string) error {
	_, err := parseAnnotations(annotations, true)
	return err
}

// ForRevision applies a revision's autoscaling annotations and its containerConcurrency on top of c
// (normally Defaults, or the operator's global config). All problems are reported together.
func (c Config) ForRevision(annotations map[string]string, containerConcurrency int64) (Config, error) {
	if containerConcurrency < 0 {
		return c, fmt.Errorf("containerConcurrency %d must be >= 0", containerConcurrency)
	}
	o, err := parseAnnotations(annotations, c.AllowZeroInitialScale)
	if err != nil {
		return c, err
	}
	r := c
	r.ContainerConcurrency = containerConcurrency
	if o.metric != "" {
		r.Metric = o.metric
	}
	setFloat(&r.Target, o.target)
	if o.utilizationPct != nil {
		r.TargetUtilization = *o.utilizationPct / 100
	}
	setInt(&r.MinScale, o.minScale)
	setInt(&r.MaxScale, o.maxScale)
	setInt(&r.InitialScale, o.initialScale)
	setInt(&r.ActivationScale, o.activationScale)
	setDuration(&r.ScaleDownDelay, o.scaleDownDelay)
	setDuration(&r.StableWindow, o.window)
	setFloat(&r.PanicWindowPercentage, o.panicWindowPct)
	setFloat(&r.PanicThresholdPercentage, o.panicThresholdPct)
	setFloat(&r.TargetBurstCapacity, o.targetBurstCapacity)
	setDuration(&r.ScaleToZeroPodRetentionPeriod, o.podRetention)
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

// overlay is what a revision's annotations set; nil means "not set, keep the global value".
type overlay struct {
	metric                                                 Metric
	target, utilizationPct                                 *float64
	panicWindowPct, panicThresholdPct, targetBurstCapacity *float64
	minScale, maxScale, initialScale, activationScale      *int32
	scaleDownDelay, window, podRetention                   *time.Duration
}

func parseAnnotations(a map[string]string, allowZeroInitialScale bool) (overlay, error) {
	var o overlay
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
			o.metric = Metric(v)
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
	o.target = float(TargetAnnotation, TargetMin, math.MaxFloat64, "")
	o.utilizationPct = float(TargetUtilizationAnnotation, 1, 100, "")
	o.panicWindowPct = float(PanicWindowPercentageAnnotation, PanicWindowPercentageMin, PanicWindowPercentageMax, "")
	o.panicThresholdPct = float(PanicThresholdPercentageAnnotation, PanicThresholdPercentageMin, PanicThresholdPercentageMax, "")
	if v, ok := a[TargetBurstCapacityAnnotation]; ok {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f == -1 {
			o.targetBurstCapacity = &f
		} else {
			o.targetBurstCapacity = float(TargetBurstCapacityAnnotation, 0, math.MaxFloat64, " or -1 (activator always in the path)")
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
		o.minScale = integer(minKey, 0)
	}
	if maxKey != "" {
		o.maxScale = integer(maxKey, 0)
	}
	if o.minScale != nil && o.maxScale != nil && *o.maxScale != 0 && *o.maxScale < *o.minScale {
		errs = append(errs, fmt.Errorf("%s=%d is less than %s=%d", maxKey, *o.maxScale, minKey, *o.minScale))
	}
	initialMin := int64(1)
	if allowZeroInitialScale {
		initialMin = 0
	}
	o.initialScale = integer(InitialScaleAnnotation, initialMin)
	o.activationScale = integer(ActivationScaleAnnotation, 1)
	if o.activationScale != nil && o.maxScale != nil && *o.maxScale != 0 && *o.activationScale > *o.maxScale {
		errs = append(errs, fmt.Errorf("%s=%d is more than %s=%d", ActivationScaleAnnotation, *o.activationScale, maxKey, *o.maxScale))
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
	o.window = duration(WindowAnnotation, WindowMin, WindowMax)
	o.scaleDownDelay = duration(ScaleDownDelayAnnotation, 0, WindowMax)
	o.podRetention = duration(PodRetentionAnnotation, 0, WindowMax)

	return o, errors.Join(errs...)
}
