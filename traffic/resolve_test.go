package traffic

import (
	"testing"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

func TestFollows(t *testing.T) {
	for _, c := range []struct {
		name   string
		target v1.TrafficTarget
		want   string
	}{
		{"revision", v1.TrafficTarget{RevisionName: "hello-00001", LatestRevision: ptr(false)}, ""},
		{"latest of a Service's route", v1.TrafficTarget{LatestRevision: ptr(true)}, "hello"},
		{"configurationName", v1.TrafficTarget{ConfigurationName: "other", LatestRevision: ptr(true)}, "other"},
		{"revision wins over configurationName", v1.TrafficTarget{RevisionName: "hello-00001", ConfigurationName: "other"}, ""},
	} {
		if got := Follows(c.target, "hello"); got != c.want {
			t.Errorf("%s: Follows = %q, want %q", c.name, got, c.want)
		}
	}
}

// world is a Lookup over a few configurations and revisions: latest maps a configuration to its
// latest ready revision, ready a revision to whether it is ready.
type world struct {
	latest map[string]string
	ready  map[string]bool
}

func (w world) LatestReadyRevision(c string) (string, bool) {
	r, ok := w.latest[c]
	return r, ok
}

func (w world) RevisionReady(r string) (found, ready bool, message string) {
	ready, found = w.ready[r]
	if found && !ready {
		message = "probe failed"
	}
	return found, ready, message
}

// target builds a spec entry tersely: rev "@latest" means latestRevision: true, "cfg:NAME" a
// configurationName.
func target(rev string, pct int64, tag string) v1.TrafficTarget {
	switch {
	case rev == Latest:
		return v1.TrafficTarget{Tag: tag, LatestRevision: ptr(true), Percent: ptr(pct)}
	case len(rev) > 4 && rev[:4] == "cfg:":
		return v1.TrafficTarget{Tag: tag, ConfigurationName: rev[4:], LatestRevision: ptr(true), Percent: ptr(pct)}
	}
	return tt(rev, pct, tag)
}

func TestResolve(t *testing.T) {
	w := world{
		latest: map[string]string{"hello": "hello-00002", "fresh": "", "other": "other-00001"},
		ready:  map[string]bool{"hello-00001": true, "hello-00002": true, "hello-00003": false, "other-00001": true},
	}
	resolved := func(rev string, pct int64, tag string, latest bool) v1.TrafficTarget {
		return v1.TrafficTarget{Tag: tag, RevisionName: rev, LatestRevision: ptr(latest), Percent: ptr(pct)}
	}
	for _, c := range []struct {
		name    string
		route   string
		spec    []v1.TrafficTarget
		want    []v1.TrafficTarget
		reason  Reason
		message string
	}{
		{
			name:  "latest follows the Service's configuration",
			route: "hello",
			spec:  []v1.TrafficTarget{target(Latest, 100, "")},
			want:  []v1.TrafficTarget{resolved("hello-00002", 100, "", true)},
		},
		{
			name:  "canary: a named revision and latest, order and tags kept",
			route: "hello",
			spec:  []v1.TrafficTarget{target("hello-00001", 80, "stable"), target(Latest, 20, "")},
			want:  []v1.TrafficTarget{resolved("hello-00001", 80, "stable", false), resolved("hello-00002", 20, "", true)},
		},
		{
			name:  "configurationName of a standalone route",
			route: "r",
			spec:  []v1.TrafficTarget{target("cfg:other", 50, ""), target("hello-00001", 50, "v1")},
			want:  []v1.TrafficTarget{resolved("other-00001", 50, "", true), resolved("hello-00001", 50, "v1", false)},
		},
		{
			name: "no traffic resolves to none", route: "hello",
		},
		{
			name: "configuration missing", route: "r", spec: []v1.TrafficTarget{target("cfg:nope", 100, "")},
			reason: RevisionMissing, message: `Configuration "nope" not found`,
		},
		{
			name: "configuration without a ready revision", route: "fresh", spec: []v1.TrafficTarget{target(Latest, 100, "")},
			reason: RevisionMissing, message: `Configuration "fresh" does not have any ready Revision`,
		},
		{
			name: "revision missing", route: "hello", spec: []v1.TrafficTarget{target("hello-00001", 50, ""), target("hello-00009", 50, "")},
			reason: RevisionMissing, message: `Revision "hello-00009" referenced in traffic not found`,
		},
		{
			name: "revision not ready, even at 0%", route: "hello", spec: []v1.TrafficTarget{target(Latest, 100, ""), target("hello-00003", 0, "next")},
			reason: RevisionNotReady, message: `Revision "hello-00003" referenced in traffic is not ready: probe failed`,
		},
		{
			name: "the first problem is reported", route: "hello", spec: []v1.TrafficTarget{target("hello-00003", 50, ""), target("hello-00009", 50, "")},
			reason: RevisionNotReady, message: `Revision "hello-00003" referenced in traffic is not ready: probe failed`,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := js(t, c.spec)
			// A used buffer: Resolve must overwrite, not append to, what it holds.
			buf := []v1.TrafficTarget{resolved("stale", 1, "x", false)}
			got, reason, message := Resolve(buf, c.spec, c.route, w)
			if js(t, c.spec) != before {
				t.Errorf("Resolve modified its input")
			}
			if reason != c.reason || message != c.message {
				t.Fatalf("Resolve = %v, %q, want %v, %q", reason, message, c.reason, c.message)
			}
			if reason != Servable {
				return
			}
			if len(got) == 0 && len(c.want) == 0 {
				return
			}
			if g, w := js(t, got), js(t, c.want); g != w {
				t.Errorf("resolved =\n%s\nwant\n%s", g, w)
			}
		})
	}
}
