package activator

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/activator/instances"
)

var roomy = limits{count: 1000, bytes: 1 << 30, wait: time.Hour}

func revWith(cc int, addrs ...string) *revision {
	r := newRevision("ns/rev")
	r.setSpec(instances.Revision{Name: "ns/rev", ContainerConcurrency: cc, Addrs: addrs})
	return r
}

func mustAcquire(t *testing.T, r *revision) *backend {
	t.Helper()
	b, err := r.acquire(context.Background(), 1, nil, roomy)
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	return b
}

func TestFirstAvailablePacksTheFirstInstances(t *testing.T) {
	r := revWith(2, "a", "b", "c")
	var got []string
	for range 5 {
		got = append(got, mustAcquire(t, r).addr)
	}
	want := []string{"a", "a", "b", "b", "c"}
	if !equal(got, want) {
		t.Fatalf("picks = %v, want %v", got, want)
	}
}

func TestRoundRobinSpreadsAndSkipsFullInstances(t *testing.T) {
	r := revWith(4, "a", "b", "c")
	var got []string
	for range 6 {
		got = append(got, mustAcquire(t, r).addr)
	}
	if want := []string{"a", "b", "c", "a", "b", "c"}; !equal(got, want) {
		t.Fatalf("picks = %v, want %v", got, want)
	}
	// Fill b; the next turn skips it.
	for range 2 {
		r.mu.Lock()
		r.backends[1].inFlight++
		r.mu.Unlock()
	}
	got = got[:0]
	for range 4 {
		got = append(got, mustAcquire(t, r).addr)
	}
	if want := []string{"a", "c", "a", "c"}; !equal(got, want) {
		t.Fatalf("picks with b full = %v, want %v", got, want)
	}
}

func TestLeastOfTwoPrefersTheLessLoaded(t *testing.T) {
	r := revWith(0, "a", "b")
	r.backends[0].inFlight = 5
	for range 20 {
		b := mustAcquire(t, r)
		if b.addr != "b" {
			t.Fatalf("picked %s with %d in flight over b with fewer", b.addr, b.inFlight)
		}
		r.release(b)
	}
}

func TestUnlimitedNeverQueuesWithAnInstance(t *testing.T) {
	r := revWith(0, "a")
	for range 100 {
		mustAcquire(t, r)
	}
	if r.backends[0].inFlight != 100 {
		t.Fatalf("in flight = %d, want 100", r.backends[0].inFlight)
	}
}

func TestQueuedRequestGetsTheReleasedInstance(t *testing.T) {
	r := revWith(1, "a")
	first := mustAcquire(t, r)
	got := make(chan *backend)
	go func() {
		b, err := r.acquire(context.Background(), 1, nil, roomy)
		if err != nil {
			t.Errorf("queued acquire: %v", err)
		}
		got <- b
	}()
	waitFor(t, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.queued == 1 })
	r.release(first)
	if b := <-got; b.addr != "a" || b.inFlight != 1 {
		t.Fatalf("queued request got %s with %d in flight", b.addr, b.inFlight)
	}
}

func TestNewInstancesServeTheQueue(t *testing.T) {
	r := revWith(1)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, err := r.acquire(context.Background(), 1, nil, roomy); err != nil {
				t.Errorf("acquire: %v", err)
			}
		})
	}
	waitFor(t, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.queued == 3 })
	r.setSpec(instances.Revision{Name: "ns/rev", ContainerConcurrency: 1, Addrs: []string{"a", "b", "c"}})
	wg.Wait()
	for _, b := range r.backends {
		if b.inFlight != 1 {
			t.Fatalf("%s has %d in flight, want 1", b.addr, b.inFlight)
		}
	}
}

func TestInstanceUpdateKeepsInFlightCounts(t *testing.T) {
	r := revWith(1, "a")
	mustAcquire(t, r)
	r.setSpec(instances.Revision{Name: "ns/rev", ContainerConcurrency: 1, Addrs: []string{"a", "b"}})
	if b := mustAcquire(t, r); b.addr != "b" {
		t.Fatalf("picked %s, which is still full", b.addr)
	}
}

func TestQueueBounds(t *testing.T) {
	lim := limits{count: 2, bytes: 100, wait: time.Hour}
	r := revWith(1) // no instance: everything queues
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	for range 2 {
		wg.Go(func() { _, _ = r.acquire(ctx, 40, nil, lim) })
	}
	waitFor(t, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.queued == 2 })
	if _, err := r.acquire(ctx, 1, nil, lim); !errors.Is(err, errQueueFull) {
		t.Fatalf("third request: err = %v, want %v", err, errQueueFull)
	}
	lim.count = 10
	if _, err := r.acquire(ctx, 21, nil, lim); !errors.Is(err, errQueueBytesFull) {
		t.Fatalf("request over the byte bound: err = %v, want %v", err, errQueueBytesFull)
	}
	lim.wait = time.Nanosecond
	if _, err := r.acquire(ctx, 20, nil, lim); !errors.Is(err, errQueueTimeout) {
		t.Fatalf("request that may not wait: err = %v, want %v", err, errQueueTimeout)
	}
	cancel()
	wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.queued != 0 || r.qBytes != 0 {
		t.Fatalf("after every waiter left: queued %d, %d bytes; want 0, 0", r.queued, r.qBytes)
	}
}

// Many requests through few slots: no instance ever holds more than containerConcurrency, and
// every request gets through.
func TestConcurrencyNeverExceedsContainerConcurrency(t *testing.T) {
	for _, cc := range []int{1, 2, 3, 4, 10} {
		r := revWith(cc, "a", "b", "c")
		var inFlight [3]atomic.Int32
		idx := map[string]int{"a": 0, "b": 1, "c": 2}
		var over atomic.Int32
		var wg sync.WaitGroup
		for range 200 {
			wg.Go(func() {
				b, err := r.acquire(context.Background(), 1, nil, roomy)
				if err != nil {
					t.Errorf("acquire: %v", err)
					return
				}
				if n := inFlight[idx[b.addr]].Add(1); n > int32(cc) {
					over.Store(n)
				}
				inFlight[idx[b.addr]].Add(-1)
				r.release(b)
			})
		}
		wg.Wait()
		if n := over.Load(); n != 0 {
			t.Fatalf("cc %d: an instance had %d requests in flight", cc, n)
		}
		for _, b := range r.backends {
			if b.inFlight != 0 {
				t.Fatalf("cc %d: %s has %d in flight after all released", cc, b.addr, b.inFlight)
			}
		}
	}
}

func TestExcludedInstancesAreNotPicked(t *testing.T) {
	for _, cc := range []int{0, 1, 10} {
		r := revWith(cc, "a", "b")
		for range 10 {
			b, err := r.acquire(context.Background(), 1, []string{"a"}, roomy)
			if err != nil || b.addr != "b" {
				t.Fatalf("cc %d: got %v, %v; want b", cc, b, err)
			}
			r.release(b)
		}
	}
}

// A queued request that excludes the free instance does not hold back one that can use it.
func TestAWaiterThatExcludesAnInstanceDoesNotBlockOthers(t *testing.T) {
	r := revWith(1, "a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	excluded := make(chan error, 1)
	go func() {
		_, err := r.acquire(ctx, 1, []string{"a"}, roomy)
		excluded <- err
	}()
	waitFor(t, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.queued == 1 })
	lim := roomy
	lim.wait = 10 * time.Second // a bound on the failure, not a timing assertion
	b, err := r.acquire(context.Background(), 1, nil, lim)
	if err != nil || b.addr != "a" {
		t.Fatalf("request behind a waiter excluding a: got %v, %v; want a", b, err)
	}
	cancel()
	if err := <-excluded; !errors.Is(err, context.Canceled) {
		t.Fatalf("excluding waiter: %v", err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// waitFor polls a condition another goroutine will make true; the deadline only stops a hang.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
