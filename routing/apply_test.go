package routing

import (
	"fmt"
	"strings"
	"testing"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// svcYAML is a Service named hello with a template TARGET and optional explicit revision name
// and traffic block.
func svcYAML(revName, target, traffic string) string {
	meta := ""
	if revName != "" {
		meta = "    metadata:\n      name: " + revName + "\n"
	}
	return fmt.Sprintf(`apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
%s    spec:
      containers:
        - image: hello
          env: [{name: TARGET, value: %q}]
%s`, meta, target, traffic)
}

func TestApplyRevisions(t *testing.T) {
	st := apply(t, NewState(), decode(t, svcYAML("", "a", "")))
	if _, ok := st.Revisions[Key{"default", "hello-00001"}]; !ok {
		t.Fatalf("want hello-00001, have %v", sortedKeys(st.Revisions))
	}
	cfg := st.Configurations[Key{"default", "hello"}]
	if cfg.Generation != 1 || ownerOf(cfg) != "hello" || st.Routes[Key{"default", "hello"}] == nil {
		t.Fatalf("configuration %+v", cfg.ObjectMeta)
	}

	// Re-applying the same Service is a no-op.
	c, err := Apply(st, decode(t, svcYAML("", "a", "")), t0)
	if err != nil || !c.Empty() {
		t.Fatalf("re-apply: change %v, err %v", c.Put, err)
	}

	// A traffic-only change touches the Service and Route only.
	c, err = Apply(st, decode(t, svcYAML("", "a", "  traffic: [{revisionName: hello-00001, percent: 100}]\n")), t0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range c.Put {
		kinds = append(kinds, v1.KindOf(o))
	}
	if strings.Join(kinds, ",") != "Route,Service" {
		t.Fatalf("traffic change put %v", kinds)
	}

	// A template change makes generation 2.
	st = apply(t, st, decode(t, svcYAML("", "b", "")))
	if st.Configurations[Key{"default", "hello"}].Generation != 2 || st.Revisions[Key{"default", "hello-00002"}] == nil {
		t.Fatalf("revisions %v", sortedKeys(st.Revisions))
	}
	if got := st.Revisions[Key{"default", "hello-00002"}].Labels[v1.LabelConfigurationGeneration]; got != "2" {
		t.Fatalf("generation label %q", got)
	}
}

func TestApplyExplicitNames(t *testing.T) {
	st := apply(t, NewState(), decode(t, svcYAML("hello-v1", "a", "")))
	tests := []struct {
		name, yaml, want string
	}{
		{"changed template, same name",
			svcYAML("hello-v1", "b", ""),
			`Service default/hello: spec.template: Saw the following changes without a name change (-old +new): -spec.containers[0].env[0].value: "a" +spec.containers[0].env[0].value: "b"`},
		{"new name", svcYAML("hello-v2", "b", ""), ""},
		{"prefix", svcYAML("other-v2", "b", ""), `must have prefix "hello-"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := v1.Decode([]byte(tc.yaml), "x.yaml")
			if err == nil {
				_, err = Apply(st, objs, t0)
			}
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant %q", err, tc.want)
			}
		})
	}

	// Going back to v1's template under its name makes v1 the newest revision again.
	st = apply(t, st, decode(t, svcYAML("hello-v2", "b", "")))
	st = apply(t, st, decode(t, svcYAML("hello-v1", "a", "")))
	st = settle(t, st, upInstances{"hello-v1": true, "hello-v2": true}, t0)
	if got := st.Configurations[Key{"default", "hello"}].Status.LatestCreatedRevisionName; got != "hello-v1" {
		t.Fatalf("latest created %q after going back to v1", got)
	}
	if len(st.Revisions) != 2 {
		t.Fatalf("revisions %v", sortedKeys(st.Revisions))
	}
}

func TestApplyRejects(t *testing.T) {
	base := apply(t, NewState(), decode(t, svcYAML("hello-v1", "a", "")))
	base = apply(t, base, decode(t, `apiVersion: serving.knative.dev/v1
kind: Configuration
metadata: {name: solo}
spec:
  template:
    spec:
      containers: [{image: solo}]
`))
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown revision", svcYAML("hello-v1", "a", "  traffic: [{revisionName: hello-v9, percent: 100}]\n"),
			`Service default/hello: spec.traffic[0].revisionName: revision "hello-v9" not found in namespace default (revisions of hello: hello-v1)`},
		{"revision in another namespace", strings.Replace(svcYAML("hello-v2", "a", "  traffic: [{revisionName: hello-v1, percent: 100}]\n"),
			"name: hello\n", "name: hello\n  namespace: prod\n", 1),
			`Service prod/hello: spec.traffic[0].revisionName: revision "hello-v1" not found in namespace prod`},
		{"revision applied directly", `apiVersion: serving.knative.dev/v1
kind: Revision
metadata: {name: hello-v3}
spec:
  containers: [{image: x}]
`, "Revision default/hello-v3: revisions are created from a template"},
		{"owned configuration", `apiVersion: serving.knative.dev/v1
kind: Configuration
metadata: {name: hello}
spec:
  template:
    spec:
      containers: [{image: x}]
`, "Configuration default/hello is owned by Service default/hello: apply the Service instead"},
		{"owned route", `apiVersion: serving.knative.dev/v1
kind: Route
metadata: {name: hello}
spec:
  traffic: [{revisionName: hello-v1, percent: 100}]
`, "Route default/hello is owned by Service default/hello"},
		{"route to unknown configuration", `apiVersion: serving.knative.dev/v1
kind: Route
metadata: {name: r}
spec:
  traffic: [{configurationName: nope, percent: 100}]
`, `Route default/r: spec.traffic[0].configurationName: configuration "nope" not found`},
		{"service over a standalone configuration", strings.ReplaceAll(svcYAML("", "a", ""), "hello", "solo"),
			"Service default/solo: Configuration default/solo already exists and is not owned by this Service"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Apply(base, decode(t, tc.yaml), t0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant %q", err, tc.want)
			}
		})
	}
}

func TestApplyOrderAndAtomicity(t *testing.T) {
	// The second document references the revision the first creates.
	two := svcYAML("hello-v1", "a", "") + "---\n" +
		svcYAML("hello-v2", "b", "  traffic: [{revisionName: hello-v1, percent: 50}, {revisionName: hello-v2, percent: 50}]\n")
	st := apply(t, NewState(), decode(t, two))
	if len(st.Revisions) != 2 {
		t.Fatalf("revisions %v", sortedKeys(st.Revisions))
	}
	// A bad second document admits nothing of the first.
	bad := strings.ReplaceAll(svcYAML("", "a", ""), "hello", "other") + "---\n" + svcYAML("", "c", "  traffic: [{revisionName: nope, percent: 100}]\n")
	before := NewState()
	if _, err := Apply(before, decode(t, bad), t0); err == nil {
		t.Fatal("no error")
	}
	if len(before.Services)+len(before.Revisions) != 0 {
		t.Fatal("Apply mutated its input State")
	}
}

func TestStandaloneConfigurationAndRoute(t *testing.T) {
	st := apply(t, NewState(), decode(t, `apiVersion: serving.knative.dev/v1
kind: Configuration
metadata: {name: cfg}
spec:
  template:
    spec:
      containers: [{image: x}]
---
apiVersion: serving.knative.dev/v1
kind: Route
metadata: {name: front, labels: {networking.knative.dev/visibility: cluster-local}}
spec:
  traffic:
    - configurationName: cfg
      percent: 100
    - revisionName: cfg-00001
      tag: pinned
      percent: 0
`))
	st = settle(t, st, upInstances{"cfg-00001": true}, t0)
	r := st.Routes[Key{"default", "front"}]
	if got := strings.Join(served(st, "default", "front"), " "); got != ":cfg-00001=100 pinned:cfg-00001=0" {
		t.Fatalf("served %s", got)
	}
	if r.Status.URL != "http://front.default.svc.cluster.local" || r.Status.Traffic[1].URL != "http://pinned-front.default.svc.cluster.local" {
		t.Fatalf("urls %q %q", r.Status.URL, r.Status.Traffic[1].URL)
	}
	tab := BuildTable(st, upInstances{"cfg-00001": true}, Config{})
	for _, h := range tab.Hosts {
		if h.Visibility != ClusterLocal {
			t.Fatalf("cluster-local route has external host %s", h.Name)
		}
	}
	if len(tab.Hosts) != 2 {
		t.Fatalf("hosts %+v", tab.Hosts)
	}
}

func TestApplyRejectsHostCollisions(t *testing.T) {
	// hello has tag v1, so its tag host is v1-hello.default.DOMAIN.
	base := apply(t, NewState(), decode(t, svcYAML("hello-v1", "a", "  traffic: [{revisionName: hello-v1, percent: 100, tag: v1}]\n")))
	tagged := func(name, rev, tag string) string {
		y := strings.ReplaceAll(svcYAML(rev, "a", ""), "name: hello\n", "name: "+name+"\n")
		return y + "  traffic: [{revisionName: " + rev + ", percent: 100, tag: " + tag + "}]\n"
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"service named like a tag host", strings.ReplaceAll(svcYAML("v1-hello-a", "a", ""), "name: hello\n", "name: v1-hello\n"),
			`Service default/v1-hello: host v1-hello.default.… is also the host of tag "v1" of Route default/hello`},
		{"tag host named like a service", tagged("world", "world-a", "hello"),
			""}, // hello-world: no route named hello-world, no clash
		{"tag host equal to another tag host", tagged("hello", "hello-v1", "v1"), ""}, // our own tag
		{"tag whose host is another route", tagged("x", "x-a", "v1-hello-is"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Apply(base, decode(t, tc.yaml), t0)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant %q", err, tc.want)
			}
		})
	}

	// A tag whose host is an existing route's main host: tag "v1" on route "x" needs a route
	// named "v1-x" to clash.
	st := apply(t, base, decode(t, strings.ReplaceAll(svcYAML("v1-x-a", "a", ""), "name: hello\n", "name: v1-x\n")))
	_, err := Apply(st, decode(t, tagged("x", "x-a", "v1")), t0)
	want := `Service default/x: host v1-x.default.… is also the main host of Route default/v1-x`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v\nwant %q", err, want)
	}
}
