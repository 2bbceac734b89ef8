package scaling

import (
	"strings"
	"testing"
	"time"
)

func TestForRevision(t *testing.T) {
	a := map[string]string{
		ClassAnnotation:                    ClassKPA,
		MetricAnnotation:                   "rps",
		TargetAnnotation:                   "150",
		TargetUtilizationAnnotation:        "80",
		MinScaleAnnotation:                 "1",
		MaxScaleAnnotation:                 "10",
		InitialScaleAnnotation:             "2",
		ActivationScaleAnnotation:          "3",
		ScaleDownDelayAnnotation:           "15s",
		WindowAnnotation:                   "120s",
		PanicWindowPercentageAnnotation:    "20",
		PanicThresholdPercentageAnnotation: "150",
		TargetBurstCapacityAnnotation:      "-1",
		PodRetentionAnnotation:             "1m30s",
		"autoscaling.knative.dev/unknown":  "ignored like Knative",
		"example.com/other":                "x",
	}
	got, err := Defaults().ForRevision(a, 50)
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.Metric, want.Target, want.TargetUtilization, want.ContainerConcurrency = MetricRPS, 150, 0.8, 50
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
	old, err := Defaults().ForRevision(map[string]string{MinScaleAnnotationOld: "2", MaxScaleAnnotationOld: "4"}, 0)
	if err != nil || old.MinScale != 2 || old.MaxScale != 4 {
		t.Errorf("old spellings: %+v, %v", old, err)
	}
}

func TestValidateAnnotations(t *testing.T) {
	tests := []struct {
		name string
		a    map[string]string
		want []string // substrings of the error; none = valid
	}{
		{"empty", nil, nil},
		{"min-scale negative", map[string]string{MinScaleAnnotation: "-1"}, []string{`autoscaling.knative.dev/min-scale: "-1" must be >= 0`}},
		{"max-scale not a number", map[string]string{MaxScaleAnnotation: "ten"}, []string{`autoscaling.knative.dev/max-scale: "ten" must be a whole number >= 0`}},
		{"max-scale over int32", map[string]string{MaxScaleAnnotation: "3000000000"}, []string{`must be between 0 and 2147483647`}},
		{"min over max", map[string]string{MinScaleAnnotation: "5", MaxScaleAnnotation: "2"}, []string{"autoscaling.knative.dev/max-scale=2 is less than autoscaling.knative.dev/min-scale=5"}},
		{"max 0 is unbounded", map[string]string{MinScaleAnnotation: "5", MaxScaleAnnotation: "0"}, nil},
		{"old spelling min over max", map[string]string{MinScaleAnnotationOld: "5", MaxScaleAnnotationOld: "2"}, []string{"autoscaling.knative.dev/maxScale=2 is less than autoscaling.knative.dev/minScale=5"}},
		{"both spellings", map[string]string{MinScaleAnnotation: "1", MinScaleAnnotationOld: "1"}, []string{"are the same setting"}},
		{"window too short", map[string]string{WindowAnnotation: "5s"}, []string{`autoscaling.knative.dev/window: "5s" must be between 6s and 1h0m0s`}},
		{"window too long", map[string]string{WindowAnnotation: "61m"}, []string{"must be between 6s and 1h0m0s"}},
		{"window sub-second", map[string]string{WindowAnnotation: "6500ms"}, []string{`"6500ms" must be whole seconds`}},
		{"window not a duration", map[string]string{WindowAnnotation: "60"}, []string{`"60" must be a duration`}},
		{"class hpa", map[string]string{ClassAnnotation: ClassHPA}, []string{`autoscaling.knative.dev/class: "hpa.autoscaling.knative.dev" is not supported: sluice implements only the kpa.autoscaling.knative.dev class`}},
		{"class kpa", map[string]string{ClassAnnotation: ClassKPA}, nil},
		{"metric cpu", map[string]string{MetricAnnotation: "cpu"}, []string{`autoscaling.knative.dev/metric: "cpu" is not supported`}},
		{"metric unknown", map[string]string{MetricAnnotation: "qps"}, []string{`"qps" must be "concurrency" or "rps"`}},
		{"target zero", map[string]string{TargetAnnotation: "0"}, []string{`autoscaling.knative.dev/target: "0" must be >= 0.01`}},
		{"target utilization 0", map[string]string{TargetUtilizationAnnotation: "0"}, []string{"must be between 1 and 100"}},
		{"target utilization 101", map[string]string{TargetUtilizationAnnotation: "101"}, []string{"must be between 1 and 100"}},
		{"panic window percentage 0", map[string]string{PanicWindowPercentageAnnotation: "0"}, []string{"must be between 1 and 100"}},
		{"panic threshold 100", map[string]string{PanicThresholdPercentageAnnotation: "100"}, []string{"must be between 110 and 1000"}},
		{"target burst capacity -2", map[string]string{TargetBurstCapacityAnnotation: "-2"}, []string{`"-2" must be >= 0 or -1`}},
		{"target burst capacity -1", map[string]string{TargetBurstCapacityAnnotation: "-1"}, nil},
		// Admission does not know whether serve allows it; ForRevision decides (see below).
		{"initial-scale 0 is for the global configuration to allow", map[string]string{InitialScaleAnnotation: "0"}, nil},
		{"activation-scale 0", map[string]string{ActivationScaleAnnotation: "0"}, []string{`"0" must be >= 1`}},
		{"activation-scale over max", map[string]string{ActivationScaleAnnotation: "4", MaxScaleAnnotation: "3"}, []string{"activation-scale=4 is more than autoscaling.knative.dev/max-scale=3"}},
		{"scale-down-delay too long", map[string]string{ScaleDownDelayAnnotation: "2h"}, []string{"must be between 0s and 1h0m0s"}},
		{"pod retention negative", map[string]string{PodRetentionAnnotation: "-1s"}, []string{"must be between 0s and 1h0m0s"}},
		{"several problems together", map[string]string{MinScaleAnnotation: "-1", WindowAnnotation: "1s"}, []string{"min-scale", "window"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateAnnotations(tt.a)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestForRevisionAgainstGlobalConfig(t *testing.T) {
	global := Defaults()
	global.MaxScale = 3
	if _, err := global.ForRevision(map[string]string{MinScaleAnnotation: "5"}, 0); err == nil || !strings.Contains(err.Error(), "max-scale 3 is less than min-scale 5") {
		t.Errorf("min-scale over the global max-scale: %v", err)
	}
	global = Defaults()
	global.AllowZeroInitialScale = true
	if c, err := global.ForRevision(map[string]string{InitialScaleAnnotation: "0"}, 0); err != nil || c.InitialScale != 0 {
		t.Errorf("initial-scale 0 with allow-zero-initial-scale: %+v, %v", c, err)
	}
	if _, err := Defaults().ForRevision(map[string]string{InitialScaleAnnotation: "0"}, 0); err == nil || !strings.Contains(err.Error(), "must be >= 1") {
		t.Errorf("initial-scale 0 without allow-zero-initial-scale: %v", err)
	}
	if _, err := Defaults().ForRevision(nil, -1); err == nil {
		t.Error("negative containerConcurrency accepted")
	}
}
