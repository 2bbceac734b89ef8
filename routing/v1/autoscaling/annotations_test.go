package autoscaling

import (
	"strings"
	"testing"
)

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
