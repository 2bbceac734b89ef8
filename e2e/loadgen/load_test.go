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

// Every round measures every target once, for exactly the requests asked, the headers reach the
// target, and keep-alive means the connections opened are about the concurrency, not one per
// request. Rounds are bounded by request count, not time: a round of 50ms can pass on a loaded
// machine before its first request is sent.
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

	const perRound, rounds = 100, 3
	cfg := BenchConfig{
		Targets: []Target{
			{Name: "direct", URL: direct.URL, Header: http.Header{}},
			{Name: "activator", URL: proxy.URL, Header: http.Header{wire.HeaderRevision: {"hello-00001"}}},
		},
		Concurrency: 4, Warmup: 10 * time.Millisecond, Requests: perRound, Rounds: rounds,
		Timeout: 30 * time.Second, Expect: "Hello",
	}
	var log strings.Builder
	got, err := Bench(context.Background(), cfg, &log)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"direct", "activator"} {
		if n := len(got[name]); n != rounds {
			t.Errorf("%s: %d summaries, want one per round (%d)", name, n, rounds)
		}
		for i, s := range got[name] {
			if s.Requests != perRound || s.Errors != 0 || s.P50 <= 0 || s.Max < s.P99 || s.RPS <= 0 {
				t.Errorf("%s round %d: %+v, want %d requests, no errors", name, i+1, s, perRound)
			}
		}
	}
	// The check before the run, the measured rounds and whatever the warm-ups sent.
	if n := total.Load(); n < 1+rounds*perRound || withHeader.Load() != n {
		t.Errorf("%d of %d requests carried the target's header; want all of at least %d", withHeader.Load(), n, 1+rounds*perRound)
	}
	// Keep-alive holds at most Concurrency connections open, but net/http closes a connection
	// instead of reusing it when its own write goroutine has not reported the request written
	// within 50ms of the reply (maxWriteWaitBeforeConnReuse, which Go's own tests raise "to avoid
	// flakiness"), so a loaded machine opens a few more, a number no bound can be sure of.
	// Without keep-alive every request opens one. That the pool keeps a connection per worker is
	// TestTransportKeepsAConnectionPerWorker's.
	if c, n := conns.Load(), total.Load(); c > n/10 {
		t.Errorf("%d connections for %d requests at concurrency %d: keep-alive not in use", c, n, cfg.Concurrency)
	}
	// Round 2 starts with the second target.
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 2*rounds || !strings.HasPrefix(lines[2], "round 2/3  activator") {
		t.Errorf("progress lines:\n%s", log.String())
	}
}

// The transport keeps an idle connection for each of the conc workers and opens no more than
// conc: with a smaller idle pool the workers would keep dialing, and the dials would be measured.
func TestTransportKeepsAConnectionPerWorker(t *testing.T) {
	tr := newTransport(16)
	if tr.DisableKeepAlives || tr.MaxIdleConnsPerHost < 16 || (tr.MaxIdleConns != 0 && tr.MaxIdleConns < 16) || tr.MaxConnsPerHost != 16 {
		t.Errorf("transport for 16 workers: keep-alives disabled %v, idle %d (per host %d), most %d per host; want keep-alive, 16 idle, 16 at most",
			tr.DisableKeepAlives, tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost)
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
		Concurrency: 2, Requests: 20, Rounds: 1, Timeout: 30 * time.Second, Expect: "Hello",
	}
	var log strings.Builder
	rounds, err := Bench(context.Background(), cfg, &log)
	if err != nil {
		t.Fatal(err)
	}
	// The check before the run was the server's first request; of the 20 measured after it,
	// every other one, 10, failed.
	s := rounds["flaky"][0]
	if s.Requests != 20 || s.Errors != 10 {
		t.Errorf("summary %+v: want 20 requests, 10 of them failed", s)
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
	cfg := BenchConfig{Targets: []Target{{Name: "nginx", URL: other.URL}}, Concurrency: 1, Duration: time.Millisecond, Rounds: 1, Timeout: 30 * time.Second, Expect: "Hello"}
	if _, err := Bench(context.Background(), cfg, io.Discard); err == nil || !strings.Contains(err.Error(), "want 200 with") {
		t.Errorf("Bench against a server that is not the backend: err = %v", err)
	}
}

func TestFirstByte(t *testing.T) {
	s := hello(t)
	d, err := FirstByte(context.Background(), s.URL, http.Header{"X": {"y"}}, 30*time.Second)
	if err != nil || d <= 0 {
		t.Errorf("FirstByte = %v, %v", d, err)
	}
	missing := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(missing.Close)
	if _, err := FirstByte(context.Background(), missing.URL, nil, 30*time.Second); err == nil {
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
