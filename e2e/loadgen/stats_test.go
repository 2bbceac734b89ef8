package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/wire"
)

const us1 = time.Microsecond

func durations(xs ...int) []time.Duration {
	out := make([]time.Duration, len(xs))
	for i, x := range xs {
		out[i] = time.Duration(x) * us1
	}
	return out
}

func TestQuantileNearestRank(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * us1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", durations(7), 0.99, 7 * us1},
		{"p50 of 100 is the 50th", hundred, 0.50, 50 * us1},
		{"p99 of 100 is the 99th", hundred, 0.99, 99 * us1},
		{"max", hundred, 1, 100 * us1},
		{"p99 of 10 is the largest", durations(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.99, 10 * us1},
		{"p50 of 10 is the 5th, not an interpolation", durations(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.5, 5 * us1},
		{"p90 of 3", durations(1, 2, 3), 0.9, 3 * us1},
	} {
		if got := Quantile(tc.sorted, tc.q); got != tc.want {
			t.Errorf("%s: Quantile(q=%v) = %v, want %v", tc.name, tc.q, got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize(durations(5, 1, 4, 2, 3), 2, 2*time.Second)
	want := Summary{Requests: 7, Errors: 2, P50: 3 * us1, P90: 5 * us1, P99: 5 * us1, Max: 5 * us1, RPS: 2.5}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
}

func TestMedianSummary(t *testing.T) {
	rounds := []Summary{
		{Requests: 10, Errors: 1, P50: 5 * us1, P90: 9 * us1, P99: 20 * us1, Max: 90 * us1, RPS: 100},
		{Requests: 10, P50: 1 * us1, P90: 8 * us1, P99: 30 * us1, Max: 50 * us1, RPS: 300},
		{Requests: 10, P50: 3 * us1, P90: 7 * us1, P99: 10 * us1, Max: 70 * us1, RPS: 200},
	}
	got := MedianSummary(rounds)
	want := Summary{Requests: 30, Errors: 1, P50: 3 * us1, P90: 8 * us1, P99: 20 * us1, Max: 70 * us1, RPS: 200}
	if got != want {
		t.Errorf("MedianSummary = %+v, want %+v", got, want)
	}
	if even := median([]float64{4, 1, 3, 2}); even != 2.5 {
		t.Errorf("median of an even count = %v, want the mean of the middle two, 2.5", even)
	}
}

// The comparison pairs rounds: a target that is always 100µs slower than the baseline in its own
// round reads +100µs however much the rounds themselves drift.
func TestComparePairsRounds(t *testing.T) {
	base := []Summary{{P50: 100 * us1, P99: 1000 * us1, RPS: 1000}, {P50: 500 * us1, P99: 3000 * us1, RPS: 200}, {P50: 300 * us1, P99: 2000 * us1, RPS: 600}}
	proxy := []Summary{{P50: 200 * us1, P99: 1100 * us1, RPS: 800}, {P50: 600 * us1, P99: 3500 * us1, RPS: 160}, {P50: 400 * us1, P99: 2000 * us1, RPS: 300}}
	c, err := Compare(proxy, base)
	if err != nil {
		t.Fatal(err)
	}
	want := Comparison{AddedP50: 100 * us1, AddedP99: 100 * us1, ThroughputRatio: 0.8}
	if c != want {
		t.Errorf("Compare = %+v, want %+v", c, want)
	}
	if _, err := Compare(proxy[:2], base); err == nil {
		t.Error("Compare of 2 rounds against 3: no error")
	}
}

func TestCompareColdStart(t *testing.T) {
	app := durations(5000, 6000, 5000, 7000)
	first := durations(15000, 26000, 9000, 12000) // overheads 10ms, 20ms, 4ms, 5ms
	c, err := CompareColdStart(app, first)
	if err != nil {
		t.Fatal(err)
	}
	want := ColdStart{N: 4,
		AppP50: 5000 * us1, AppP99: 7000 * us1,
		FirstP50: 12000 * us1, FirstP99: 26000 * us1,
		OverheadP50: 5000 * us1, OverheadP99: 20000 * us1,
	}
	if c != want {
		t.Errorf("CompareColdStart = %+v, want %+v", c, want)
	}
	if _, err := CompareColdStart(app, first[:3]); err == nil {
		t.Error("unpaired samples: no error")
	}
}

func TestReportVerdicts(t *testing.T) {
	targets := []Target{{Name: "direct"}, {Name: "activator"}, {Name: "nginx"}}
	rounds := map[string][]Summary{
		"direct":    {{P50: 100 * us1, RPS: 1000, CPU: CPUPerRequest{Measured: true, Loadgen: 21 * us1, Backend: 19 * us1}}},
		"activator": {{P50: 400 * us1, RPS: 800, Errors: 0, CPU: CPUPerRequest{Measured: true, Loadgen: 23 * us1, Backend: 20 * us1, Proxy: 37 * us1}}},
		"nginx":     {{P50: 150 * us1, RPS: 500, Errors: 3}},
	}
	var b strings.Builder
	failed, err := Report(&b, targets, "direct", "activator", rounds, Goals{AddedP50: 200 * us1, ThroughputRatio: 0.7})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !failed {
		t.Error("nginx had errors, Report says none failed")
	}
	for _, want := range []string{"goal NOT met: activator added p50 +300µs ≤ 200µs", "goal met:     activator throughput 80% of direct ≥ 70%", "+50µs", "50%",
		"CPU/req: loadgen", "37µs", "19µs"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "goal met:     nginx") || strings.Contains(out, "goal NOT met: nginx") {
		t.Errorf("goals checked for nginx, which is not the goal target:\n%s", out)
	}
}

func TestParseTargets(t *testing.T) {
	got, err := parseTargets(
		[]string{"direct=http://127.0.0.1:1/", "activator=http://127.0.0.1:2/"},
		[]string{"activator:" + wire.HeaderNamespace + ": default", "activator:" + wire.HeaderRevision + ":hello-00001"},
		[]string{"activator=12,34", "activator=56"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "direct" || len(got[0].Header) != 0 {
		t.Fatalf("targets = %+v", got)
	}
	if ns, rev := got[1].Header.Get(wire.HeaderNamespace), got[1].Header.Get(wire.HeaderRevision); ns != "default" || rev != "hello-00001" {
		t.Errorf("activator headers = %v", got[1].Header)
	}
	if !slices.Equal(got[1].Proxy, []int{12, 34, 56}) || got[0].Proxy != nil {
		t.Errorf("proxy processes: direct %v, activator %v; want none and [12 34 56]", got[0].Proxy, got[1].Proxy)
	}
	for _, bad := range [][3][]string{
		{nil, nil, nil},
		{{"direct"}, nil, nil},
		{{"a:b=http://x/"}, nil, nil},
		{{"d=http://x/", "d=http://y/"}, nil, nil},
		{{"d=http://x/"}, {"other:K: v"}, nil},
		{{"d=http://x/"}, {"d:novalue"}, nil},
		{{"d=http://x/"}, nil, {"other=1"}},
		{{"d=http://x/"}, nil, {"d=1,x"}},
		{{"d=http://x/"}, nil, {"d=0"}},
	} {
		if _, err := parseTargets(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("parseTargets(%q, %q, %q): no error", bad[0], bad[1], bad[2])
		}
	}
}
