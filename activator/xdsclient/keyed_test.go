package xdsclient

import (
	"sync"
	"testing"
	"time"
)

// keyed is what a client under test has delivered to a sink: values by name, with a channel
// closed at every update so tests can wait for a condition instead of sleeping.
type keyed[T any] struct {
	mu      sync.Mutex
	m       map[string]T
	changed chan struct{}
}

func newKeyed[T any]() *keyed[T] {
	return &keyed[T]{m: map[string]T{}, changed: make(chan struct{})}
}

// update removes the names removed, then puts put under the names name gives them.
func (k *keyed[T]) update(put []T, name func(T) string, removed []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, n := range removed {
		delete(k.m, n)
	}
	for _, v := range put {
		k.m[name(v)] = v
	}
	close(k.changed)
	k.changed = make(chan struct{})
}

// get is the value under name, if any.
func (k *keyed[T]) get(name string) (T, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[name]
	return v, ok
}

// waitFor waits until cond holds of the values; the deadline only stops a hang. It is long
// enough for waits across a reconnection, which gRPC backs off from 1s.
func (k *keyed[T]) waitFor(t *testing.T, what string, cond func(map[string]T) bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		k.mu.Lock()
		ok, ch := cond(k.m), k.changed
		k.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			k.mu.Lock()
			defer k.mu.Unlock()
			t.Fatalf("waiting for %s; have %+v", what, k.m)
		}
	}
}
