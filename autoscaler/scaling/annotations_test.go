package scaling

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/routing/v1/autoscaling"
)

func TestForRevision(t *testing.T) {
	a := map[string]string{
		autoscaling.ClassAnnotation:                    autoscaling.ClassKPA,
		autoscaling.MetricAnnotation:                   "rps",
		autoscaling.TargetAnnotation:                   "150",
		autoscaling.TargetUtilizationAnnotation:        "80",
		autoscaling.MinScaleAnnotation:                 "1",
		autoscaling.MaxScaleAnnotation:                 "10",
		autoscaling.InitialScaleAnnotation:             "2",
		autoscaling.ActivationScaleAnnotation:          "3",
		autoscaling.ScaleDownDelayAnnotation:           "15s",
		autoscaling.WindowAnnotation:                   "120s",
		autoscaling.PanicWindowPercentageAnnotation:    "20",
		autoscaling.PanicThresholdPercentageAnnotation: "150",
		autoscaling.TargetBurstCapacityAnnotation:      "-1",
		autoscaling.PodRetentionAnnotation:             "1m30s",
		"autoscaling.knative.dev/unknown":              "ignored like Knative",
		"example.com/other":                            "x",
	}
	got, err := Defaults().ForRevision(a, 50)
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.Metric, want.Target, want.TargetUtilization, want.ContainerConcurrency = autoscaling.MetricRPS, 150, 0.8, 50
	want.MinScale, want.MaxScale, want.InitialScale, want.ActivationScale = 1, 10, 2, 3
	want.ScaleDownDelay, want.StableWindow = 15*time.Second, 120*time.Second
	want.PanicWindowPercentage, want.PanicThresholdPercentage = 20, 150
	want.TargetBurstCapacity, want.ScaleToZeroPodRetentionPeriod = -1, 90*time.Second
	if got != want {
		t.Errorf("ForRevision:\n got %+v\nwant %+v", got, want)
	}
	if w := got.PanicWindow(); w != 24*time.Second {
		t.Errorf("panic window %v, want 24s", w)
	}
	if target, total := got.Targets(); total != 150 || target != 120 {
		t.Errorf("targets %g/%g, want 120/150", target, total)
	}

	none, err := Defaults().ForRevision(nil, 0)
	if err != nil || none != Defaults() {
		t.Errorf("no annotations: %+v, %v; want the defaults", none, err)
	}
	if d := Defaults(); d.PanicWindow() != 6*time.Second {
		t.Errorf("default panic window %v, want 6s", d.PanicWindow())
	}
	if err := Defaults().Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	old, err := Defaults().ForRevision(map[string]string{autoscaling.MinScaleAnnotationOld: "2", autoscaling.MaxScaleAnnotationOld: "4"}, 0)
	if err != nil || old.MinScale != 2 || old.MaxScale != 4 {
		t.Errorf("old spellings: %+v, %v", old, err)
	}
}

func TestForRevisionAgainstGlobalConfig(t *testing.T) {
	global := Defaults()
	global.MaxScale = 3
	if _, err := global.ForRevision(map[string]string{autoscaling.MinScaleAnnotation: "5"}, 0); err == nil || !strings.Contains(err.Error(), "max-scale 3 is less than min-scale 5") {
		t.Errorf("min-scale over the global max-scale: %v", err)
	}
	global = Defaults()
	global.AllowZeroInitialScale = true
	if c, err := global.ForRevision(map[string]string{autoscaling.InitialScaleAnnotation: "0"}, 0); err != nil || c.InitialScale != 0 {
		t.Errorf("initial-scale 0 with allow-zero-initial-scale: %+v, %v", c, err)
	}
	if _, err := Defaults().ForRevision(map[string]string{autoscaling.InitialScaleAnnotation: "0"}, 0); err == nil || !strings.Contains(err.Error(), "must be >= 1") {
		t.Errorf("initial-scale 0 without allow-zero-initial-scale: %v", err)
	}
	if _, err := Defaults().ForRevision(nil, -1); err == nil {
		t.Error("negative containerConcurrency accepted")
	}
}
