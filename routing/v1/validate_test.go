package v1

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func validService() *Service {
	return &Service{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "default"},
		Spec: ServiceSpec{ConfigurationSpec: ConfigurationSpec{Template: RevisionTemplateSpec{
			Spec: RevisionSpec{PodSpec: &corev1.PodSpec{Containers: []corev1.Container{{Image: "hello"}}}},
		}}},
	}
}

func tt(rev string, latest *bool, pct int64, tag string) TrafficTarget {
	return TrafficTarget{RevisionName: rev, LatestRevision: latest, Percent: &pct, Tag: tag}
}

func TestValidateService(t *testing.T) {
	yes, no := ptr(true), ptr(false)
	tests := []struct {
		name   string
		modify func(s *Service)
		want   string // "" means valid
	}{
		{"valid defaults", func(s *Service) {}, ""},
		{"blue-green with tags", func(s *Service) {
			s.Spec.Traffic = []TrafficTarget{tt("hello-v1", nil, 100, "v1"), tt("hello-v2", nil, 0, "v2"), tt("", yes, 0, "latest")}
		}, ""},
		{"missing name", func(s *Service) { s.Name = "" }, "metadata.name: required"},
		{"autoscaling annotations", func(s *Service) {
			s.Spec.Template.Annotations = map[string]string{"autoscaling.knative.dev/target": "10", "autoscaling.knative.dev/min-scale": "0"}
		}, ""},
		{"bad min-scale", func(s *Service) {
			s.Spec.Template.Annotations = map[string]string{"autoscaling.knative.dev/min-scale": "-1"}
		}, "spec.template.metadata.annotations: autoscaling.knative.dev/min-scale"},
		{"bad name", func(s *Service) { s.Name = "Hello_World" }, `metadata.name: "Hello_World" is not a DNS-1035 label`},
		{"name starting with digit", func(s *Service) { s.Name = "1hello" }, "not a DNS-1035 label"},
		{"name too long for revisions", func(s *Service) { s.Name = strings.Repeat("a", 60) }, "at most 57 characters"},
		{"generateName", func(s *Service) { s.GenerateName = "x-" }, "metadata.generateName: not supported"},
		{"bad namespace", func(s *Service) { s.Namespace = "Prod" }, "metadata.namespace"},
		{"configurationName in a Service", func(s *Service) {
			s.Spec.Traffic = []TrafficTarget{{ConfigurationName: "hello", Percent: ptr(int64(100))}}
		}, "spec.traffic[0].configurationName: must not be set in a Service"},
		{"revisionName with latestRevision true", func(s *Service) {
			s.Spec.Traffic = []TrafficTarget{tt("hello-v1", yes, 100, "")}
		}, "spec.traffic[0].latestRevision: may not be true when revisionName is set"},
		{"latestRevision false without revisionName", func(s *Service) {
			s.Spec.Traffic = []TrafficTarget{tt("", no, 100, "")}
		}, "spec.traffic[0].latestRevision: may not be false when revisionName is not set"},
		{"percent over 100", func(s *Service) {
			s.Spec.Traffic = []TrafficTarget{tt("", yes, 120, ""), tt("hello-v1", no, -20, "")}
		}, "spec.traffic[0].percent: must be between 0 and 100, got 120"},
		{"negative percent", func(s *Service) {
			s.Spec.Traffic = []TrafficTarget{tt("", yes, 120, ""), tt("hello-v1", no, -20, "")}
		}, "spec.traffic[1].percent: must be between 0 and 100, got -20"},
		{"sum not 100", func(s *Service) {
			s.Spec.Traffic = []TrafficTarget{tt("", yes, 40, ""), tt("hello-v1", no, 50, "")}
		}, "spec.traffic: Traffic targets sum to 90, want 100"},
		{"missing percent counts as 0", func(s *Service) {
			s.Spec.Traffic = []TrafficTarget{{LatestRevision: yes}}
		}, "Traffic targets sum to 0, want 100"},
		{"tag not DNS-1035", func(s *Service) {
			s.Spec.Traffic = []TrafficTarget{tt("", yes, 100, "V_1")}
		}, `spec.traffic[0].tag: "V_1" is not a DNS-1035 label`},
		{"duplicate tag", func(s *Service) {
			s.Spec.Traffic = []TrafficTarget{tt("", yes, 50, "a"), tt("hello-v1", nil, 50, "a")}
		}, `spec.traffic[1].tag: duplicate tag "a" (also at spec.traffic[0])`},
		{"tag host too long", func(s *Service) {
			s.Spec.Traffic = []TrafficTarget{tt("", yes, 100, strings.Repeat("t", 60))}
		}, "longer than 63 characters"},
		{"url in spec", func(s *Service) {
			s.Spec.Traffic = []TrafficTarget{{LatestRevision: yes, Percent: ptr(int64(100)), URL: "http://x"}}
		}, "spec.traffic[0].url: is output only"},
		{"timeout 0", func(s *Service) { s.Spec.Template.Spec.TimeoutSeconds = ptr(int64(0)) },
			"spec.template.spec.timeoutSeconds: must be between 1 and 600, got 0"},
		{"timeout 601", func(s *Service) { s.Spec.Template.Spec.TimeoutSeconds = ptr(int64(601)) }, "got 601"},
		{"timeout 600", func(s *Service) { s.Spec.Template.Spec.TimeoutSeconds = ptr(int64(600)) }, ""},
		{"containerConcurrency 1001", func(s *Service) { s.Spec.Template.Spec.ContainerConcurrency = ptr(int64(1001)) },
			"spec.template.spec.containerConcurrency: must be between 0 and 1000, got 1001"},
		{"containerConcurrency -1", func(s *Service) { s.Spec.Template.Spec.ContainerConcurrency = ptr(int64(-1)) }, "got -1"},
		{"no containers", func(s *Service) { s.Spec.Template.Spec.Containers = nil },
			"spec.template.spec.containers: at least one container is required"},
		{"container without image or command", func(s *Service) { s.Spec.Template.Spec.Containers[0].Image = "" },
			"spec.template.spec.containers[0]: needs an image or a command"},
		{"command only", func(s *Service) {
			s.Spec.Template.Spec.Containers[0] = corev1.Container{Command: []string{"./hello"}}
		}, ""},
		{"two ports", func(s *Service) {
			s.Spec.Template.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}, {ContainerPort: 9090}}
		}, "spec.template.spec.containers[0].ports[1]: at most one port"},
		{"port name", func(s *Service) {
			s.Spec.Template.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "grpc", ContainerPort: 8080}}
		}, `spec.template.spec.containers[0].ports[0].name: must be empty, "http1", "h2c" or "http2"`},
		{"port h2c", func(s *Service) {
			s.Spec.Template.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "h2c", ContainerPort: 8080}}
		}, ""},
		{"port number", func(s *Service) {
			s.Spec.Template.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http1"}}
		}, "containerPort: must be between 1 and 65535, got 0"},
		{"explicit revision name without prefix", func(s *Service) { s.Spec.Template.Name = "other-v1" },
			`spec.template.metadata.name: "other-v1" must have prefix "hello-"`},
		{"explicit revision name", func(s *Service) { s.Spec.Template.Name = "hello-v1" }, ""},
		{"env without a name", func(s *Service) {
			s.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "1"}, {Value: "x"}}
		}, "spec.template.spec.containers[0].env[1].name: required"},
		{"env name with =", func(s *Service) {
			s.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A=B", Value: "1"}}
		}, `spec.template.spec.containers[0].env[0].name: "A=B" is not a valid environment variable name`},
		{"env PORT", func(s *Service) {
			s.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "PORT", Value: "9999"}}
		}, `spec.template.spec.containers[0].env[0].name: "PORT" is a reserved environment variable`},
		{"env K_REVISION", func(s *Service) {
			s.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "K_REVISION", Value: "x"}}
		}, `"K_REVISION" is a reserved environment variable`},
		{"env ok", func(s *Service) {
			s.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "TARGET", Value: "v1"}, {Name: "my.var-1", Value: "x"}}
		}, ""},
		{"rollout-duration banana", func(s *Service) {
			s.Annotations = map[string]string{"serving.knative.dev/rollout-duration": "banana"}
		}, `metadata.annotations[serving.knative.dev/rollout-duration]: "banana" is not a duration`},
		{"rollout-duration below a second", func(s *Service) {
			s.Annotations = map[string]string{"serving.knative.dev/rollout-duration": "1500ms"}
		}, "not at second precision"},
		{"rollout-duration negative", func(s *Service) {
			s.Annotations = map[string]string{"serving.knative.dev/rollout-duration": "-10s"}
		}, "must not be negative"},
		{"rollout-duration ok", func(s *Service) {
			s.Annotations = map[string]string{"serving.knative.dev/rollout-duration": "120s"}
		}, ""},
		{"annotation key not a qualified name", func(s *Service) {
			s.Annotations = map[string]string{"bad key!": "x"}
		}, "metadata.annotations: Invalid value: \"bad key!\""},
		{"template annotation key not a qualified name", func(s *Service) {
			s.Spec.Template.Annotations = map[string]string{"/nope": "x"}
		}, "spec.template.metadata.annotations: Invalid value"},
		{"endpoints unspecified address", func(s *Service) {
			s.Spec.Template.Annotations = map[string]string{AnnotationEndpoints: "0.0.0.0:80"}
		}, `"0.0.0.0:80": 0.0.0.0 is not an address requests can be sent to`},
		{"endpoints unspecified IPv6", func(s *Service) {
			s.Spec.Template.Annotations = map[string]string{AnnotationEndpoints: "[::]:80"}
		}, "is not an address requests can be sent to"},
		{"endpoints ok", func(s *Service) {
			s.Spec.Template.Annotations = map[string]string{AnnotationEndpoints: "10.0.0.5:8080, [fd00::1]:8080"}
		}, ""},
		{"endpoints host name", func(s *Service) {
			s.Spec.Template.Annotations = map[string]string{AnnotationEndpoints: "backend.local:8080"}
		}, "spec.template.metadata.annotations[sluice.dev/endpoints]: \"backend.local:8080\": host \"backend.local\" is not an IP address (EDS needs IP addresses"},
		{"endpoints no port", func(s *Service) {
			s.Spec.Template.Annotations = map[string]string{AnnotationEndpoints: "10.0.0.5"}
		}, "is not IP:port"},
		{"endpoints port 0", func(s *Service) {
			s.Spec.Template.Annotations = map[string]string{AnnotationEndpoints: "10.0.0.5:0"}
		}, "between 1 and 65535"},
		{"endpoints port too big", func(s *Service) {
			s.Spec.Template.Annotations = map[string]string{AnnotationEndpoints: "10.0.0.5:65536"}
		}, "between 1 and 65535"},
		{"autoscaling and unknown annotations accepted", func(s *Service) {
			s.Spec.Template.Annotations = map[string]string{
				"autoscaling.knative.dev/minScale": "1", "autoscaling.knative.dev/target": "10", "example.com/anything": "x"}
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := validService()
			tc.modify(s)
			SetDefaults(s)
			err := Validate(s)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), "Service ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestValidateRoute(t *testing.T) {
	tests := []struct {
		name    string
		traffic []TrafficTarget
		want    string
	}{
		{"configurationName", []TrafficTarget{{ConfigurationName: "hello", Percent: ptr(int64(100))}}, ""},
		{"revision and configuration", []TrafficTarget{{ConfigurationName: "hello", RevisionName: "hello-1", Percent: ptr(int64(100))}},
			"spec.traffic[0]: expected exactly one of revisionName or configurationName, got both"},
		{"latestRevision alone", []TrafficTarget{{LatestRevision: ptr(true), Percent: ptr(int64(100))}},
			"got neither"},
		{"split", []TrafficTarget{{ConfigurationName: "a", Percent: ptr(int64(30))}, {RevisionName: "b-1", Percent: ptr(int64(70))}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &Route{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: RouteSpec{Traffic: tc.traffic}}
			SetDefaults(r)
			err := Validate(r)
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestValidateConfigurationPrefix(t *testing.T) {
	c := &Configuration{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Spec: ConfigurationSpec{Template: validService().Spec.Template}}
	c.Spec.Template.Name = "hello-v1"
	SetDefaults(c)
	if err := Validate(c); err == nil || !strings.Contains(err.Error(), `must have prefix "cfg-"`) {
		t.Fatalf("error %v", err)
	}
}

func TestValidateReportsAllErrors(t *testing.T) {
	s := validService()
	s.Spec.Template.Spec.TimeoutSeconds = ptr(int64(0))
	s.Spec.Traffic = []TrafficTarget{{LatestRevision: ptr(true), Percent: ptr(int64(90))}}
	SetDefaults(s)
	var ve *ValidationError
	err := Validate(s)
	if !errorsAs(err, &ve) || len(ve.Errors) != 2 {
		t.Fatalf("want 2 field errors, got %v", err)
	}
}

func TestDefaultsMultiContainerNames(t *testing.T) {
	s := validService()
	s.Spec.Template.Spec.Containers = append(s.Spec.Template.Spec.Containers, corev1.Container{Image: "sidecar"})
	SetDefaults(s)
	if a, b := s.Spec.Template.Spec.Containers[0].Name, s.Spec.Template.Spec.Containers[1].Name; a != "user-container-0" || b != "user-container-1" {
		t.Fatalf("names %q %q", a, b)
	}
}
