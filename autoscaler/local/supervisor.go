//go:build unix

package local

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sluice-dev/sluice/routing"
)

// InstanceState is where an instance is in its life.
type InstanceState string

// Instance states.
const (
	// StateStarting: the process runs and has not yet passed its readiness probe.
	StateStarting InstanceState = "Starting"
	// StateReady: the instance passed its probe and takes traffic.
	StateReady InstanceState = "Ready"
	// StateNotReady: the instance was ready and then failed its probe failureThreshold times.
	StateNotReady InstanceState = "NotReady"
	// StateDraining: the instance is being stopped; it takes no new traffic.
	StateDraining InstanceState = "Draining"
	// StateCrashed: the process exited on its own and waits out its backoff before a restart.
	StateCrashed InstanceState = "CrashedWaitingRestart"
)

// Options configure a Supervisor. Zero values mean the defaults.
type Options struct {
	// LogsDir holds the instances' output as <namespace>/<revision>/<instance>.log. Required.
	LogsDir string
	// BeforeStop is called for an instance that was ready, after it left the ready set and
	// before it is signalled: the control plane waits there until the clients have acknowledged
	// the endpoints without it. An error is logged and the stop goes on.
	BeforeStop func(ctx context.Context, key routing.Key, addr string) error
	// BeforeStopTimeout bounds BeforeStop; default 10s.
	BeforeStopTimeout time.Duration
	// DrainPeriod is the wait between BeforeStop and SIGTERM, for requests already on their way
	// over existing connections; default 1s, negative for none.
	DrainPeriod time.Duration
	// MaxTerminationGracePeriod caps a revision's terminationGracePeriodSeconds; default 30s.
	MaxTerminationGracePeriod time.Duration
	// ShutdownTimeout bounds Close's graceful stop; past it everything left is SIGKILLed.
	// Default 40s.
	ShutdownTimeout time.Duration
	// Backoff spaces restarts of crashing instances; zero fields take DefaultBackoff's.
	Backoff Backoff
	// MaxLogBytes bounds one instance's log file before it rotates; default DefaultMaxLogBytes.
	MaxLogBytes int64
	// KeepStoppedLogs is how many log files of stopped instances a revision keeps; default 4.
	KeepStoppedLogs int
	// InheritEnv names the variables of sluice's own environment an instance gets (before the
	// template's env); nil means PATH, HOME, USER, LOGNAME, SHELL, TMPDIR, LANG, LC_ALL and TZ.
	// Everything else, SLUICE_TOKEN above all, stays out.
	InheritEnv []string
	// FollowPollInterval is how often a followed log is checked for new output; default 100ms.
	FollowPollInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

var defaultInheritEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "LANG", "LC_ALL", "TZ"}

// Instance is a snapshot of one instance.
type Instance struct {
	Name string
	// Addr is 127.0.0.1:port while a process runs, "" while crashed.
	Addr     string
	PID      int
	State    InstanceState
	Restarts int
	// LastExit is how the last run ended: "exit status 1: <last stderr line>".
	LastExit string
	// Started is when the current (or last) process started.
	Started time.Time
}

// RevisionStatus is a snapshot of a revision's instances.
type RevisionStatus struct {
	Key routing.Key
	// Desired is the last count Scale asked for.
	Desired int
	// Actual counts the instances that are not draining: what Scale converges to Desired.
	Actual int
	// Ready counts the instances in the ready set.
	Ready     int
	Instances []Instance // oldest first
}

// Endpoints are the addresses of the ready instances, sorted.
func (r RevisionStatus) Endpoints() []routing.Endpoint {
	var eps []routing.Endpoint
	for _, in := range r.Instances {
		if in.State != StateReady {
			continue
		}
		if host, port, err := net.SplitHostPort(in.Addr); err == nil {
			p, _ := strconv.Atoi(port)
			eps = append(eps, routing.Endpoint{Host: host, Port: uint32(p)})
		}
	}
	slices.SortFunc(eps, func(a, b routing.Endpoint) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port))
	})
	return eps
}

// Supervisor owns every instance process. Its methods are safe for concurrent use.
type Supervisor struct {
	opts    Options
	log     *slog.Logger
	baseEnv []string
	probes  *http.Client

	// hardCtx is cancelled when a graceful shutdown ran out of time: every wait ends in SIGKILL.
	hardCtx  context.Context
	hardStop context.CancelFunc
	closing  chan struct{}
	once     sync.Once
	wg       sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	revs    map[routing.Key]*revision
	ports   map[int]bool
	changed map[routing.Key]struct{}
	changes chan struct{}
}

type revision struct {
	key       routing.Key
	spec      Spec
	desired   int
	forgotten bool
	seq       int
	instances []*instance // oldest first
	// stoppedLogs are the log files of removed instances, oldest first.
	stoppedLogs []string
}

// instance fields after stop are guarded by Supervisor.mu.
type instance struct {
	name    string
	seq     int
	rev     *revision
	logPath string
	stop    chan struct{} // closed when the instance is asked to stop

	stopping bool
	// announced: the instance was ready when asked to stop, so clients may still send to it.
	announced bool
	state     InstanceState
	addr      string
	port      int
	pid       int
	restarts  int
	lastExit  string
	started   time.Time
}

// New returns a Supervisor with no instances.
func New(opts Options) (*Supervisor, error) {
	if opts.LogsDir == "" {
		return nil, fmt.Errorf("local supervisor: a logs dir is required")
	}
	if opts.BeforeStopTimeout <= 0 {
		opts.BeforeStopTimeout = 10 * time.Second
	}
	if opts.DrainPeriod == 0 {
		opts.DrainPeriod = time.Second
	}
	if opts.MaxTerminationGracePeriod <= 0 {
		opts.MaxTerminationGracePeriod = DefaultTerminationGracePeriod
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 40 * time.Second
	}
	opts.Backoff.Initial = cmp.Or(opts.Backoff.Initial, DefaultBackoff.Initial)
	opts.Backoff.Max = cmp.Or(opts.Backoff.Max, DefaultBackoff.Max)
	opts.Backoff.ResetAfter = cmp.Or(opts.Backoff.ResetAfter, DefaultBackoff.ResetAfter)
	if opts.MaxLogBytes <= 0 {
		opts.MaxLogBytes = DefaultMaxLogBytes
	}
	if opts.KeepStoppedLogs <= 0 {
		opts.KeepStoppedLogs = 4
	}
	if opts.InheritEnv == nil {
		opts.InheritEnv = defaultInheritEnv
	}
	if opts.FollowPollInterval <= 0 {
		opts.FollowPollInterval = 100 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	var env []string
	for _, k := range opts.InheritEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	hardCtx, hardStop := context.WithCancel(context.Background())
	return &Supervisor{
		opts:    opts,
		log:     opts.Logger,
		baseEnv: env,
		probes: &http.Client{
			// A probe connection must not linger in a pool, keeping a draining app busy.
			Transport: &http.Transport{DisableKeepAlives: true},
			// Kubernetes counts a redirect as a pass; it does not follow it off the instance.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		hardCtx:  hardCtx,
		hardStop: hardStop,
		closing:  make(chan struct{}),
		revs:     map[routing.Key]*revision{},
		ports:    map[int]bool{},
		changed:  map[routing.Key]struct{}{},
		changes:  make(chan struct{}, 1),
	}, nil
}

// Run returns when ctx is done or Close was called, after stopping every instance.
func (s *Supervisor) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-s.closing:
	}
	return s.Close()
}

// Close stops every instance gracefully, SIGKILLs what is left after ShutdownTimeout, and
// returns once all processes are gone. Scale does nothing after Close.
func (s *Supervisor) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.closing)
		for _, r := range s.revs {
			r.desired = 0
			s.reconcileLocked(r)
		}
		s.mu.Unlock()
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		t := time.NewTimer(s.opts.ShutdownTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			s.log.Warn("instances did not stop in time; killing them", "timeout", s.opts.ShutdownTimeout)
			s.hardStop()
			<-done
		}
		s.hardStop()
	})
	return nil
}

// Scale sets how many instances key should have. It returns at once; instances start and stop
// in the background. Revisions are immutable, so spec is read only when key is new.
func (s *Supervisor) Scale(key routing.Key, spec Spec, n int) {
	if err := validKey(key); err != nil {
		s.log.Error("refusing to scale", "revision", key.String(), "err", err)
		return
	}
	if len(spec.Command) == 0 && n > 0 {
		s.log.Error("refusing to scale a revision without a command", "revision", key.String())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	r := s.revs[key]
	if r == nil {
		r = &revision{key: key, spec: spec}
		s.revs[key] = r
	}
	r.forgotten = false
	r.desired = max(0, n)
	s.reconcileLocked(r)
}

// Forget stops all instances of key and, once they are gone, drops it and its logs.
func (s *Supervisor) Forget(key routing.Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.revs[key]
	if r == nil {
		return
	}
	r.desired = 0
	r.forgotten = true
	s.reconcileLocked(r)
	s.dropIfGoneLocked(r)
}

// Changes signals, coalesced, that Changed has something to report.
func (s *Supervisor) Changes() <-chan struct{} { return s.changes }

// Changed returns the revisions whose ready set (or crash reason) changed since the last call.
func (s *Supervisor) Changed() []routing.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]routing.Key, 0, len(s.changed))
	for k := range s.changed {
		keys = append(keys, k)
	}
	clear(s.changed)
	slices.SortFunc(keys, func(a, b routing.Key) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return keys
}

// Revision returns a snapshot of key's instances; false when the supervisor does not know key.
func (s *Supervisor) Revision(key routing.Key) (RevisionStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.revs[key]
	if r == nil {
		return RevisionStatus{Key: key}, false
	}
	return r.statusLocked(), true
}

// Revisions returns a snapshot of every revision the supervisor knows, sorted by key.
func (s *Supervisor) Revisions() []RevisionStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RevisionStatus, 0, len(s.revs))
	for _, r := range s.revs {
		out = append(out, r.statusLocked())
	}
	slices.SortFunc(out, func(a, b RevisionStatus) int {
		return cmp.Or(cmp.Compare(a.Key.Namespace, b.Key.Namespace), cmp.Compare(a.Key.Name, b.Key.Name))
	})
	return out
}

func (r *revision) statusLocked() RevisionStatus {
	st := RevisionStatus{Key: r.key, Desired: r.desired, Instances: make([]Instance, 0, len(r.instances))}
	for _, in := range r.instances {
		if !in.stopping {
			st.Actual++
		}
		if in.state == StateReady {
			st.Ready++
		}
		st.Instances = append(st.Instances, Instance{
			Name: in.name, Addr: in.addr, PID: in.pid, State: in.state,
			Restarts: in.restarts, LastExit: in.lastExit, Started: in.started,
		})
	}
	return st
}

func validKey(key routing.Key) error {
	// The names become directories under LogsDir; admission already holds them to DNS labels.
	if msgs := validation.IsDNS1123Label(key.Namespace); len(msgs) > 0 {
		return fmt.Errorf("namespace %q: %s", key.Namespace, msgs[0])
	}
	if msgs := validation.IsDNS1123Label(key.Name); len(msgs) > 0 {
		return fmt.Errorf("revision name %q: %s", key.Name, msgs[0])
	}
	return nil
}

func (s *Supervisor) revisionDir(key routing.Key) string {
	return filepath.Join(s.opts.LogsDir, key.Namespace, key.Name)
}

// reconcileLocked starts or stops instances until r has desired ones not stopping.
func (s *Supervisor) reconcileLocked(r *revision) {
	var active []*instance
	for _, in := range r.instances {
		if !in.stopping {
			active = append(active, in)
		}
	}
	for n := len(active); n < r.desired; n++ {
		r.seq++
		name := fmt.Sprintf("%s-%d", r.key.Name, r.seq)
		in := &instance{
			name:    name,
			seq:     r.seq,
			rev:     r,
			logPath: filepath.Join(s.revisionDir(r.key), name+".log"),
			stop:    make(chan struct{}),
			state:   StateStarting,
		}
		r.instances = append(r.instances, in)
		s.wg.Add(1)
		go s.runInstance(in)
	}
	if len(active) <= r.desired {
		return
	}
	// Like a ReplicaSet scaling down: the least useful go first (crashed, then not yet ready,
	// then ready), and among equals the newest.
	slices.SortFunc(active, func(a, b *instance) int {
		return cmp.Or(cmp.Compare(stopRank(a.state), stopRank(b.state)), cmp.Compare(b.seq, a.seq))
	})
	for _, in := range active[:len(active)-r.desired] {
		s.stopLocked(in)
	}
}

func stopRank(st InstanceState) int {
	switch st {
	case StateCrashed:
		return 0
	case StateStarting, StateNotReady:
		return 1
	}
	return 2
}

// stopLocked takes in out of the ready set at once and lets its goroutine stop the process.
func (s *Supervisor) stopLocked(in *instance) {
	if in.stopping {
		return
	}
	in.stopping = true
	in.announced = in.state == StateReady
	in.state = StateDraining
	close(in.stop)
	if in.announced {
		s.markChangedLocked(in.rev.key)
	}
}

func (s *Supervisor) markChangedLocked(key routing.Key) {
	s.changed[key] = struct{}{}
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// dropIfGoneLocked removes a forgotten revision once its last instance is gone.
func (s *Supervisor) dropIfGoneLocked(r *revision) {
	if !r.forgotten || len(r.instances) > 0 || s.revs[r.key] != r {
		return
	}
	delete(s.revs, r.key)
	if err := os.RemoveAll(s.revisionDir(r.key)); err != nil {
		s.log.Warn("remove logs of a forgotten revision", "revision", r.key.String(), "err", err)
	}
}

// runInstance is an instance's life: start, probe, restart after crashes, stop when asked.
func (s *Supervisor) runInstance(in *instance) {
	defer s.wg.Done()
	defer s.removeInstance(in)
	key := in.rev.key
	out, err := openLogFile(in.logPath, s.opts.MaxLogBytes, s.log)
	if err != nil {
		// Without a log the instance is still worth running; its output is dropped.
		s.log.Warn("instance output will be lost", "instance", in.name, "err", err)
		out = &logFile{path: in.logPath, log: s.log}
	}
	defer out.Close()
	var wait time.Duration
	for {
		reason, uptime, stopped := s.runOnce(in, out)
		if stopped {
			return
		}
		wait = s.opts.Backoff.next(wait, uptime)
		s.log.Info("instance exited; restarting after backoff", "revision", key.String(), "instance", in.name, "reason", reason, "backoff", wait)
		s.mu.Lock()
		if in.stopping {
			s.mu.Unlock()
			return
		}
		in.state, in.lastExit = StateCrashed, reason
		delete(s.ports, in.port)
		in.addr, in.port, in.pid = "", 0, 0
		// Out of the ready set if it was in it, and the revision has a new reason either way.
		s.markChangedLocked(key)
		s.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-in.stop:
			t.Stop()
			return
		case <-t.C:
		}
		s.mu.Lock()
		if !in.stopping {
			// One step, so a reader never sees a restart counted while still crashed.
			in.restarts++
			in.state = StateStarting
		}
		s.mu.Unlock()
	}
}

// runOnce runs the command once. It returns how the process ended and how long it ran, or
// stopped when the instance was asked to stop (and is now stopped).
func (s *Supervisor) runOnce(in *instance, out *logFile) (reason string, uptime time.Duration, stopped bool) {
	s.mu.Lock()
	if in.stopping {
		s.mu.Unlock()
		return "", 0, true
	}
	port, err := freePort(s.ports)
	if err == nil {
		s.ports[port] = true
	}
	spec := in.rev.spec
	s.mu.Unlock()
	if err != nil {
		return err.Error(), 0, false
	}
	p, err := startProcess(spec, s.baseEnv, port, out)
	if err != nil {
		s.mu.Lock()
		delete(s.ports, port)
		s.mu.Unlock()
		return "start " + spec.Command[0] + ": " + err.Error(), 0, false
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.mu.Lock()
	in.addr, in.port, in.pid, in.started = addr, port, p.pid(), p.started
	if !in.stopping {
		in.state = StateStarting
	}
	s.mu.Unlock()

	probeCtx, cancelProbe := context.WithCancel(s.hardCtx)
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		s.probeLoop(probeCtx, in, addr, spec.Probe)
	}()
	endProbe := func() { cancelProbe(); <-probeDone }

	select {
	case <-p.exited:
		endProbe()
		return p.exitReason(), time.Since(p.started), false
	case <-in.stop:
		// The probe must not put a draining instance back in the ready set.
		endProbe()
		s.stopProcess(in, p, addr, spec)
		s.mu.Lock()
		delete(s.ports, port)
		in.lastExit = p.exitReason()
		s.mu.Unlock()
		return "", 0, true
	}
}

// stopProcess: BeforeStop (if clients may still send to it), drain, SIGTERM, SIGKILL after the
// grace period. It returns once the process is gone.
func (s *Supervisor) stopProcess(in *instance, p *process, addr string, spec Spec) {
	key := in.rev.key
	s.mu.Lock()
	announced := in.announced
	s.mu.Unlock()
	if announced {
		if s.opts.BeforeStop != nil {
			ctx, cancel := context.WithTimeout(s.hardCtx, s.opts.BeforeStopTimeout)
			if err := s.opts.BeforeStop(ctx, key, addr); err != nil {
				s.log.Warn("stopping an instance clients may still use", "revision", key.String(), "instance", in.name, "err", err)
			}
			cancel()
		}
		if s.opts.DrainPeriod > 0 {
			s.wait(p, s.opts.DrainPeriod)
		}
	}
	p.signal(syscall.SIGTERM)
	grace := min(spec.TerminationGracePeriod, s.opts.MaxTerminationGracePeriod)
	if !s.wait(p, grace) {
		s.log.Info("instance outlived its grace period; killing it", "revision", key.String(), "instance", in.name, "grace", grace)
		p.signal(syscall.SIGKILL)
		<-p.exited
	}
}

// wait waits d for p to exit; false when it has not, or when the shutdown ran out of time.
func (s *Supervisor) wait(p *process, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
	case <-s.hardCtx.Done():
	}
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

func (s *Supervisor) removeInstance(in *instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := in.rev
	r.instances = slices.DeleteFunc(r.instances, func(x *instance) bool { return x == in })
	r.stoppedLogs = append(r.stoppedLogs, in.logPath)
	for len(r.stoppedLogs) > s.opts.KeepStoppedLogs {
		old := r.stoppedLogs[0]
		r.stoppedLogs = r.stoppedLogs[1:]
		os.Remove(old)
		os.Remove(old + ".1")
	}
	if in.port != 0 {
		delete(s.ports, in.port)
	}
	// A stop after a crash or Close makes the revision converge again.
	if !s.closed && !r.forgotten {
		s.reconcileLocked(r)
	}
	s.dropIfGoneLocked(r)
}

// probeLoop probes addr until ctx ends, moving the instance in and out of the ready set.
func (s *Supervisor) probeLoop(ctx context.Context, in *instance, addr string, p Probe) {
	if p.InitialDelay > 0 && !sleep(ctx, p.InitialDelay) {
		return
	}
	var rd readiness
	for {
		ok := s.probe(ctx, addr, p)
		if ctx.Err() != nil {
			return
		}
		if rd.observe(ok, p) {
			s.mu.Lock()
			if !in.stopping {
				in.state = StateNotReady
				if rd.ready {
					in.state = StateReady
				}
				s.markChangedLocked(in.rev.key)
			}
			s.mu.Unlock()
		}
		if !sleep(ctx, rd.interval(p)) {
			return
		}
	}
}

func (s *Supervisor) probe(ctx context.Context, addr string, p Probe) bool {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	if p.HTTPGet == nil {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+p.HTTPGet.Path, nil)
	if err != nil {
		return false
	}
	for _, h := range p.HTTPGet.Headers {
		req.Header.Add(h.Name, h.Value)
	}
	if p.HTTPGet.Host != "" {
		req.Host = p.HTTPGet.Host
	}
	// The kubelet's User-Agent prefix, which apps already use to tell probes from traffic.
	req.Header.Set("User-Agent", "kube-probe/sluice")
	resp, err := s.probes.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
