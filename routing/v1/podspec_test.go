package v1

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// valueRevisionSpec is RevisionSpec as it was before the pod spec became a pointer: the JSON
// form must not have changed, since it is what the store holds and what `get -o yaml` prints.
type valueRevisionSpec struct {
	corev1.PodSpec              `json:",inline"`
	ContainerConcurrency        *int64 `json:"containerConcurrency,omitempty"`
	TimeoutSeconds              *int64 `json:"timeoutSeconds,omitempty"`
	ResponseStartTimeoutSeconds *int64 `json:"responseStartTimeoutSeconds,omitempty"`
	IdleTimeoutSeconds          *int64 `json:"idleTimeoutSeconds,omitempty"`
}

func TestRevisionSpecJSONAsBefore(t *testing.T) {
	for name, pod := range map[string]corev1.PodSpec{
		"empty": {},
		"full": {
			Containers: []corev1.Container{{
				Name: "user-container", Image: "hello", Args: []string{"-v"},
				Env:   []corev1.EnvVar{{Name: "TARGET", Value: "v1"}},
				Ports: []corev1.ContainerPort{{Name: "h2c", ContainerPort: 8080}},
			}},
			ServiceAccountName: "sa",
		},
	} {
		t.Run(name, func(t *testing.T) {
			before, err := json.Marshal(valueRevisionSpec{PodSpec: pod, TimeoutSeconds: ptr(int64(30))})
			if err != nil {
				t.Fatal(err)
			}
			p := pod
			now, err := json.Marshal(RevisionSpec{PodSpec: &p, TimeoutSeconds: ptr(int64(30))})
			if err != nil {
				t.Fatal(err)
			}
			if string(now) != string(before) {
				t.Errorf("encoding changed:\n got %s\nwant %s", now, before)
			}
			// And it decodes back to a pod spec, even an empty one ("containers":null).
			var back RevisionSpec
			if err := json.Unmarshal(now, &back); err != nil {
				t.Fatal(err)
			}
			if back.PodSpec == nil {
				t.Fatalf("%s decoded to a nil pod spec", now)
			}
			again, _ := json.Marshal(back)
			if string(again) != string(now) {
				t.Errorf("round trip changed it:\n got %s\nwant %s", again, now)
			}
		})
	}
}

// An object without any pod spec field is an error to the user, never a nil dereference.
func TestNoPodSpecIsAnError(t *testing.T) {
	for name, doc := range map[string]string{
		"service without spec":         "kind: Service\nmetadata: {name: hello}\n",
		"service with limits only":     "kind: Service\nmetadata: {name: hello}\nspec:\n  template:\n    spec: {containerConcurrency: 5}\n",
		"configuration without spec":   "kind: Configuration\nmetadata: {name: hello}\nspec: {template: {}}\n",
		"revision without containers":  "kind: Revision\nmetadata: {name: hello-1}\nspec: {timeoutSeconds: 10}\n",
		"service with containers null": "kind: Service\nmetadata: {name: hello}\nspec:\n  template:\n    spec: {containers: null}\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Decode([]byte("apiVersion: serving.knative.dev/v1\n"+doc), "x.yaml")
			if err == nil || !strings.Contains(err.Error(), "containers: at least one container is required") {
				t.Errorf("err = %v, want the missing containers named", err)
			}
		})
	}
	// Built in code without one: defaulting gives it an empty pod spec, validation rejects it.
	svc := &Service{}
	svc.Name = "hello"
	SetDefaults(svc)
	if svc.Spec.Template.Spec.PodSpec == nil {
		t.Fatal("SetDefaults left the pod spec nil")
	}
	if err := Validate(&Revision{}); err == nil {
		t.Error("a revision with a nil pod spec validated")
	}
}

// Clone is a deep copy: the clone's pod spec is its own, so admission may default and change it.
func TestCloneCopiesThePodSpec(t *testing.T) {
	objs, err := Decode([]byte(svcHead), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	svc := objs[0].(*Service)
	c := Clone(svc)
	if c.Spec.Template.Spec.PodSpec == svc.Spec.Template.Spec.PodSpec {
		t.Fatal("Clone shares the pod spec")
	}
	c.Spec.Template.Spec.Containers[0].Image = "changed"
	if svc.Spec.Template.Spec.Containers[0].Image != "hello" {
		t.Error("changing the clone's container changed the original")
	}
	// A nil pod spec stays nil (and does not panic): SetDefaults is what fills it in.
	if Clone(&Revision{}).Spec.PodSpec != nil {
		t.Error("Clone invented a pod spec")
	}
}
