package routing

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// TestKnativeArticle applies the seed article's YAML, unchanged, in the article's order and
// checks what each step serves.
func TestKnativeArticle(t *testing.T) {
	up := upInstances{"helloworld-go-v1": true, "helloworld-go-v2": true, "helloworld-go-00003": true}
	steps := []struct {
		file          string
		latestCreated string
		wantServed    []string
		wantTagURLs   []string
	}{
		{"01-helloworld-go-v1.yaml", "helloworld-go-v1", []string{":helloworld-go-v1=100"}, nil},
		{"02-helloworld-go-v2.yaml", "helloworld-go-v2", []string{":helloworld-go-v2=100"}, nil},
		{"03-traffic-50-50.yaml", "helloworld-go-v2",
			[]string{"v1:helloworld-go-v1=50", "v2:helloworld-go-v2=50"},
			[]string{"http://v1-helloworld-go.default.example.com", "http://v2-helloworld-go.default.example.com"}},
		{"04-blue-green.yaml", "helloworld-go-v2",
			[]string{"v1:helloworld-go-v1=100", "v2:helloworld-go-v2=0", "latest:helloworld-go-v2=0"},
			[]string{"http://v1-helloworld-go.default.example.com", "http://v2-helloworld-go.default.example.com", "http://latest-helloworld-go.default.example.com"}},
		{"05-canary-80-20.yaml", "helloworld-go-v2",
			[]string{"v1:helloworld-go-v1=80", "v2:helloworld-go-v2=20", "latest:helloworld-go-v2=0"}, nil},
		{"06-autoscaling.yaml", "helloworld-go-00003", []string{":helloworld-go-00003=100"}, nil},
	}
	st := NewState()
	now := t0
	for _, s := range steps {
		objs := decodeFile(t, filepath.Join("..", "examples", "knative", s.file))
		st = apply(t, st, objs)
		now = now.Add(time.Minute)
		st = settle(t, st, up, now)

		svc := st.Services[Key{"default", "helloworld-go"}]
		if svc == nil {
			t.Fatalf("%s: no Service", s.file)
		}
		if got := svc.Status.LatestCreatedRevisionName; got != s.latestCreated {
			t.Errorf("%s: latestCreated = %q, want %q", s.file, got, s.latestCreated)
		}
		if got := served(st, "default", "helloworld-go"); !slices.Equal(got, s.wantServed) {
			t.Errorf("%s: served %v, want %v", s.file, got, s.wantServed)
		}
		if got := readyCondition(svc.Status.Conditions); got.Status != corev1.ConditionTrue {
			t.Errorf("%s: Service not ready: %+v", s.file, got)
		}
		if svc.Status.URL != "http://helloworld-go.default.example.com" {
			t.Errorf("%s: url = %q", s.file, svc.Status.URL)
		}
		if s.wantTagURLs != nil {
			var urls []string
			for _, tt := range svc.Status.Traffic {
				urls = append(urls, tt.URL)
			}
			if !slices.Equal(urls, s.wantTagURLs) {
				t.Errorf("%s: tag urls %v, want %v", s.file, urls, s.wantTagURLs)
			}
		}
	}
	// The article's "kubectl get revision": three revisions, generations 1, 2, 3.
	for name, gen := range map[string]string{"helloworld-go-v1": "1", "helloworld-go-v2": "2", "helloworld-go-00003": "3"} {
		rev := st.Revisions[Key{"default", name}]
		if rev == nil {
			t.Fatalf("revision %s missing", name)
		}
		if got := rev.Labels[v1.LabelConfigurationGeneration]; got != gen {
			t.Errorf("%s: configurationGeneration %q, want %q", name, got, gen)
		}
		if rev.Labels[v1.LabelService] != "helloworld-go" || rev.Labels[v1.LabelConfiguration] != "helloworld-go" {
			t.Errorf("%s: labels %v", name, rev.Labels)
		}
	}
	rev3 := st.Revisions[Key{"default", "helloworld-go-00003"}]
	if rev3.Annotations["autoscaling.knative.dev/target"] != "10" || *rev3.Spec.ContainerConcurrency != 10 {
		t.Errorf("autoscaling settings not carried onto the revision: %v, cc %d", rev3.Annotations, *rev3.Spec.ContainerConcurrency)
	}
}

// TestKnativeArticleStandalone: with only the static source, the article's revisions have no
// endpoints, so nothing is served and the status says how to fix it.
func TestKnativeArticleStandalone(t *testing.T) {
	st := apply(t, NewState(), decodeFile(t, "../examples/knative/01-helloworld-go-v1.yaml"))
	st = settle(t, st, StaticEndpoints{}, t0)
	svc := st.Services[Key{"default", "helloworld-go"}]
	ready := readyCondition(svc.Status.Conditions)
	if ready.Status != corev1.ConditionFalse || ready.Reason != ReasonNoEndpoints {
		t.Fatalf("Ready = %+v, want False/%s", ready, ReasonNoEndpoints)
	}
	if tab := BuildTable(st, StaticEndpoints{}, Config{}); len(tab.Hosts) != 0 || len(tab.Backends) != 1 {
		t.Fatalf("table = %+v, want no hosts and one backend", tab)
	}
}

// TestScaleToZeroExample: the README's scale-from-zero example applies, and its revision runs a
// command with the autoscaling annotations carried over.
func TestScaleToZeroExample(t *testing.T) {
	st := apply(t, NewState(), decodeFile(t, "../examples/scale-to-zero/hello.yaml"))
	rev := st.Revisions[Key{"default", "hello-00001"}]
	if rev == nil {
		t.Fatal("no revision hello-00001")
	}
	if c := rev.Spec.Containers; len(c) != 1 || len(c[0].Command) == 0 || rev.Annotations["autoscaling.knative.dev/window"] != "6s" {
		t.Errorf("revision = %+v, annotations %v", c, rev.Annotations)
	}
}
