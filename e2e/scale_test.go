package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/wire"
)

// burstTimeout bounds one request of a burst from zero: a cold start of a -race build queued
// behind 199 others on a busy 2-core machine.
const burstTimeout = 45 * time.Second

// waitZero waits until the revision is at zero: no instance, none ready, the activator in its path.
func (e *scaleEnv) waitZero(t *testing.T, rev string) {
	t.Helper()
	e.waitScale(t, rev, "at zero", func(sc revScale) bool {
		return sc.Desired == 0 && sc.Actual == 0 && sc.Ready == 0 && sc.Mode == "proxy"
	})
}

// TestScaleToZeroAndBack covers scale to zero (scenario 1) and 200 concurrent requests from zero
// (scenario 2), through the activator by plain HTTP and through gRPC-Go's xDS client.
//
// Scenario 2 is two steps. One wave of 200 requests from zero shows the activator holds them all
// through the cold start. Whether the wave alone scales the revision up depends on when it falls
// between two load reports (the activator reports the requests it held on average over each
// second), so the scale-up is shown by 200 requests kept in flight.
func TestScaleToZeroAndBack(t *testing.T) {
	e := startScaleSluice(t)
	e.s.mustApply("hello.yaml", scaledApp{
		target: "v1",
		delay:  150 * time.Millisecond,
		annotations: map[string]string{
			"min-scale": "0",
			"max-scale": "3", // bounds the processes a 200-request burst may start
			"target":    "10",
		},
	}.yaml())

	// Knative's initial-scale 1: the revision starts with one instance before it may go idle.
	e.waitScale(t, scaledRevision, "ready with its initial instance", func(sc revScale) bool { return sc.Ready >= 1 })
	first := e.liveInstances(t, scaledRevision)
	if len(first) == 0 {
		t.Fatalf("revision is ready but sluice logs %s shows no live helloworld process", scaledRevision)
	}

	t.Run("scale-to-zero", func(t *testing.T) {
		e.waitZero(t, scaledRevision)
		row := e.revisionRow(t, scaledRevision)
		if row["ACTUAL"] != "0" || row["INSTANCES READY"] != "0" || row["MODE"] != "proxy" {
			t.Errorf("sluice get revisions row for %s = %v, want ACTUAL 0, INSTANCES READY 0, MODE proxy", scaledRevision, row)
		}
		waitFor(t, waitTimeout, "the idle instance's process to exit", func() (bool, string) {
			for _, in := range first {
				if processAlive(in.pid) {
					return false, fmt.Sprintf("%s (pid %d) still runs", in.name, in.pid)
				}
			}
			return true, ""
		})
		t.Logf("at zero: %v; stopped %d process(es)", row, len(first))
	})

	// Each data plane starts from zero, so each burst is a cold start.
	for _, tc := range []struct {
		name string
		dp   func() dataPlane
	}{
		{"http-activator", func() dataPlane { return newActivatorPlane(t, e.activatorAddr, scaledRevision) }},
		{"grpc-xds", func() dataPlane { return newGRPCPlane(t, e.s.xdsAddr) }},
	} {
		t.Run("burst-200-"+tc.name, func(t *testing.T) {
			e.waitZero(t, scaledRevision)
			dp := tc.dp()
			peak := watchPeak(t, e, scaledRevision)

			// One wave of 200 from zero: the activator holds them all through the cold start.
			ok, errs := burst(dp, mainHost, 200, burstTimeout)
			if len(errs) > 0 {
				t.Fatalf("%d of 200 concurrent requests from zero failed: %v", 200-ok, errs)
			}
			t.Logf("200 concurrent requests from zero all answered; scale now %s", e.mustScale(t, scaledRevision))

			// Then 200 kept in flight: target 10 at 70% asks for ceil(200/7) = 29 instances,
			// capped by max-scale at 3.
			load := startTimedLoad(t, dp, mainHost, 200)
			sc := e.waitScale(t, scaledRevision, "scaled up past one instance under 200 concurrent requests", func(sc revScale) bool { return sc.Ready >= 2 })
			load.waitMore(t, 400)
			load.requireNoFailures(t, "200 concurrent workers")
			p := peak()
			t.Logf("scaled up: %s; peak %s", sc, p)
			if p.desired > 3 || p.ready > 3 {
				t.Errorf("max-scale 3 exceeded: peak %s", p)
			}
		})
	}
}

// scalePeak is the highest desired and ready counts seen.
type scalePeak struct{ desired, ready int32 }

func (p scalePeak) String() string { return fmt.Sprintf("desired=%d ready=%d", p.desired, p.ready) }

// watchPeak polls the revision's scale in the background until the test ends or the returned
// func is called, which returns the peak.
func watchPeak(t *testing.T, e *scaleEnv, rev string) func() scalePeak {
	var (
		mu   sync.Mutex
		p    scalePeak
		stop = make(chan struct{})
		done = make(chan struct{})
		once sync.Once
	)
	go func() {
		defer close(done)
		for {
			if sc, err := e.revisionScale(rev); err == nil {
				mu.Lock()
				p.desired, p.ready = max(p.desired, sc.Desired), max(p.ready, sc.Ready)
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	end := func() { once.Do(func() { close(stop); <-done }) }
	t.Cleanup(end)
	return func() scalePeak {
		end()
		mu.Lock()
		defer mu.Unlock()
		return p
	}
}

// TestScaleSteadyLoadAndScaleDown covers scenarios 3 and 4: a steady 21 concurrent requests with
// target 10 (70% utilization: 7 per instance) settle at ceil(21/7) = 3 instances ± 1; then the load
// drops to 3 and the revision scales down to ceil(3/7) = 1 without losing a request. The revision
// keeps one instance and target-burst-capacity 0, so the gRPC client talks to instances directly.
func TestScaleSteadyLoadAndScaleDown(t *testing.T) {
	e := startScaleSluice(t)
	e.s.mustApply("hello.yaml", scaledApp{
		target: "v1",
		delay:  150 * time.Millisecond,
		annotations: map[string]string{
			"min-scale":             "1",
			"max-scale":             "5", // room above 3 to see an overshoot, bounded
			"target":                "10",
			"target-burst-capacity": "0",
		},
	}.yaml())
	e.waitScale(t, scaledRevision, "serving with one instance", func(sc revScale) bool { return sc.Ready == 1 && sc.Mode == "serve" })

	dp := grpcHostPlane{newGRPCPlane(t, e.s.xdsAddr)}
	waitFor(t, waitTimeout, "the first gRPC answer", func() (bool, string) {
		_, err := callOnce(dp, mainHost, "", 2*time.Second)
		return err == nil, fmt.Sprint(err)
	})

	const (
		low  = 3
		high = 21
		want = 3 // ceil(high / 7)
	)
	base := startTimedLoad(t, dp, mainHost, low)
	extra := startTimedLoad(t, dp, mainHost, high-low)

	sc, history := e.waitSettled(t, scaledRevision, want-1, want+1, scaleStableWindow)
	t.Logf("%d concurrent: settled at %s; on the way: %s", high, sc, strings.Join(history, " → "))
	instancesAtHigh := len(e.liveInstances(t, scaledRevision))

	// Scenario 4: drop to 3 concurrent. Requests of the stopped workers that were in flight are
	// cancelled by the test, not failed by the data plane (timedLoad does not count them).
	extra.stop()
	sc = e.waitScale(t, scaledRevision, "scaled down to one instance", func(sc revScale) bool {
		return sc.Desired == 1 && sc.Actual == 1 && sc.Ready == 1
	})
	waitFor(t, waitTimeout, "the stopped instances' processes to exit", func() (bool, string) {
		live := e.liveInstances(t, scaledRevision)
		return len(live) == 1, fmt.Sprintf("%d live: %v", len(live), live)
	})
	base.waitMore(t, 50) // the remaining instance answers after the others are gone
	t.Logf("%d concurrent: %s; instances %d → 1", low, sc, instancesAtHigh)
	extra.requireNoFailures(t, fmt.Sprintf("the %d workers stopped for the scale-down", high-low))
	base.requireNoFailures(t, fmt.Sprintf("the %d workers kept throughout", low))
}

// TestScaleActivatorQueueFull covers scenario 5: with a queue of 2 requests per revision, a third
// request for a revision at zero gets 503 from the activator, saying why; the queued ones are
// answered once the (slow-starting) instance is ready. Once with serve's in-process activator
// (--activator-queue-requests), once with a standalone `sluice activator` next to serve.
func TestScaleActivatorQueueFull(t *testing.T) {
	// Start at zero. Globally: admission refuses the initial-scale "0" annotation whatever
	// --allow-zero-initial-scale says (autoscaling.ValidateAnnotations checks against Knative's default).
	atZero := []string{"--allow-zero-initial-scale", "--initial-scale", "0"}
	t.Run("in-process", func(t *testing.T) {
		e := startScaleSluice(t, append(atZero, "--activator-queue-requests", "2")...)
		checkQueueFull(t, e)
	})
	t.Run("standalone", func(t *testing.T) {
		needBinaries(t)
		actAddr := loopback(freePort(t))
		s := startSluice(t, append(append(scaleFlags(), atZero...),
			"--activator-addr", "",
			"--activator-endpoint", actAddr)...)
		act := startProc(t, "activator", binaries.sluice, []string{"activator",
			"--listen", actAddr,
			"--xds", s.xdsAddr,
			"--queue-requests", "2",
			"--drain-timeout", "5s",
		}, nil)
		waitFor(t, startTimeout, "the activator to listen", func() (bool, string) {
			if act.exited() {
				t.Fatalf("activator exited during start-up: %s", act.exitState())
			}
			// A connection is enough: any request would wait for a route to be named (then 404).
			c, err := net.DialTimeout("tcp", actAddr, 2*time.Second)
			if err != nil {
				return false, err.Error()
			}
			c.Close()
			return true, ""
		})
		checkQueueFull(t, &scaleEnv{s: s, activatorAddr: actAddr})
	})
}

// checkQueueFull sends 6 concurrent requests to a slow-starting revision at zero through an
// activator whose queue holds 2.
func checkQueueFull(t *testing.T, e *scaleEnv) {
	t.Helper()
	actAddr := e.activatorAddr
	e.s.mustApply("hello.yaml", scaledApp{
		target:       "v1",
		startupDelay: 3 * time.Second, // requests stay queued while it starts
		annotations: map[string]string{
			"min-scale": "0",
			"max-scale": "1",
		},
	}.yaml())
	e.waitZero(t, scaledRevision)

	const n = 6
	ap := newActivatorPlane(t, actAddr, scaledRevision)
	answers := make([]activatorAnswer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), burstTimeout)
			defer cancel()
			answers[i], errs[i] = ap.do(ctx, mainHost)
		})
	}
	wg.Wait()

	var ok, full int
	wantBody := "queue of default/" + scaledRevision + " is full (2 requests)"
	for i := range n {
		a, err := answers[i], errs[i]
		switch {
		case err != nil:
			t.Errorf("request %d: %v", i, err)
		case a.status == http.StatusOK && a.body == "Hello v1!\n":
			ok++
		case a.status == http.StatusServiceUnavailable && a.refused == wire.RefusedQueueFull && strings.Contains(a.body, wantBody):
			full++
		default:
			t.Errorf("request %d: HTTP %d, X-Sluice-Activator %q, body %q; want 200 Hello v1! or 503 queue-full saying %q",
				i, a.status, a.refused, a.body, wantBody)
		}
	}
	t.Logf("%d concurrent requests from zero with a queue of 2: %d answered, %d refused with 503 queue-full", n, ok, full)
	if ok < 2 || full < 1 {
		t.Errorf("got %d answered and %d refused, want the 2 queued answered and at least one refused", ok, full)
	}
}

// TestScaleCrashedInstanceRestarted covers scenario 6: min-scale 2, one instance's process is
// killed with SIGKILL under load; sluice restarts it and traffic keeps flowing to the other.
//
// gRPC-Go fails the RPCs in flight on a connection that breaks (UNAVAILABLE): sluice's routes
// carry no retry policy, and gRPC retries transparently only RPCs the server never received.
// So the requests in flight on the killed instance may fail, and the test excuses those (started
// before the process was seen dead, and UNAVAILABLE). Any request started after that must succeed.
func TestScaleCrashedInstanceRestarted(t *testing.T) {
	e := startScaleSluice(t)
	e.s.mustApply("hello.yaml", scaledApp{
		target: "v1",
		delay:  100 * time.Millisecond,
		annotations: map[string]string{
			"min-scale":             "2",
			"max-scale":             "2",
			"target-burst-capacity": "0",
		},
	}.yaml())
	e.waitScale(t, scaledRevision, "serving with two instances", func(sc revScale) bool {
		return sc.Ready == 2 && sc.Actual == 2 && sc.Mode == "serve"
	})
	var before []instance
	waitFor(t, waitTimeout, "two live instances in sluice logs", func() (bool, string) {
		before = e.liveInstances(t, scaledRevision)
		return len(before) == 2, fmt.Sprint(before)
	})

	dp := grpcHostPlane{newGRPCPlane(t, e.s.xdsAddr)}
	load := startTimedLoad(t, dp, mainHost, 4)
	waitFor(t, waitTimeout, "both instances to answer", func() (bool, string) {
		_, by, _ := load.snapshot()
		return by[before[0].addr] > 0 && by[before[1].addr] > 0, by.String()
	})

	victim, survivor := before[0], before[1]
	if err := syscall.Kill(victim.pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d (%s): %v", victim.pid, victim.name, err)
	}
	// Poll tightly: every request started before this moment is excused if it failed.
	deadline := time.Now().Add(waitTimeout)
	for processAlive(victim.pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still alive %v after SIGKILL", victim.name, victim.pid, waitTimeout)
		}
		time.Sleep(time.Millisecond)
	}
	deadAt := time.Now()
	_, byAtKill, _ := load.snapshot()

	var restarted instance
	waitFor(t, scaleWait, victim.name+" to be restarted", func() (bool, string) {
		for _, in := range e.liveInstances(t, scaledRevision) {
			if in.name == victim.name && in.pid != victim.pid {
				restarted = in
				return true, ""
			}
		}
		return false, "not yet"
	})
	sc := e.waitScale(t, scaledRevision, "back at two ready instances", func(sc revScale) bool {
		return sc.Ready == 2 && sc.Actual == 2
	})
	// Ready again, the revision still says what happened: the restart and how the process ended.
	if sc.Restarts != 1 || !strings.Contains(sc.LastCrash, victim.name) || !strings.Contains(sc.LastCrash, "killed") {
		t.Errorf("after the restart: %s; want restarts=1 and a lastCrash naming %s and the SIGKILL", sc, victim.name)
	}
	waitFor(t, waitTimeout, "the restarted instance to answer", func() (bool, string) {
		_, by, _ := load.snapshot()
		return by[restarted.addr] > 0, by.String()
	})
	load.waitMore(t, 100)
	load.stop()

	ok, by, fs := load.snapshot()
	var excused, after []failure
	for _, f := range fs {
		if f.start.Before(deadAt) && grpcCode(f.err) == "Unavailable" {
			excused = append(excused, f)
		} else {
			after = append(after, f)
		}
	}
	if survivor.addr != "" && by[survivor.addr] <= byAtKill[survivor.addr] {
		t.Errorf("the surviving instance %s answered nothing after the kill: %s", survivor.addr, by)
	}
	if len(after) > 0 {
		t.Errorf("%d requests failed that started after %s (pid %d) was seen dead at %s, or not with UNAVAILABLE:%s",
			len(after), victim.name, victim.pid, deadAt.Format("15:04:05.000"), firstFailures(after, 5))
	}
	t.Logf("killed %s (pid %d, %s) → restarted as pid %d on %s; %s; %d answered (%s); %d in flight on the killed instance failed UNAVAILABLE:%s",
		victim.name, victim.pid, victim.addr, restarted.pid, restarted.addr, sc, ok, by, len(excused), firstFailures(excused, 5))
}
