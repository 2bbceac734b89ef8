package activator

import (
	"container/list"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-dev/sluice/activator/instances"
	"github.com/sluice-dev/sluice/wire"
)

// Why a request was not given an instance. Each is answered with its own status, and with its
// text as the wire.HeaderRefused value.
var (
	errQueueFull      = errors.New(wire.RefusedQueueFull)
	errQueueBytesFull = errors.New(wire.RefusedQueueBytesFull)
	errQueueTimeout   = errors.New(wire.RefusedQueueTimeout)
)

// backend is one ready instance and the requests the activator has in flight to it.
type backend struct {
	addr     string
	inFlight int
}

// waiter is a request queued for an instance. ch receives the reserved backend when one frees up.
type waiter struct {
	ch      chan *backend
	bytes   int64
	exclude []string // instances that refused this request's connection
	elem    *list.Element
}

// revision is the activator's state for one revision: its instances with their in-flight
// counts, the requests waiting for one, and the counts reported to the autoscaler.
type revision struct {
	name string

	mu       sync.Mutex
	spec     instances.Revision // Addrs is not read from here: backends is the live list
	known    bool
	backends []*backend
	queue    list.List // of *waiter, oldest first
	queued   int
	qBytes   int64
	rr       int // round-robin position

	// Reported to the autoscaler: what the activator holds now, and what happened since the last report.
	inProgress atomic.Int64
	average    concurrency // inProgress over time, for the reports
	issued     atomic.Uint64
	succeeded  atomic.Uint64
	failed     atomic.Uint64
}

func newRevision(name string) *revision {
	return &revision{name: name}
}

// setSpec replaces the revision's description, keeping the in-flight counts of instances that
// stay, and hands freed capacity to waiters. Callers hold no lock.
func (r *revision) setSpec(spec instances.Revision) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spec = spec
	r.known = true
	old := r.backends
	next := make([]*backend, 0, len(spec.Addrs))
	for _, addr := range spec.Addrs {
		i := slices.IndexFunc(old, func(b *backend) bool { return b.addr == addr })
		if i >= 0 {
			next = append(next, old[i])
		} else {
			next = append(next, &backend{addr: addr})
		}
	}
	r.backends = next
	r.dispatchLocked()
}

// forget marks the revision unknown and drops its instances. Requests already queued keep waiting
// until their deadline: a revision may come back (a control-plane restart resends everything).
func (r *revision) forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.known = false
	r.backends = nil
}

// idle says whether the revision holds no request and has no count left to report.
func (r *revision) idle() bool {
	return r.inProgress.Load() == 0 && r.issued.Load() == 0 && r.succeeded.Load() == 0 && r.failed.Load() == 0
}

func (r *revision) snapshot() (spec instances.Revision, known bool, ready int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.spec, r.known, len(r.backends)
}

// limits bound a revision's queue.
type limits struct {
	count int
	bytes int64
	wait  time.Duration
}

// acquire reserves an instance for a request of the given size, waiting in the queue when none
// has capacity. The caller must release the instance once done with it. A request queued for
// lim.wait gets errQueueTimeout; ctx ending first returns ctx's error.
func (r *revision) acquire(ctx context.Context, size int64, exclude []string, lim limits) (*backend, error) {
	r.mu.Lock()
	if r.queue.Len() == 0 || len(exclude) > 0 {
		if b := r.pickLocked(exclude); b != nil {
			r.mu.Unlock()
			return b, nil
		}
	}
	if r.queued >= lim.count {
		r.mu.Unlock()
		return nil, errQueueFull
	}
	if r.qBytes+size > lim.bytes {
		r.mu.Unlock()
		return nil, errQueueBytesFull
	}
	w := &waiter{ch: make(chan *backend, 1), bytes: size, exclude: exclude}
	w.elem = r.queue.PushBack(w)
	r.queued++
	r.qBytes += size
	// Waiters ahead may be unable to use a free instance (they exclude it); this one may.
	r.dispatchLocked()
	r.mu.Unlock()

	// The timer exists only for requests that queue: the fast path stays allocation-light.
	t := time.NewTimer(lim.wait)
	defer t.Stop()
	var why error
	select {
	case b := <-w.ch:
		return b, nil
	case <-ctx.Done():
		why = ctx.Err()
	case <-t.C:
		why = errQueueTimeout
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if w.elem != nil {
		r.removeLocked(w)
		return nil, why
	}
	// Handed an instance while giving up: give it back.
	b := <-w.ch
	r.releaseLocked(b)
	return nil, why
}

func (r *revision) removeLocked(w *waiter) {
	r.queue.Remove(w.elem)
	w.elem = nil
	r.queued--
	r.qBytes -= w.bytes
}

// release returns a reservation made by acquire.
func (r *revision) release(b *backend) {
	r.mu.Lock()
	r.releaseLocked(b)
	r.mu.Unlock()
}

func (r *revision) releaseLocked(b *backend) {
	b.inFlight--
	r.dispatchLocked()
}

// dispatchLocked hands instances with capacity to waiters, oldest first.
func (r *revision) dispatchLocked() {
	for e := r.queue.Front(); e != nil; {
		next := e.Next()
		w := e.Value.(*waiter)
		b := r.pickLocked(w.exclude)
		if b == nil {
			if len(w.exclude) == 0 {
				return // no capacity anywhere
			}
			e = next
			continue
		}
		r.removeLocked(w)
		w.ch <- b
		e = next
	}
}

// pickLocked reserves an instance by the policy Knative's activator uses for the revision's
// containerConcurrency, or returns nil when none (outside exclude) has capacity.
func (r *revision) pickLocked(exclude []string) *backend {
	var b *backend
	switch cc := r.spec.ContainerConcurrency; {
	case cc <= 0:
		b = pickLeastOfTwo(r.backends, exclude)
	case cc <= 3:
		b = pickFirstAvailable(r.backends, cc, exclude)
	default:
		b, r.rr = pickRoundRobin(r.backends, cc, r.rr, exclude)
	}
	if b != nil {
		b.inFlight++
	}
	return b
}

func usable(b *backend, cc int, exclude []string) bool {
	return (cc <= 0 || b.inFlight < cc) && !slices.Contains(exclude, b.addr)
}

// pickLeastOfTwo is the power of two random choices by in-flight count: with no limit per
// instance, it spreads load nearly as well as least-loaded without a scan.
func pickLeastOfTwo(bs []*backend, exclude []string) *backend {
	if len(exclude) > 0 {
		bs = slices.DeleteFunc(slices.Clone(bs), func(b *backend) bool { return slices.Contains(exclude, b.addr) })
	}
	switch len(bs) {
	case 0:
		return nil
	case 1:
		return bs[0]
	}
	i := rand.IntN(len(bs))
	j := rand.IntN(len(bs) - 1)
	if j >= i {
		j++
	}
	a, b := bs[i], bs[j]
	if b.inFlight < a.inFlight || (b.inFlight == a.inFlight && rand.IntN(2) == 0) {
		return b
	}
	return a
}

// pickFirstAvailable packs requests onto the first instances: with a small containerConcurrency
// that keeps later instances free for the autoscaler to reclaim.
func pickFirstAvailable(bs []*backend, cc int, exclude []string) *backend {
	for _, b := range bs {
		if usable(b, cc, exclude) {
			return b
		}
	}
	return nil
}

// pickRoundRobin tries every instance once starting at next, and returns where the next pick starts.
func pickRoundRobin(bs []*backend, cc, next int, exclude []string) (*backend, int) {
	n := len(bs)
	if next >= n {
		next = 0
	}
	for i := range n {
		p := (next + i) % n
		if usable(bs[p], cc, exclude) {
			return bs[p], p + 1
		}
	}
	return nil, next
}
