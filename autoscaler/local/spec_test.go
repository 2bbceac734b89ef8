package local

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluice-dev/sluice/routing"
	v1 "github.com/sluice-dev/sluice/routing/v1"
)

func revisionWith(c corev1.Container) *v1.Revision {
	rev := &v1.Revision{ObjectMeta: metav1.ObjectMeta{
		Namespace: "default", Name: "hello-00001",
		Labels: map[string]string{v1.LabelService: "hello", v1.LabelConfiguration: "hello"},
	}}
	rev.Spec.PodSpec = &corev1.PodSpec{Containers: []corev1.Container{c}}
	return rev
}

func TestSpecFromRevision(t *testing.T) {
	grace := int64(5)
	rev := revisionWith(corev1.Container{
		Command:    []string{"/bin/app", "--serve"},
		Args:       []string{"--verbose"},
		WorkingDir: "/srv",
		Env:        []corev1.EnvVar{{Name: "TARGET", Value: "sluice"}, {Name: "PORT", Value: "9999"}},
		Ports:      []corev1.ContainerPort{{Name: "h2c", ContainerPort: 8080}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
			InitialDelaySeconds: 2, PeriodSeconds: 3, TimeoutSeconds: 4, SuccessThreshold: 2, FailureThreshold: 5,
		},
	})
	rev.Spec.TerminationGracePeriodSeconds = &grace
	got, err := SpecFromRevision(rev)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/bin/app", "--serve", "--verbose"}; !slices.Equal(got.Command, want) {
		t.Errorf("Command = %q, want %q", got.Command, want)
	}
	// PORT from the template is dropped: each instance gets its own.
	if want := []string{"TARGET=sluice", "K_SERVICE=hello", "K_CONFIGURATION=hello", "K_REVISION=hello-00001"}; !slices.Equal(got.Env, want) {
		t.Errorf("Env = %q, want %q", got.Env, want)
	}
	if got.Dir != "/srv" || got.Protocol != ProtocolH2C || got.TerminationGracePeriod != 5*time.Second {
		t.Errorf("Dir, Protocol, grace = %q, %q, %v", got.Dir, got.Protocol, got.TerminationGracePeriod)
	}
	p := got.Probe
	if p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.InitialDelay != 2*time.Second || p.Period != 3*time.Second ||
		p.Timeout != 4*time.Second || p.SuccessThreshold != 2 || p.FailureThreshold != 5 {
		t.Errorf("Probe = %+v", p)
	}
}

func TestSpecFromRevisionDefaults(t *testing.T) {
	got, err := SpecFromRevision(revisionWith(corev1.Container{Command: []string{"app"}}))
	if err != nil {
		t.Fatal(err)
	}
	want := Probe{Timeout: time.Second, Period: 10 * time.Second, SuccessThreshold: 1, FailureThreshold: 3}
	if got.Probe != want {
		t.Errorf("Probe = %+v, want a TCP probe %+v", got.Probe, want)
	}
	if got.Protocol != ProtocolHTTP1 || got.TerminationGracePeriod != 30*time.Second {
		t.Errorf("Protocol, grace = %q, %v", got.Protocol, got.TerminationGracePeriod)
	}
}

func TestSpecFromRevisionRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    corev1.Container
		want string
	}{
		{"valueFrom", corev1.Container{Command: []string{"app"}, Env: []corev1.EnvVar{{Name: "SECRET", ValueFrom: &corev1.EnvVarSource{}}}}, "env SECRET: valueFrom"},
		{"exec probe", corev1.Container{Command: []string{"app"}, ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{}}}}, "exec probes"},
		{"no command", corev1.Container{}, "needs a command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := SpecFromRevision(revisionWith(tc.c))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if errors.Is(err, ErrImageOnly) {
				t.Errorf("err %v is ErrImageOnly", err)
			}
		})
	}
}

func TestSpecFromRevisionImageOnly(t *testing.T) {
	_, err := SpecFromRevision(revisionWith(corev1.Container{Image: "example.com/hello:v1"}))
	if !errors.Is(err, ErrImageOnly) {
		t.Fatalf("err = %v, want ErrImageOnly", err)
	}
	if !strings.Contains(err.Error(), "Kubernetes mode") || !strings.Contains(err.Error(), "example.com/hello:v1") {
		t.Errorf("err = %q, want it to name the image and Kubernetes mode", err)
	}
}

func TestSpecFromRevisionNoContainers(t *testing.T) {
	if _, err := SpecFromRevision(&v1.Revision{}); err == nil {
		t.Fatal("no error for a revision without containers")
	}
}

func revisionNamed(key routing.Key) *v1.Revision {
	return &v1.Revision{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
}
