package v1

import (
	"errors"
	"strings"
	"testing"
)

const svcHead = `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    spec:
      containers:
        - image: hello
`

func TestDecode(t *testing.T) {
	objs, err := Decode([]byte("---\n# only a comment\n---\n"+svcHead+"---\n"+`apiVersion: serving.knative.dev/v1
kind: Route
metadata: {name: r, namespace: prod}
spec:
  traffic: [{configurationName: hello, percent: 100}]
status:
  url: http://ignored
  somethingUnknown: true
`), "two.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 {
		t.Fatalf("got %d objects, want 2", len(objs))
	}
	svc := objs[0].(*Service)
	if svc.Namespace != "default" || *svc.Spec.Template.Spec.TimeoutSeconds != 300 ||
		*svc.Spec.Template.Spec.ContainerConcurrency != 0 || svc.Spec.Template.Spec.Containers[0].Name != "user-container" {
		t.Errorf("defaults not applied: %+v", svc)
	}
	if tt := svc.Spec.Traffic; len(tt) != 1 || !*tt[0].LatestRevision || *tt[0].Percent != 100 {
		t.Errorf("default traffic = %+v", tt)
	}
	r := objs[1].(*Route)
	if r.Namespace != "prod" || r.Status.URL != "" || !*r.Spec.Traffic[0].LatestRevision {
		t.Errorf("route = %+v", r)
	}
	if r.APIVersion != APIVersion || r.Kind != KindRoute {
		t.Errorf("TypeMeta = %+v", r.TypeMeta)
	}
}

func TestDecodeJSON(t *testing.T) {
	objs, err := Decode([]byte(`{"apiVersion":"serving.knative.dev/v1","kind":"Service","metadata":{"name":"a"},"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}
{"apiVersion":"serving.knative.dev/v1","kind":"Service","metadata":{"name":"b"},"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}`), "s.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 || objs[1].GetName() != "b" {
		t.Fatalf("got %v", objs)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string // substrings of the error
	}{
		{"unknown field", svcHead + "  traffik: []\n",
			[]string{"hello.yaml: document 1: Service default/hello:", `unknown field "spec.traffik"`}},
		{"unknown nested field", strings.Replace(svcHead, "- image: hello", "- image: hello\n          imagePullPolicyy: Always", 1),
			[]string{`unknown field "spec.template.spec.containers[0].imagePullPolicyy"`}},
		{"duplicate field", svcHead + "  traffic: []\n  traffic: []\n", []string{"document 1", `"traffic"`}},
		{"duplicate key in JSON", `{"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "hello"},
 "spec": {"template": {"spec": {"containers": [{"image": "a", "image": "b"}]}}}}`,
			[]string{"Service default/hello", `duplicate field "spec.template.spec.containers[0].image"`}},
		{"duplicate top-level key in JSON", `{"apiVersion": "serving.knative.dev/v1", "kind": "Service", "kind": "Service", "metadata": {"name": "hello"},
 "spec": {"template": {"spec": {"containers": [{"image": "a"}]}}}}`,
			[]string{"Service default/hello", `duplicate field "kind"`}},
		{"wrong type", strings.Replace(svcHead, "    spec:\n", "    spec:\n      timeoutSeconds: soon\n", 1),
			[]string{"Service default/hello", "timeoutSeconds"}},
		{"syntax error names the file line", "---\n" + svcHead + "---\nkind: Service\nmetadata:\n  name: x\n   bad: indent\n",
			[]string{"hello.yaml: document 2: ", "line 15"}},
		{"wrong apiVersion", strings.Replace(svcHead, "serving.knative.dev/v1", "serving.knative.dev/v1alpha1", 1),
			[]string{`Service default/hello: apiVersion "serving.knative.dev/v1alpha1" is not supported: sluice accepts serving.knative.dev/v1`}},
		{"wrong kind", "apiVersion: apps/v1\nkind: Deployment\n",
			[]string{`kind "Deployment" is not supported: sluice accepts Service, Configuration, Route and Revision`}},
		{"validation", strings.Replace(svcHead, "- image: hello", "- image: hello\n          ports: [{name: grpc, containerPort: 8080}]", 1),
			[]string{`hello.yaml: document 1: Service default/hello: spec.template.spec.containers[0].ports[0].name: must be empty, "http1", "h2c" or "http2"`}},
		{"second document numbered", svcHead + "---\n" + svcHead + "  traffic: [{percent: 120}]\n",
			[]string{"document 2: Service default/hello: spec.traffic[0].percent: must be between 0 and 100, got 120"}},
		{"not an object", "- a\n- b\n", []string{"document 1", "not an object"}},
		{"bad JSON", `{"apiVersion": }`, []string{"hello.yaml: document 1: line 1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in), "hello.yaml")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
