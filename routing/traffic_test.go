package routing

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// TestTrafficScenarios drives one Service through a sequence of applies and checks, after each,
// what is served, the Route's readiness and the table's default splits on the main host.
func TestTrafficScenarios(t *testing.T) {
	type step struct {
		yaml       string
		up         upInstances
		served     string // status.traffic as "tag:rev=pct" joined by spaces
		ready      corev1.ConditionStatus
		reason     string
		mainSplits string // "rev=pct" of the main host's default route
	}
	v1a, v2b := svcYAML("hello-v1", "a", ""), svcYAML("hello-v2", "b", "")
	traffic := func(tt string) string { return svcYAML("hello-v2", "b", "  traffic:\n"+tt) }
	both := upInstances{"hello-v1": true, "hello-v2": true}
	tests := []struct {
		name  string
		steps []step
	}{
		{"blue-green cutover and rollback", []step{
			{v1a, both, ":hello-v1=100", "True", "", "hello-v1=100"},
			{traffic("    - {revisionName: hello-v1, percent: 100, tag: blue}\n    - {revisionName: hello-v2, percent: 0, tag: green}\n"), both,
				"blue:hello-v1=100 green:hello-v2=0", "True", "", "hello-v1=100"},
			{traffic("    - {revisionName: hello-v1, percent: 0, tag: blue}\n    - {revisionName: hello-v2, percent: 100, tag: green}\n"), both,
				"blue:hello-v1=0 green:hello-v2=100", "True", "", "hello-v2=100"},
			{traffic("    - {revisionName: hello-v1, percent: 100, tag: blue}\n    - {revisionName: hello-v2, percent: 0, tag: green}\n"), both,
				"blue:hello-v1=100 green:hello-v2=0", "True", "", "hello-v1=100"},
		}},
		{"canary steps", []step{
			{v1a, both, ":hello-v1=100", "True", "", "hello-v1=100"},
			{traffic("    - {revisionName: hello-v1, percent: 80}\n    - {latestRevision: true, percent: 20}\n"), both,
				":hello-v1=80 :hello-v2=20", "True", "", "hello-v1=80 hello-v2=20"},
			{traffic("    - {revisionName: hello-v1, percent: 50}\n    - {latestRevision: true, percent: 50}\n"), both,
				":hello-v1=50 :hello-v2=50", "True", "", "hello-v1=50 hello-v2=50"},
			{traffic("    - {revisionName: hello-v1, percent: 0, tag: old}\n    - {latestRevision: true, percent: 100}\n"), both,
				"old:hello-v1=0 :hello-v2=100", "True", "", "hello-v2=100"},
		}},
		{"duplicates merge in the table", []step{
			{v1a, both, ":hello-v1=100", "True", "", "hello-v1=100"},
			{traffic("    - {revisionName: hello-v2, percent: 30, tag: x}\n    - {latestRevision: true, percent: 70}\n"), both,
				"x:hello-v2=30 :hello-v2=70", "True", "", "hello-v2=100"},
		}},
		{"@latest follows new revisions once ready", []step{
			{v1a, both, ":hello-v1=100", "True", "", "hello-v1=100"},
			{v2b, upInstances{"hello-v1": true}, ":hello-v1=100", "True", "", "hello-v1=100"},
			{v2b, both, ":hello-v2=100", "True", "", "hello-v2=100"},
		}},
		{"@latest never moves back to an older revision", []step{
			{v1a, both, ":hello-v1=100", "True", "", "hello-v1=100"},
			{v2b, both, ":hello-v2=100", "True", "", "hello-v2=100"},
			// v2 goes down: Knative keeps it the latest ready (it was ready once), so the Route
			// reports it and keeps serving v2 rather than silently sending @latest back to v1.
			{v2b, upInstances{"hello-v1": true}, ":hello-v2=100", "False", ReasonRevisionNotReady, "hello-v2=100"},
			{v2b, both, ":hello-v2=100", "True", "", "hello-v2=100"},
		}},
		{"not-ready revision keeps serving the old traffic", []step{
			{v1a, both, ":hello-v1=100", "True", "", "hello-v1=100"},
			{traffic("    - {revisionName: hello-v2, percent: 100}\n"), upInstances{"hello-v1": true},
				":hello-v1=100", "False", ReasonRevisionNotReady, "hello-v1=100"},
			{traffic("    - {revisionName: hello-v2, percent: 100}\n"), both, ":hello-v2=100", "True", "", "hello-v2=100"},
		}},
		{"nothing ready serves nothing", []step{
			{v1a, upInstances{}, "", "False", ReasonRevisionMissing, ""},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := NewState()
			now := t0
			for i, s := range tc.steps {
				st = apply(t, st, decode(t, s.yaml))
				now = now.Add(time.Minute)
				st = settle(t, st, s.up, now)
				if got := strings.Join(served(st, "default", "hello"), " "); got != s.served {
					t.Errorf("step %d: served %q, want %q", i, got, s.served)
				}
				rt := st.Routes[Key{"default", "hello"}]
				ready := readyCondition(rt.Status.Conditions)
				if ready.Status != s.ready || ready.Reason != s.reason {
					t.Errorf("step %d: Ready %s/%s (%s), want %s/%s", i, ready.Status, ready.Reason, ready.Message, s.ready, s.reason)
				}
				if ready.Reason == ReasonRevisionNotReady && !strings.Contains(ready.Message, `"hello-v2"`) {
					t.Errorf("step %d: message %q does not name the revision", i, ready.Message)
				}
				tab := BuildTable(st, s.up, Config{})
				if got := mainSplits(tab, "hello.default.example.com"); got != s.mainSplits {
					t.Errorf("step %d: main host splits %q, want %q", i, got, s.mainSplits)
				}
			}
		})
	}
}

func mainSplits(tab *Table, host string) string {
	for _, h := range tab.Hosts {
		if h.Name != host {
			continue
		}
		last := h.Routes[len(h.Routes)-1]
		if last.TagHeader != "" {
			return "no default route"
		}
		var parts []string
		for _, s := range last.Splits {
			parts = append(parts, s.Revision+"="+strconv.FormatUint(uint64(s.Percent), 10))
		}
		return strings.Join(parts, " ")
	}
	return ""
}

func TestBuildTable(t *testing.T) {
	yaml := strings.Replace(svcYAML("hello-v2", "b", `  traffic:
    - {revisionName: hello-v1, percent: 80, tag: v1}
    - {revisionName: hello-v2, percent: 20, tag: v2}
    - {latestRevision: true, percent: 0, tag: latest}
`), "    spec:\n", "    spec:\n      timeoutSeconds: 30\n", 1)
	yaml = strings.Replace(yaml, "- image: hello\n", "- image: hello\n          ports: [{name: h2c, containerPort: 8080}]\n", 1)
	up := both()
	st := apply(t, NewState(), decode(t, svcYAML("hello-v1", "a", "")))
	st = apply(t, st, decode(t, yaml))
	st = settle(t, st, up, t0)
	tab := BuildTable(st, up, Config{Domain: "sluice.test"})

	var names []string
	for _, h := range tab.Hosts {
		names = append(names, h.Name+"/"+h.Visibility.String())
	}
	want := []string{
		"hello.default.sluice.test/external", "hello.default.svc.cluster.local/cluster-local",
		"latest-hello.default.sluice.test/external", "latest-hello.default.svc.cluster.local/cluster-local",
		"v1-hello.default.sluice.test/external", "v1-hello.default.svc.cluster.local/cluster-local",
		"v2-hello.default.sluice.test/external", "v2-hello.default.svc.cluster.local/cluster-local",
	}
	if !slices.Equal(names, want) {
		t.Fatalf("hosts\n%v\nwant\n%v", names, want)
	}
	main := tab.Hosts[0]
	wantMain := []HTTPRoute{
		{TagHeader: "latest", Splits: []Split{split("default", "hello-v2", 100)}, Timeout: 30 * time.Second},
		{TagHeader: "v1", Splits: []Split{split("default", "hello-v1", 100)}, Timeout: 300 * time.Second},
		{TagHeader: "v2", Splits: []Split{split("default", "hello-v2", 100)}, Timeout: 30 * time.Second},
		{Splits: []Split{split("default", "hello-v1", 80), split("default", "hello-v2", 20)}, Timeout: 300 * time.Second},
	}
	if !reflect.DeepEqual(main.Routes, wantMain) {
		t.Fatalf("main routes\n%+v\nwant\n%+v", main.Routes, wantMain)
	}
	if tag := tab.Hosts[6]; tag.Tag != "v2" || len(tag.Routes) != 1 || tag.Routes[0].Splits[0].Revision != "hello-v2" {
		t.Fatalf("tag host %+v", tag)
	}
	wantBackends := []Backend{
		{Cluster: "default/hello-v1", Namespace: "default", Revision: "hello-v1", Protocol: HTTP1, Endpoints: []Endpoint{{"10.0.0.1", 8080}}},
		{Cluster: "default/hello-v2", Namespace: "default", Revision: "hello-v2", Protocol: H2C, Endpoints: []Endpoint{{"10.0.0.1", 8080}}},
	}
	if !reflect.DeepEqual(tab.Backends, wantBackends) {
		t.Fatalf("backends %+v", tab.Backends)
	}
	// Determinism: the same state gives an equal table, whatever map iteration does.
	for range 5 {
		if again := BuildTable(st, up, Config{Domain: "sluice.test"}); !reflect.DeepEqual(again, tab) {
			t.Fatal("BuildTable is not deterministic")
		}
	}
}

func both() upInstances { return upInstances{"hello-v1": true, "hello-v2": true} }

func TestStaticEndpoints(t *testing.T) {
	tests := []struct {
		annotation *string
		ready      bool
		reason     string
		eps        []Endpoint
	}{
		{nil, false, ReasonNoEndpoints, nil},
		{ptr(""), false, ReasonNoEndpoints, nil},
		{ptr(" , "), false, ReasonNoEndpoints, nil},
		{ptr("10.0.0.6:8080,10.0.0.5:8080"), true, "", []Endpoint{{"10.0.0.5", 8080}, {"10.0.0.6", 8080}}},
		{ptr("[fd00::1]:9000"), true, "", []Endpoint{{"fd00::1", 9000}}},
		{ptr("host:80"), false, ReasonInvalidEndpoints, nil},
	}
	for _, tc := range tests {
		rev := &v1.Revision{}
		if tc.annotation != nil {
			rev.Annotations = map[string]string{v1.AnnotationEndpoints: *tc.annotation}
		}
		got := StaticEndpoints{}.Instances(rev)
		if got.Ready != tc.ready || got.Reason != tc.reason || !reflect.DeepEqual(got.Endpoints, tc.eps) {
			t.Errorf("%v: got %+v", tc.annotation, got)
		}
		if tc.reason == ReasonNoEndpoints && tc.annotation == nil && !strings.Contains(got.Message, "sluice.dev/endpoints") {
			t.Errorf("message %q does not say how to fix it", got.Message)
		}
	}
}

func TestDelete(t *testing.T) {
	st := apply(t, NewState(), decode(t, svcYAML("hello-v1", "a", "")))
	st = apply(t, st, decode(t, svcYAML("hello-v2", "b", "  traffic: [{revisionName: hello-v1, percent: 100}]\n")))
	st = settle(t, st, both(), t0)

	if _, err := Delete(st, Ref{v1.KindRevision, Key{"default", "hello-v1"}}); err == nil ||
		!strings.Contains(err.Error(), `revision "hello-v1" is still referenced by Service default/hello (spec.traffic[0])`) {
		t.Fatalf("delete referenced revision: %v", err)
	}
	c, err := Delete(st, Ref{v1.KindRevision, Key{"default", "hello-v2"}})
	if err != nil || len(c.Delete) != 1 {
		t.Fatalf("delete unreferenced revision: %v %v", c, err)
	}
	if _, err := Delete(st, Ref{v1.KindRoute, Key{"default", "hello"}}); err == nil || !strings.Contains(err.Error(), "owned by Service default/hello") {
		t.Fatalf("delete owned route: %v", err)
	}
	if _, err := Delete(st, Ref{v1.KindService, Key{"default", "nope"}}); err == nil || err.Error() != "Service default/nope not found" {
		t.Fatalf("delete unknown: %v", err)
	}
	c, err = Delete(st, Ref{v1.KindService, Key{"default", "hello"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range c.Delete {
		got = append(got, r.String())
	}
	want := []string{"Configuration default/hello", "Revision default/hello-v1", "Revision default/hello-v2", "Route default/hello", "Service default/hello"}
	if !slices.Equal(got, want) {
		t.Fatalf("cascade %v", got)
	}
	if after := st.With(c); len(after.Services)+len(after.Configurations)+len(after.Routes)+len(after.Revisions) != 0 {
		t.Fatal("objects left after cascade")
	}
}

func TestReconcileTransitionTimes(t *testing.T) {
	st := apply(t, NewState(), decode(t, svcYAML("hello-v1", "a", "")))
	st = settle(t, st, upInstances{}, t0)
	down := readyCondition(st.Revisions[Key{"default", "hello-v1"}].Status.Conditions)
	st = settle(t, st, both(), t0.Add(time.Hour))
	up := readyCondition(st.Revisions[Key{"default", "hello-v1"}].Status.Conditions)
	if !down.LastTransitionTime.Time.Equal(t0) || !up.LastTransitionTime.Time.Equal(t0.Add(time.Hour)) {
		t.Fatalf("transition times %v then %v", down.LastTransitionTime, up.LastTransitionTime)
	}
	svc := st.Services[Key{"default", "hello"}]
	var types []string
	for _, c := range svc.Status.Conditions {
		types = append(types, string(c.Type)+"="+string(c.Status))
	}
	if strings.Join(types, " ") != "ConfigurationsReady=True Ready=True RoutesReady=True" {
		t.Fatalf("service conditions %v", types)
	}
	if svc.Status.Address == nil || svc.Status.Address.URL != "http://hello.default.svc.cluster.local" || svc.Status.LatestReadyRevisionName != "hello-v1" {
		t.Fatalf("service status %+v", svc.Status)
	}
}
