package routing

import (
	"strings"
	"testing"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// A Service's template, its Configuration's and the Revision stamped from it are one pod spec,
// not three copies; an older revision keeps its own, untouched by the next template.
func TestApplySharesThePodSpec(t *testing.T) {
	st := apply(t, NewState(), decode(t, svcYAML("", "a", "")))
	st = apply(t, st, decode(t, svcYAML("", "b", "")))
	k := Key{"default", "hello"}
	svc, cfg := st.Services[k], st.Configurations[k]
	rev1, rev2 := st.Revisions[Key{"default", "hello-00001"}], st.Revisions[Key{"default", "hello-00002"}]
	if rev1 == nil || rev2 == nil {
		t.Fatalf("revisions %v", sortedKeys(st.Revisions))
	}
	pod := svc.Spec.Template.Spec.PodSpec
	if pod == nil || cfg.Spec.Template.Spec.PodSpec != pod || rev2.Spec.PodSpec != pod {
		t.Errorf("Service, Configuration and latest Revision hold different pod specs: %p %p %p",
			pod, cfg.Spec.Template.Spec.PodSpec, rev2.Spec.PodSpec)
	}
	if rev1.Spec.PodSpec == pod {
		t.Fatal("the first revision shares the second template's pod spec")
	}
	if env := rev1.Spec.Containers[0].Env; len(env) != 1 || env[0].Value != "a" {
		t.Errorf("first revision's env = %v, want TARGET=a", env)
	}

	// A traffic-only change keeps sharing the stored pod spec.
	st = apply(t, st, decode(t, svcYAML("", "b", "  traffic: [{revisionName: hello-00001, percent: 100}]\n")))
	if st.Services[k].Spec.Template.Spec.PodSpec != pod || st.Configurations[k].Spec.Template.Spec.PodSpec != pod {
		t.Error("a traffic-only change copied the pod spec")
	}
}

// Objects built in code without a pod spec are rejected, not dereferenced.
func TestApplyWithoutPodSpec(t *testing.T) {
	svc := &v1.Service{}
	svc.Name = "hello"
	cfg := &v1.Configuration{}
	cfg.Name = "other"
	for _, o := range []v1.Object{svc, cfg} {
		_, err := Apply(NewState(), []v1.Object{o}, t0)
		if err == nil || !strings.Contains(err.Error(), "at least one container is required") {
			t.Errorf("%s: err = %v, want the missing containers named", v1.Describe(o), err)
		}
	}
	// A revision without one (only reachable from code) builds as HTTP/1.
	if p := protocolOf(&v1.Revision{}); p != HTTP1 {
		t.Errorf("protocolOf(no pod spec) = %v", p)
	}
}
