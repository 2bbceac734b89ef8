//go:build unix

package local

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/routing"
)

// Binaries built once for all tests.
var helloworldBin, testappBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-local-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helloworldBin = filepath.Join(dir, "helloworld")
	testappBin = filepath.Join(dir, "testapp")
	for bin, pkg := range map[string]string{helloworldBin: "../../examples/helloworld", testappBin: "./testdata/testapp"} {
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitTimeout is a failsafe against a hung test, not a timing assertion.
const waitTimeout = 30 * time.Second

func newSupervisor(t testing.TB, opts Options) *Supervisor {
	t.Helper()
	if opts.LogsDir == "" {
		opts.LogsDir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DrainPeriod == 0 {
		opts.DrainPeriod = -1
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after t.TempDir's cleanup, so it runs first: no process outlives a test.
	t.Cleanup(func() { s.Close() })
	return s
}

// waitFor waits until cond holds for key's status and returns that status.
func waitFor(t testing.TB, s *Supervisor, key routing.Key, what string, cond func(RevisionStatus) bool) RevisionStatus {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		st, _ := s.Revision(key)
		if cond(st) {
			return st
		}
		select {
		case <-s.Changes():
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%s: gave up after %v waiting for %s; last status %+v", key, waitTimeout, what, st)
		}
	}
}

func httpGet(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(b)
}

// alive says whether pid is a live process; a zombie nobody reaped is dead.
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func helloSpec() Spec {
	return Spec{
		Command:                []string{helloworldBin},
		Env:                    []string{"TARGET=sluice", "HOST=127.0.0.1", "K_REVISION=hello-00001"},
		Probe:                  Probe{HTTPGet: &HTTPGetProbe{Path: "/"}, Timeout: time.Second, Period: time.Second, SuccessThreshold: 1, FailureThreshold: 3},
		TerminationGracePeriod: 10 * time.Second,
	}
}

func appSpec(env ...string) Spec {
	return Spec{
		Command:                []string{testappBin},
		Env:                    env,
		Probe:                  Probe{Timeout: time.Second, Period: time.Second, SuccessThreshold: 1, FailureThreshold: 3},
		TerminationGracePeriod: 10 * time.Second,
	}
}

func TestScaleUpDownToZero(t *testing.T) {
	type call struct {
		addr       string
		readyAddrs []routing.Endpoint
		state      InstanceState
		alive      bool
	}
	var (
		mu    sync.Mutex
		calls []call
		s     *Supervisor
	)
	key := routing.Key{Namespace: "default", Name: "hello-00001"}
	s = newSupervisor(t, Options{
		BeforeStop: func(_ context.Context, k routing.Key, addr string) error {
			st, _ := s.Revision(k)
			c := call{addr: addr, readyAddrs: st.Endpoints()}
			for _, in := range st.Instances {
				if in.Addr == addr {
					c.state, c.alive = in.State, alive(in.PID)
				}
			}
			mu.Lock()
			calls = append(calls, c)
			mu.Unlock()
			return nil
		},
	})

	s.Scale(key, helloSpec(), 2)
	st := waitFor(t, s, key, "2 ready", func(st RevisionStatus) bool { return st.Ready == 2 })
	if st.Desired != 2 || st.Actual != 2 || len(st.Endpoints()) != 2 {
		t.Fatalf("status = %+v, want 2 desired, actual and endpoints", st)
	}
	if !slices.Contains(s.Changed(), key) {
		t.Errorf("Changed() does not report %s after it got ready instances", key)
	}
	for _, in := range st.Instances {
		if got := httpGet(t, "http://"+in.Addr+"/"); got != "Hello sluice!\n" {
			t.Errorf("instance %s at %s answered %q, want TARGET from the env", in.Name, in.Addr, got)
		}
	}
	pids := []int{st.Instances[0].PID, st.Instances[1].PID}
	newest := st.Instances[1]

	s.Scale(key, helloSpec(), 1)
	st = waitFor(t, s, key, "1 instance", func(st RevisionStatus) bool { return len(st.Instances) == 1 })
	if st.Instances[0].Name != st.Instances[0].Name || st.Instances[0].PID != pids[0] {
		t.Errorf("scale down kept %+v, want the oldest (pid %d) kept", st.Instances[0], pids[0])
	}
	if alive(newest.PID) {
		t.Errorf("stopped instance %s (pid %d) still runs", newest.Name, newest.PID)
	}
	mu.Lock()
	got := slices.Clone(calls)
	mu.Unlock()
	if len(got) != 1 || got[0].addr != newest.Addr {
		t.Fatalf("BeforeStop calls = %+v, want one for the newest instance %s", got, newest.Addr)
	}
	// BeforeStop runs before SIGTERM, with the instance already out of the ready set.
	if !got[0].alive || got[0].state != StateDraining || slices.ContainsFunc(got[0].readyAddrs, func(e routing.Endpoint) bool {
		return fmt.Sprintf("127.0.0.1:%d", e.Port) == newest.Addr
	}) {
		t.Errorf("at BeforeStop: %+v; want the process alive, Draining and not among the ready endpoints", got[0])
	}

	s.Scale(key, helloSpec(), 0)
	st = waitFor(t, s, key, "no instance", func(st RevisionStatus) bool { return len(st.Instances) == 0 })
	if st.Desired != 0 || st.Actual != 0 || st.Ready != 0 {
		t.Errorf("status = %+v, want all zero", st)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still runs after scaling to zero", pid)
		}
	}
	if n := len(calls); n != 2 {
		t.Errorf("BeforeStop called %d times, want 2 (one per ready instance stopped)", n)
	}
	// The helloworld stops gracefully on SIGTERM and logs it.
	data, err := os.ReadFile(filepath.Join(s.opts.LogsDir, "default", "hello-00001", "hello-00001-1.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "helloworld listening") || !strings.Contains(string(data), "helloworld stopping") {
		t.Errorf("log of instance 1 = %q, want its start and graceful stop", data)
	}
}

func TestTCPProbeAndEnv(t *testing.T) {
	s := newSupervisor(t, Options{})
	key := routing.Key{Namespace: "team-a", Name: "app-00003"}
	s.Scale(key, appSpec("GREETING=hi", "K_REVISION=app-00003"), 1)
	st := waitFor(t, s, key, "1 ready", func(st RevisionStatus) bool { return st.Ready == 1 })
	addr := st.Instances[0].Addr
	_, port, _ := strings.Cut(addr, ":")
	for name, want := range map[string]string{"PORT": port, "GREETING": "hi", "K_REVISION": "app-00003", "SLUICE_TOKEN": "", "PATH": os.Getenv("PATH")} {
		if got := httpGet(t, "http://"+addr+"/env/"+name); got != want {
			t.Errorf("$%s in the instance = %q, want %q", name, got, want)
		}
	}
	eps := s.Instances(revisionNamed(key)).Endpoints
	if len(eps) != 1 || fmt.Sprintf("%s:%d", eps[0].Host, eps[0].Port) != addr {
		t.Errorf("Instances() endpoints = %+v, want %s", eps, addr)
	}
}

func TestCrashRestartsWithBackoffAndReason(t *testing.T) {
	s := newSupervisor(t, Options{Backoff: Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond}})
	key := routing.Key{Namespace: "default", Name: "crash-00001"}
	s.Scale(key, appSpec("APP_MODE=crash"), 1)
	st := waitFor(t, s, key, "2 restarts", func(st RevisionStatus) bool {
		return len(st.Instances) == 1 && st.Instances[0].Restarts >= 2 && st.Instances[0].State == StateCrashed
	})
	in := st.Instances[0]
	if in.LastExit != "exit status 1: fatal: boom" {
		t.Errorf("LastExit = %q, want the exit code and the last stderr line", in.LastExit)
	}
	if st.Ready != 0 || st.Actual != 1 {
		t.Errorf("status = %+v, want 1 actual, 0 ready", st)
	}
	got := s.Instances(revisionNamed(key))
	if got.Ready || got.Reason != ReasonInstanceCrashed || !strings.Contains(got.Message, "fatal: boom") {
		t.Errorf("Instances() = %+v, want not ready with the crash as reason", got)
	}
	// Restarting keeps the same instance and its name; the log has every run.
	data, _ := os.ReadFile(filepath.Join(s.opts.LogsDir, "default", "crash-00001", "crash-00001-1.log"))
	if n := strings.Count(string(data), "about to crash"); n < 3 {
		t.Errorf("log has %d runs, want at least 3:\n%s", n, data)
	}
}

// An instance that ignores SIGTERM is SIGKILLed, with its children, once its grace period is
// over, and it got the SIGTERM first. The grace is short to keep the test quick, but the app needs
// some CPU to log that SIGTERM, which a loaded machine may not give it within 200ms: then the
// test runs again with a grace long enough. An app that never gets a SIGTERM fails both.
func TestKillAfterGracePeriodWithChildren(t *testing.T) {
	for _, grace := range []time.Duration{200 * time.Millisecond, 10 * time.Second} {
		if killAfterGrace(t, grace) || t.Failed() {
			return
		}
		t.Logf("the app did not log its SIGTERM within a grace of %v", grace)
	}
	t.Error("the app never logged a SIGTERM before its SIGKILL")
}

// killAfterGrace runs an app that ignores SIGTERM and has a child, stops it with the grace given,
// checks that both are gone, and says whether the app logged the SIGTERM before the SIGKILL.
func killAfterGrace(t *testing.T, grace time.Duration) (gotTerm bool) {
	t.Helper()
	s := newSupervisor(t, Options{MaxTerminationGracePeriod: grace})
	key := routing.Key{Namespace: "default", Name: "stubborn-00001"}
	s.Scale(key, appSpec("APP_IGNORE_TERM=1", "APP_CHILD=1"), 1)
	st := waitFor(t, s, key, "1 ready", func(st RevisionStatus) bool { return st.Ready == 1 })
	pid := st.Instances[0].PID
	logPath := filepath.Join(s.opts.LogsDir, "default", "stubborn-00001", "stubborn-00001-1.log")
	// The app wrote the line before it listened, but the supervisor copies its output to the
	// log on a goroutine of its own, which may not have got to it yet.
	child := 0
	deadline := time.Now().Add(waitTimeout)
	for child == 0 && time.Now().Before(deadline) {
		for _, line := range strings.Split(readFile(t, logPath), "\n") {
			if v, ok := strings.CutPrefix(line, "child "); ok {
				child, _ = strconv.Atoi(v)
			}
		}
		if child == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if child == 0 || !alive(child) {
		t.Fatalf("the app's child is not running (pid %d)", child)
	}
	s.Scale(key, Spec{}, 0)
	waitFor(t, s, key, "no instance", func(st RevisionStatus) bool { return len(st.Instances) == 0 })
	if alive(pid) {
		t.Errorf("instance pid %d ignoring SIGTERM still runs", pid)
	}
	if alive(child) {
		t.Errorf("the instance's child pid %d still runs", child)
	}
	return strings.Contains(readFile(t, logPath), "ignoring SIGTERM")
}

func TestForgetStopsAndDropsLogs(t *testing.T) {
	s := newSupervisor(t, Options{})
	key := routing.Key{Namespace: "default", Name: "gone-00001"}
	s.Scale(key, appSpec(), 1)
	st := waitFor(t, s, key, "1 ready", func(st RevisionStatus) bool { return st.Ready == 1 })
	s.Forget(key)
	deadline := time.Now().Add(waitTimeout)
	for {
		if _, ok := s.Revision(key); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("revision still known after Forget")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if alive(st.Instances[0].PID) {
		t.Error("instance still runs after Forget")
	}
	if _, err := os.Stat(filepath.Join(s.opts.LogsDir, "default", "gone-00001")); !os.IsNotExist(err) {
		t.Errorf("logs dir of a forgotten revision: %v, want it gone", err)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	s := newSupervisor(t, Options{})
	var pids []int
	for i := range 3 {
		key := routing.Key{Namespace: "default", Name: fmt.Sprintf("app-0000%d", i+1)}
		s.Scale(key, appSpec(), 1)
		st := waitFor(t, s, key, "1 ready", func(st RevisionStatus) bool { return st.Ready == 1 })
		pids = append(pids, st.Instances[0].PID)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still runs after Run returned", pid)
		}
	}
	s.Scale(routing.Key{Namespace: "default", Name: "late-00001"}, appSpec(), 1)
	if st, _ := s.Revision(routing.Key{Namespace: "default", Name: "late-00001"}); len(st.Instances) != 0 {
		t.Errorf("Scale after Close started %+v", st.Instances)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
