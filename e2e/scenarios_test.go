package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The hosts of the walkthrough's service "hello" in namespace default, domain example.com.
const (
	mainHost   = "hello.default.example.com"
	v1Host     = "v1-hello.default.example.com"
	v2Host     = "v2-hello.default.example.com"
	latestHost = "latest-hello.default.example.com"
)

// helloService is the Knative walkthrough's helloworld-go Service (shared/seeds/000: blue-green and
// canary with tags v1, v2 and latest), named hello, with generated revision names (hello-00001,
// hello-00002) and each revision's instance given by the sluice.dev/endpoints annotation. The
// port is named h2c so that gateways speak HTTP/2 (and so gRPC) to the instances.
func helloService(target, endpoint, traffic string) string {
	return fmt.Sprintf(`# helloworld-go, as in the Knative walkthrough, with a static instance.
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
  namespace: default
spec:
  template:
    metadata:
      annotations:
        sluice.dev/endpoints: "%s"
    spec:
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
          ports:
            - name: h2c
              containerPort: 8080
          env:
            - name: TARGET
              value: "%s"
%s`, endpoint, target, traffic)
}

// trafficBlock is a walkthrough traffic block: tags v1 and v2 on the two revisions, latest at 0%.
func trafficBlock(v1, v2 int) string {
	return fmt.Sprintf(`  traffic:
    - tag: v1
      revisionName: hello-00001
      percent: %d
    - tag: v2
      revisionName: hello-00002
      percent: %d
    - tag: latest
      latestRevision: true
      percent: 0
`, v1, v2)
}

// helloEnv is sluice serving hello with two revisions at 80/20, seen through one data plane.
type helloEnv struct {
	s      *sluiceServer
	v1, v2 *backend
	dp     dataPlane
}

// forEachDataPlane runs fn once through gRPC-Go's xDS client and once through Envoy over HTTP
// (skipped, saying so, when envoy is not on PATH).
func forEachDataPlane(t *testing.T, fn func(t *testing.T, e *helloEnv)) {
	t.Run("grpc-xds", func(t *testing.T) {
		needBinaries(t)
		e := &helloEnv{v1: startBackend(t, "v1"), v2: startBackend(t, "v2")}
		e.s = startSluice(t)
		e.dp = newGRPCPlane(t, e.s.xdsAddr)
		e.setup(t)
		fn(t, e)
	})
	t.Run("envoy", func(t *testing.T) {
		g := needEnvoy(t)
		e := &helloEnv{v1: startBackend(t, "v1"), v2: startBackend(t, "v2")}
		e.s = startSluice(t, g.sluiceFlags()...)
		e.dp = g.start(t, e.s)
		e.setup(t)
		fn(t, e)
	})
}

// setup walks the article: v1 alone, then v2 with blue-green tags (100/0), then the 80/20 canary.
func (e *helloEnv) setup(t *testing.T) {
	t.Helper()
	e.s.mustApply("hello-v1.yaml", helloService("v1", e.v1.addr, ""))
	waitAnswers(t, e.dp, mainHost, "", "v1", 20)

	e.s.mustApply("hello-blue-green.yaml", helloService("v2", e.v2.addr, trafficBlock(100, 0)))
	waitAnswers(t, e.dp, v2Host, "", "v2", 20)
	waitAnswers(t, e.dp, mainHost, "", "v1", 20)

	e.s.mustApply("hello-canary.yaml", helloService("v2", e.v2.addr, trafficBlock(80, 20)))
	// Under 80/20 the chance of 100 answers in a row from v1 is 0.8^100 ≈ 2e-10, so seeing v2 at
	// all is how we know the canary arrived; wait for it.
	waitFor(t, waitTimeout, "the canary's first answer from v2", func() (bool, string) {
		c := measureQuiet(e.dp, mainHost, "", 100)
		return c["v2"] > 0, c.String()
	})
}

// measureQuiet is measure for wait conditions: errors count as answers from "error".
func measureQuiet(dp dataPlane, host, tag string, n int) counts {
	got := counts{}
	for range n {
		id, err := callOnce(dp, host, tag, 2*time.Second)
		if err != nil {
			got["error"]++
			continue
		}
		got[id]++
	}
	return got
}

// checkSplit measures n requests to the main host and checks v1's share is want% ± tolerance points.
func checkSplit(t *testing.T, dp dataPlane, n int, want, tolerance float64) {
	t.Helper()
	c := measure(t, dp, mainHost, "", n)
	if other := c.total() - c["v1"] - c["v2"]; other != 0 {
		t.Fatalf("answers from backends other than v1 and v2: %s", c)
	}
	got := 100 * float64(c["v1"]) / float64(n)
	if got < want-tolerance || got > want+tolerance {
		t.Errorf("v1 got %.1f%% of %d requests (%s), want %.0f%% ± %.0f points", got, n, c, want, tolerance)
	} else {
		t.Logf("split over %d requests: %s (v1 %.1f%%, want %.0f%% ± %.0f)", n, c, got, want, tolerance)
	}
}

// TestCanarySplit is scenario (a): the 80/20 canary measured over 2,000 requests lands within ±4 points.
func TestCanarySplit(t *testing.T) {
	forEachDataPlane(t, func(t *testing.T, e *helloEnv) {
		checkSplit(t, e.dp, 2000, 80, 4)
	})
}

// TestTags is scenario (b): each tag host reaches only its revision, and the Knative-Serving-Tag
// header on the main host reaches the tagged revision.
func TestTags(t *testing.T) {
	forEachDataPlane(t, func(t *testing.T, e *helloEnv) {
		for _, tc := range []struct {
			host, tag, want string
		}{
			{v1Host, "", "v1"},
			{v2Host, "", "v2"},
			{latestHost, "", "v2"}, // latest is hello-00002
			{mainHost, "v1", "v1"},
			{mainHost, "v2", "v2"},
			{mainHost, "latest", "v2"},
		} {
			c := measure(t, e.dp, tc.host, tc.tag, 200)
			if c[tc.want] != 200 {
				t.Errorf("%s with tag header %q: got %s, want all 200 from %s", tc.host, tc.tag, c, tc.want)
			}
		}
	})
}

// TestCutoverAndRollback is scenario (c): `sluice service update` moves all traffic to v2 and back
// while requests keep flowing, and not one of them fails.
func TestCutoverAndRollback(t *testing.T) {
	forEachDataPlane(t, func(t *testing.T, e *helloEnv) {
		load := startLoad(t, e.dp, mainHost, 2)
		load.waitMore(t, 200)

		e.s.mustCLI("service", "update", "hello", "--traffic", "hello-00001=0", "--traffic", "hello-00002=100")
		load.waitStreak(t, "v2", 500)

		e.s.mustCLI("service", "update", "hello", "--traffic", "hello-00001=100", "--traffic", "hello-00002=0")
		load.waitStreak(t, "v1", 500)

		load.requireNoFailures(t)
		// The served traffic reported by the API agrees with what the data plane saw.
		if got := routeTraffic(t, e.s); got["hello-00001"] != 100 || got["hello-00002"] != 0 {
			t.Errorf("route status traffic after rollback = %v, want hello-00001=100 hello-00002=0", got)
		}
	})
}

// TestRestart is scenario (d): sluice restarted on the same data dir serves the same routes, and
// the client keeps working throughout, including while sluice is down (it keeps the last config).
func TestRestart(t *testing.T) {
	forEachDataPlane(t, func(t *testing.T, e *helloEnv) {
		if got := routeTraffic(t, e.s); got["hello-00001"] != 80 || got["hello-00002"] != 20 {
			t.Fatalf("route status traffic before the restart = %v, want hello-00001=80 hello-00002=20", got)
		}
		before := getJSON(t, e.s, "routes", "hello")
		load := startLoad(t, e.dp, mainHost, 2)
		load.waitMore(t, 100)

		e.s.stop()
		if _, _, err := httpGet("http://" + e.s.apiAddr + "/healthz"); err == nil {
			t.Fatal("sluice still answers after it was stopped")
		}
		// Long enough for the client to have lost its xDS stream and retried at least once
		// (gRPC's xDS client backs off from 1s), at the pace of the load loop.
		load.waitMore(t, 1500) // served while sluice is down
		e.s.start()
		load.waitMore(t, 300) // and after it is back (the client reconnects)

		after := getJSON(t, e.s, "routes", "hello")
		for _, field := range []string{"spec", "status.traffic", "status.url"} {
			b, a := jsonField(before, field), jsonField(after, field)
			if b != a {
				t.Errorf("route %s changed across the restart:\nbefore: %s\nafter:  %s", field, b, a)
			}
		}

		// The restarted sluice is really driving the client: a change made now arrives.
		e.s.mustCLI("service", "update", "hello", "--traffic", "hello-00001=0", "--traffic", "hello-00002=100")
		load.waitStreak(t, "v2", 500)
		load.requireNoFailures(t)
	})
}

// TestBadInput is scenario (e): bad input exits non-zero with a one-line message naming the
// problem, changes nothing, and the client still gets the old split.
func TestBadInput(t *testing.T) {
	forEachDataPlane(t, func(t *testing.T, e *helloEnv) {
		before := getJSON(t, e.s, "routes", "hello")
		load := startLoad(t, e.dp, mainHost, 1)

		good := helloService("v2", e.v2.addr, trafficBlock(80, 20))
		for _, tc := range []struct {
			name string
			file string // for apply: the file's content
			args []string
			want []string // substrings of the error, case-insensitive
		}{
			{
				name: "yaml syntax",
				file: strings.Replace(good, "  traffic:\n", "  traffic: [\n", 1),
				want: []string{"bad-yaml-syntax.yaml"},
			},
			{
				name: "unknown field",
				file: strings.Replace(good, "  traffic:\n", "  trafic:\n", 1),
				want: []string{"bad-unknown-field.yaml", "trafic"},
			},
			{
				name: "traffic sums to 90",
				file: helloService("v2", e.v2.addr, trafficBlock(80, 10)),
				want: []string{"bad-traffic-sums-to-90.yaml", "90"},
			},
			{
				name: "unknown revision",
				file: strings.Replace(good, "revisionName: hello-00002", "revisionName: hello-00009", 1),
				want: []string{"bad-unknown-revision.yaml", "hello-00009"},
			},
			{
				name: "update sums to 90",
				args: []string{"service", "update", "hello", "--traffic", "hello-00001=80", "--traffic", "hello-00002=10"},
				want: []string{"90"},
			},
			{
				name: "update of an unknown revision",
				args: []string{"service", "update", "hello", "--traffic", "hello-00009=100"},
				want: []string{"hello-00009"},
			},
			{
				name: "update of an unknown service",
				args: []string{"service", "update", "nosuch", "--traffic", "nosuch-00001=100"},
				want: []string{"nosuch"},
			},
		} {
			t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
				var r cliResult
				if tc.file != "" {
					r = e.s.apply("bad-"+strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.file)
				} else {
					r = e.s.cli(tc.args...)
				}
				checkCLIError(t, r, tc.want...)
			})
		}

		// A dry run of a valid change (the cutover) validates it and changes nothing.
		path := writeTemp(t, "dry-run-cutover.yaml", helloService("v2", e.v2.addr, trafficBlock(0, 100)))
		e.s.mustCLI("apply", "--dry-run", "-f", path)

		load.waitMore(t, 200) // the data plane keeps answering after all of that

		// An unreachable server is an error too, naming where it tried.
		dead := "http://" + loopback(freePort(t))
		checkCLIError(t, runCLI(t, dead, "get", "services"), strings.TrimPrefix(dead, "http://"))

		if after := getJSON(t, e.s, "routes", "hello"); jsonField(after, "spec") != jsonField(before, "spec") ||
			jsonField(after, "status.traffic") != jsonField(before, "status.traffic") {
			t.Errorf("route changed:\nbefore: %s\nafter:  %s", jsonField(before, ""), jsonField(after, ""))
		}
		load.requireNoFailures(t)
		checkSplit(t, e.dp, 2000, 80, 4)
	})
}

// checkCLIError wants a non-zero exit and a one-line error on stderr that mentions every want.
func checkCLIError(t *testing.T, r cliResult, want ...string) {
	t.Helper()
	if r.code == 0 {
		t.Errorf("want a non-zero exit, got %s", r)
		return
	}
	msg := strings.TrimSpace(r.stderr)
	if msg == "" {
		t.Errorf("want an error message on stderr, got %s", r)
		return
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("want a one-line error, got %d lines: %s", strings.Count(msg, "\n")+1, r)
	}
	for _, w := range want {
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
			t.Errorf("error does not mention %q: %s", w, r)
		}
	}
	t.Logf("sluice %s -> exit %d: %s", strings.Join(r.args, " "), r.code, msg)
}

// getJSON returns `sluice get KIND NAME -o json` decoded.
func getJSON(t *testing.T, s *sluiceServer, kind, name string) map[string]any {
	t.Helper()
	r := s.mustCLI("get", kind, name, "-o", "json")
	var obj map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &obj); err != nil {
		t.Fatalf("sluice get %s %s -o json: %v\n%s", kind, name, err, r.stdout)
	}
	if items, ok := obj["items"].([]any); ok { // a list of one
		if len(items) != 1 {
			t.Fatalf("sluice get %s %s: %d items, want 1", kind, name, len(items))
		}
		obj, _ = items[0].(map[string]any)
	}
	return obj
}

// jsonField is the canonical JSON of a dotted path in obj ("" for all of it).
func jsonField(obj map[string]any, path string) string {
	var v any = obj
	if path != "" {
		for _, k := range strings.Split(path, ".") {
			m, _ := v.(map[string]any)
			v = m[k]
		}
	}
	b, _ := json.Marshal(v) // map keys are sorted: canonical
	return string(b)
}

// routeTraffic is the served traffic in the route's status: revision name → percent.
func routeTraffic(t *testing.T, s *sluiceServer) map[string]int {
	t.Helper()
	obj := getJSON(t, s, "routes", "hello")
	got := map[string]int{}
	status, _ := obj["status"].(map[string]any)
	traffic, _ := status["traffic"].([]any)
	for _, e := range traffic {
		m, _ := e.(map[string]any)
		rev, _ := m["revisionName"].(string)
		pct, _ := m["percent"].(float64)
		got[rev] += int(pct)
	}
	return got
}
