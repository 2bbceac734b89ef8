package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds on every wait of the harness. They are deadlines for a condition, not expectations of speed.
const (
	startTimeout = 60 * time.Second // a process becomes healthy
	stopTimeout  = 15 * time.Second // a process exits after SIGTERM, before SIGKILL
	cliTimeout   = 60 * time.Second // one CLI invocation
	waitTimeout  = 60 * time.Second // the data plane converges on a change
	pollInterval = 50 * time.Millisecond
)

// proc is a child process owned by one test: its output goes to a file in the test's temp dir,
// it is stopped (SIGTERM, then SIGKILL) when the test ends, and its log is printed if the test failed.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, valid once done is closed

	stopOnce sync.Once
}

func startProc(t *testing.T, name, bin string, args, env []string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("%s: log file: %v", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Its own process group, so a stop reaches nothing else and a Ctrl-C of `go test` is not
	// delivered twice.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("%s: start %s %v: %v", name, bin, args, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			p.dumpLog(t)
		}
	})
	return p
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to stopTimeout, then SIGKILLs. It waits for the exit, is idempotent,
// and fails the test if the process had to be killed, did not exit cleanly or logged a data race.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.stopOnce.Do(func() {
		if !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(stopTimeout):
				t.Errorf("%s (pid %d) did not exit within %v of SIGTERM; killing it", p.name, p.cmd.Process.Pid, stopTimeout)
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if p.err != nil {
			t.Errorf("%s exited with %v, want a clean exit on SIGTERM", p.name, p.err)
		}
		if log, err := os.ReadFile(p.logPath); err == nil && bytes.Contains(log, []byte("WARNING: DATA RACE")) {
			t.Errorf("%s logged a data race (see its log below)", p.name)
		}
	})
}

func (p *proc) dumpLog(t *testing.T) {
	t.Helper()
	log, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Logf("%s: read log: %v", p.name, err)
		return
	}
	const max = 64 << 10
	if len(log) > max {
		log = append([]byte("...(truncated)...\n"), log[len(log)-max:]...)
	}
	t.Logf("---- %s log (%s, exit: %v) ----\n%s---- end of %s log ----", p.name, p.logPath, p.exitState(), log, p.name)
}

func (p *proc) exitState() string {
	if !p.exited() {
		return "running"
	}
	if p.err == nil {
		return "0"
	}
	return p.err.Error()
}

// usedPorts remembers ports handed out in this run so two allocations never collide.
var usedPorts sync.Map

// freePort returns a loopback TCP port that was free a moment ago and not handed out before.
func freePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if _, taken := usedPorts.LoadOrStore(port, true); !taken {
			return port
		}
	}
	t.Fatal("free port: no unused port after 100 tries")
	return 0
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// waitFor polls cond until it returns true or timeout passes; then the test fails with what cond
// said last. cond must not block for long: each call gets its own short deadline from the caller.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, detail)
		}
		time.Sleep(pollInterval)
	}
}

// httpGet is a bounded GET for health checks.
func httpGet(url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), err
}

// ---- sluice ----

// sluiceServer is one `sluice serve` process with its own data dir and loopback ports. restart
// keeps both, like an operator restarting the service.
type sluiceServer struct {
	t       *testing.T
	dataDir string
	xdsAddr string
	apiAddr string
	// activatorAddr is the in-process activator's; each server has its own port.
	activatorAddr string
	extra         []string // additional serve flags (e.g. Envoy listener addresses)
	proc          *proc
	starts        int
}

func startSluice(t *testing.T, extra ...string) *sluiceServer {
	t.Helper()
	needBinaries(t)
	s := &sluiceServer{
		t:       t,
		dataDir: filepath.Join(t.TempDir(), "data"),
		xdsAddr: loopback(freePort(t)),
		apiAddr: loopback(freePort(t)),
		extra:   extra,

		activatorAddr: loopback(freePort(t)),
	}
	s.start()
	return s
}

func (s *sluiceServer) start() {
	t := s.t
	t.Helper()
	s.starts++
	args := append([]string{"serve",
		"--data-dir", s.dataDir,
		"--xds-addr", s.xdsAddr,
		"--api-addr", s.apiAddr,
		"--activator-addr", s.activatorAddr,
		"--domain", "example.com",
	}, s.extra...)
	p := startProc(t, fmt.Sprintf("sluice-%d", s.starts), binaries.sluice, args, nil)
	s.proc = p
	waitFor(t, startTimeout, "sluice /healthz", func() (bool, string) {
		if p.exited() {
			t.Fatalf("sluice exited during start-up: %s", p.exitState())
		}
		code, body, err := httpGet("http://" + s.apiAddr + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK, fmt.Sprintf("HTTP %d: %s", code, body)
	})
}

// stop stops sluice gracefully; the test fails if it does not exit cleanly.
func (s *sluiceServer) stop() {
	s.t.Helper()
	s.proc.stop(s.t)
}

func (s *sluiceServer) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

func (s *sluiceServer) serverURL() string { return "http://" + s.apiAddr }

// cliResult is what one CLI invocation did.
type cliResult struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("sluice %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// runCLI runs the sluice CLI against server (empty: no --server flag) and returns what it did.
func runCLI(t *testing.T, server string, args ...string) cliResult {
	t.Helper()
	needBinaries(t)
	if server != "" {
		args = append(args, "--server", server)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binaries.sluice, args...)
	cmd.Env = append(os.Environ(), "SLUICE_SERVER=") // only the flag decides
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.code = exitErr.ExitCode()
	default:
		t.Fatalf("sluice %v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("sluice %v did not finish within %v", args, cliTimeout)
	}
	return res
}

// cli runs the CLI against this server.
func (s *sluiceServer) cli(args ...string) cliResult {
	s.t.Helper()
	return runCLI(s.t, s.serverURL(), args...)
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func (s *sluiceServer) mustCLI(args ...string) cliResult {
	s.t.Helper()
	r := s.cli(args...)
	if r.code != 0 {
		s.t.Fatalf("want exit 0, got %s", r)
	}
	return r
}

// apply writes yaml to a file and runs `sluice apply -f FILE`.
func (s *sluiceServer) apply(name, yaml string) cliResult {
	s.t.Helper()
	path := filepath.Join(s.t.TempDir(), name)
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		s.t.Fatal(err)
	}
	return s.cli("apply", "-f", path)
}

func (s *sluiceServer) mustApply(name, yaml string) {
	s.t.Helper()
	if r := s.apply(name, yaml); r.code != 0 {
		s.t.Fatalf("want exit 0, got %s", r)
	}
}

// ---- backends ----

// backend is one helloworld process: one revision's instance, answering with its TARGET.
type backend struct {
	target string
	addr   string
	proc   *proc
}

func startBackend(t *testing.T, target string) *backend {
	t.Helper()
	needHelloworld(t)
	port := freePort(t)
	b := &backend{target: target, addr: loopback(port)}
	b.proc = startProc(t, "helloworld-"+target, binaries.helloworld, nil, []string{
		"HOST=127.0.0.1",
		"PORT=" + strconv.Itoa(port),
		"TARGET=" + target,
	})
	want := "Hello " + target + "!\n"
	waitFor(t, startTimeout, "helloworld "+target+" to answer", func() (bool, string) {
		if b.proc.exited() {
			t.Fatalf("helloworld %s exited during start-up: %s", target, b.proc.exitState())
		}
		_, body, err := httpGet("http://" + b.addr + "/")
		if err != nil {
			return false, err.Error()
		}
		return body == want, fmt.Sprintf("body %q, want %q", body, want)
	})
	return b
}

// writeTemp writes content to a file in the test's temp dir and returns its path.
func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
