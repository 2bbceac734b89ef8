package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/wire"
)

func hello(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "Hello bench!\n")
	}))
	t.Cleanup(s.Close)
	return s
}

// Every round measures every target once, the headers reach the target, and keep-alive means
// the connections opened are about the concurrency, not one per request.
func TestBenchRoundsAndHeaders(t *testing.T) {
	var conns, withHeader, total atomic.Int64
	proxy := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		total.Add(1)
		if r.Header.Get(wire.HeaderRevision) == "hello-00001" {
			withHeader.Add(1)
		}
		io.WriteString(w, "Hello bench!\n")
	}))
	proxy.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	proxy.Start()
	t.Cleanup(proxy.Close)
	direct := hello(t)

	cfg := BenchConfig{
		Targets: []Target{
			{Name: "direct", URL: direct.URL, Header: http.Header{}},
			{Name: "activator", URL: proxy.URL, Header: http.Header{wire.HeaderRevision: {"hello-00001"}}},
		},
		Concurrency: 4, Warmup: 10 * time.Millisecond, Duration: 50 * time.Millisecond, Rounds: 3,
		Timeout: 5 * time.Second, Expect: "Hello",
	}
	var log strings.Builder
	rounds, err := Bench(context.Background(), cfg, &log)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"direct", "activator"} {
		if got := len(rounds[name]); got != 3 {
			t.Errorf("%s: %d summaries, want one per round (3)", name, got)
		}
		for i, s := range rounds[name] {
			if s.Errors != 0 || s.Requests == 0 || s.P50 <= 0 || s.Max < s.P99 || s.RPS <= 0 {
				t.Errorf("%s round %d: %+v", name, i+1, s)
			}
		}
	}
	if withHeader.Load() != total.Load() || total.Load() == 0 {
		t.Errorf("%d of %d requests carried the target's header", withHeader.Load(), total.Load())
	}
	if c := conns.Load(); c > int64(cfg.Concurrency) {
		t.Errorf("%d connections for %d requests at concurrency %d: keep-alive not in use", c, total.Load(), cfg.Concurrency)
	}
	// Round 2 starts with the second target.
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[2], "round 2/3  activator") {
		t.Errorf("progress lines:\n%s", log.String())
	}
}

func TestBenchCountsFailures(t *testing.T) {
	var n atomic.Int64
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			http.Error(w, "queue full", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "Hello bench!\n")
	}))
	t.Cleanup(flaky.Close)
	cfg := BenchConfig{
		Targets:     []Target{{Name: "flaky", URL: flaky.URL}},
		Concurrency: 2, Duration: 30 * time.Millisecond, Rounds: 1, Timeout: 5 * time.Second, Expect: "Hello",
	}
	var log strings.Builder
	rounds, err := Bench(context.Background(), cfg, &log)
	if err != nil {
		t.Fatal(err)
	}
	s := rounds["flaky"][0]
	if s.Errors == 0 || s.Errors == s.Requests {
		t.Errorf("summary %+v: want about half the requests failed", s)
	}
	if !strings.Contains(log.String(), "503 Service Unavailable") {
		t.Errorf("the first failure is not reported:\n%s", log.String())
	}
}

func TestBenchChecksTheReplyFirst(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "Welcome to nginx!")
	}))
	t.Cleanup(other.Close)
	cfg := BenchConfig{Targets: []Target{{Name: "nginx", URL: other.URL}}, Concurrency: 1, Duration: time.Millisecond, Rounds: 1, Timeout: time.Second, Expect: "Hello"}
	if _, err := Bench(context.Background(), cfg, io.Discard); err == nil || !strings.Contains(err.Error(), "want 200 with") {
		t.Errorf("Bench against a server that is not the backend: err = %v", err)
	}
}

func TestFirstByte(t *testing.T) {
	s := hello(t)
	d, err := FirstByte(context.Background(), s.URL, http.Header{"X": {"y"}}, 5*time.Second)
	if err != nil || d <= 0 {
		t.Errorf("FirstByte = %v, %v", d, err)
	}
	missing := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(missing.Close)
	if _, err := FirstByte(context.Background(), missing.URL, nil, 5*time.Second); err == nil {
		t.Error("FirstByte of a 404: no error")
	}
}

func TestReadDurations(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.txt")
	if err := os.WriteFile(p, []byte("1.5ms\n\n250µs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readDurations(p)
	if err != nil || len(got) != 2 || got[0] != 1500*time.Microsecond || got[1] != 250*time.Microsecond {
		t.Errorf("readDurations = %v, %v", got, err)
	}
	if err := os.WriteFile(p, []byte("12\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readDurations(p); err == nil {
		t.Error("a duration without unit: no error")
	}
}

// TestMain doubles as the app AppStart starts: with LOADGEN_TEST_APP=serve the test binary serves
// "Hello" on $HOST:$PORT until killed, and with silent it never listens.
func TestMain(m *testing.M) {
	switch os.Getenv("LOADGEN_TEST_APP") {
	case "silent":
		time.Sleep(time.Hour)
		os.Exit(1)
	case "serve":
		addr := net.JoinHostPort(os.Getenv("HOST"), os.Getenv("PORT"))
		_ = http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "Hello app!\n")
		}))
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func TestAppStart(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	d, err := AppStart(context.Background(), self, []string{"LOADGEN_TEST_APP=serve"}, time.Millisecond, 30*time.Second)
	if err != nil || d <= 0 {
		t.Errorf("AppStart = %v, %v", d, err)
	}
	// An app that never answers: the wait ends at the timeout with an error.
	if _, err := AppStart(context.Background(), self, []string{"LOADGEN_TEST_APP=silent"}, time.Millisecond, 300*time.Millisecond); err == nil {
		t.Error("AppStart of an app that never listens: no error")
	}
}
