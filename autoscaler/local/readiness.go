package local

import "time"

// Backoff spaces the restarts of an instance that keeps crashing.
type Backoff struct {
	// Initial is the wait before the first restart; it doubles on each crash up to Max.
	Initial, Max time.Duration
	// ResetAfter: an instance that ran at least this long before crashing starts again from Initial.
	ResetAfter time.Duration
}

// DefaultBackoff is Kubernetes' crash-loop backoff made faster at the start: a local process that
// crashed once is usually worth retrying at once.
var DefaultBackoff = Backoff{Initial: 100 * time.Millisecond, Max: 30 * time.Second, ResetAfter: 60 * time.Second}

// next is the wait before restarting an instance that ran for uptime, the last wait being prev
// (0 for its first crash).
func (b Backoff) next(prev, uptime time.Duration) time.Duration {
	if prev <= 0 || uptime >= b.ResetAfter {
		return b.Initial
	}
	return min(prev*2, b.Max)
}

// Startup probing: Knative's queue-proxy probes every 25 ms until the first success, because a
// cold start waits on it. sluice starts closer still (a Go app listens within a few ms) and
// widens the gap to 25 ms, so an app that starts in t waits at most ~t/3 more.
const (
	startupProbeFirst = time.Millisecond
	startupProbeMax   = 25 * time.Millisecond
)

// startupInterval is the wait after the step-th failed probe of an instance never yet ready.
func startupInterval(step int) time.Duration {
	d := startupProbeFirst
	for range step {
		d += d / 2
		if d >= startupProbeMax {
			return startupProbeMax
		}
	}
	return d
}

// readiness counts probe results the way the kubelet does: successThreshold successes in a row
// make an instance ready, failureThreshold failures in a row make it not ready.
type readiness struct {
	ready     bool
	everReady bool
	successes int
	failures  int
	step      int
}

// observe records one probe result and says whether readiness flipped.
func (r *readiness) observe(ok bool, p Probe) bool {
	r.step++
	if ok {
		r.successes++
		r.failures = 0
		if !r.ready && r.successes >= max(1, p.SuccessThreshold) {
			r.ready, r.everReady = true, true
			return true
		}
		return false
	}
	r.failures++
	r.successes = 0
	if r.ready && r.failures >= max(1, p.FailureThreshold) {
		r.ready = false
		return true
	}
	return false
}

// interval is the wait before the next probe: fast until the instance is first ready, the probe's
// period after.
func (r *readiness) interval(p Probe) time.Duration {
	if !r.everReady {
		return startupInterval(r.step)
	}
	return p.Period
}
