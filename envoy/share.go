package envoy

import (
	"hash/maphash"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/sluice-dev/sluice/routing"
)

// Memory at 10,000 services is mostly route protos, and most of them are equal: every host of
// a service exists on both listeners (external and cluster-local) with the same routes, and a
// tag's own host routes where the main host's route for that tag header does. So hosts do not
// build their routes: they take them from pools keyed by the IR they are built from, which
// count their users and drop a value with its last one, so memory follows the Table.
//
// What is shared is immutable like every proto here, and equal IR gives equal protos, so a
// shared value is exactly what the host would have built itself: sharing changes memory, never
// content. (A reference miscounted would cost sharing or memory, not correctness.)

// pool shares one value among the users of equal keys.
type pool[K, V any] struct {
	seed  maphash.Seed
	hash  func(*maphash.Hash, *K)
	equal func(*K, *K) bool
	m     map[uint64]*shared[K, V]
}

type shared[K, V any] struct {
	key  K
	val  V
	refs int
	sum  uint64
	next *shared[K, V] // another key with the same hash
}

func newPool[K, V any](seed maphash.Seed, hash func(*maphash.Hash, *K), equal func(*K, *K) bool) *pool[K, V] {
	return &pool[K, V]{seed: seed, hash: hash, equal: equal, m: map[uint64]*shared[K, V]{}}
}

// acquire returns the shared value for k, building it with build when nobody holds one. k is
// kept: it must not change afterwards (IR from a routing Table never does).
func (p *pool[K, V]) acquire(k *K, build func() V) *shared[K, V] {
	var h maphash.Hash
	h.SetSeed(p.seed)
	p.hash(&h, k)
	sum := h.Sum64()
	for s := p.m[sum]; s != nil; s = s.next {
		if p.equal(&s.key, k) {
			s.refs++
			return s
		}
	}
	s := &shared[K, V]{key: *k, val: build(), refs: 1, sum: sum, next: p.m[sum]}
	p.m[sum] = s
	return s
}

// release gives back one reference and reports whether it was the last: the caller then
// releases whatever the value itself acquired.
func (p *pool[K, V]) release(s *shared[K, V]) bool {
	s.refs--
	if s.refs > 0 {
		return false
	}
	if head := p.m[s.sum]; head == s {
		if s.next == nil {
			delete(p.m, s.sum)
		} else {
			p.m[s.sum] = s.next
		}
	} else {
		for prev := head; prev != nil; prev = prev.next {
			if prev.next == s {
				prev.next = s.next
				break
			}
		}
	}
	return true
}

// actionKey is what a route action is built from.
type actionKey struct {
	timeout time.Duration
	splits  []routing.Split
}

// hostRoutes are the route protos of a host and the shared parts they are made of.
type hostRoutes struct {
	protos  []*routev3.Route
	actions []*shared[actionKey, *routev3.Route_Route]
	matches []*shared[string, *routev3.RouteMatch] // of the routes with a tag header
}

// pools are the Translator's shared values.
type pools struct {
	routes  *pool[[]routing.HTTPRoute, hostRoutes]
	actions *pool[actionKey, *routev3.Route_Route]
	matches *pool[string, *routev3.RouteMatch]
	// namespaces share the Knative-Serving-Namespace header among a namespace's revisions.
	namespaces *pool[string, *corev3.HeaderValueOption]
}

func newPools() pools {
	seed := maphash.MakeSeed()
	return pools{
		routes: newPool[[]routing.HTTPRoute, hostRoutes](seed, func(h *maphash.Hash, k *[]routing.HTTPRoute) {
			for i := range *k {
				r := &(*k)[i]
				h.WriteString(r.TagHeader)
				hashAction(h, r.Timeout, r.Splits)
			}
		}, func(a, b *[]routing.HTTPRoute) bool { return slices.EqualFunc(*a, *b, equalHTTPRoute) }),
		actions: newPool[actionKey, *routev3.Route_Route](seed, func(h *maphash.Hash, k *actionKey) {
			hashAction(h, k.timeout, k.splits)
		}, func(a, b *actionKey) bool { return a.timeout == b.timeout && slices.Equal(a.splits, b.splits) }),
		matches:    newPool[string, *routev3.RouteMatch](seed, hashString, equalString),
		namespaces: newPool[string, *corev3.HeaderValueOption](seed, hashString, equalString),
	}
}

func hashAction(h *maphash.Hash, timeout time.Duration, splits []routing.Split) {
	maphash.WriteComparable(h, timeout)
	for _, s := range splits {
		maphash.WriteComparable(h, s)
	}
	h.WriteByte(0) // ends the list, so lists of routes cannot run into each other
}

func hashString(h *maphash.Hash, s *string) { h.WriteString(*s) }
func equalString(a, b *string) bool         { return *a == *b }

// routes acquires the route protos for hrs.
func (t *Translator) routes(hrs []routing.HTTPRoute) *shared[[]routing.HTTPRoute, hostRoutes] {
	return t.pools.routes.acquire(&hrs, func() hostRoutes {
		out := hostRoutes{
			protos:  make([]*routev3.Route, len(hrs)),
			actions: make([]*shared[actionKey, *routev3.Route_Route], len(hrs)),
		}
		for i := range hrs {
			hr := &hrs[i]
			a := t.pools.actions.acquire(&actionKey{hr.Timeout, hr.Splits}, func() *routev3.Route_Route {
				return buildAction(hr, t.headers)
			})
			out.actions[i] = a
			match := matchAll
			if hr.TagHeader != "" {
				m := t.pools.matches.acquire(&hr.TagHeader, func() *routev3.RouteMatch { return tagMatch(hr.TagHeader) })
				out.matches = append(out.matches, m)
				match = m.val
			}
			out.protos[i] = buildRoute(hr, match, a.val, t.headers)
		}
		return out
	})
}

// releaseRoutes gives back a host's routes, and their parts with the last user.
func (t *Translator) releaseRoutes(s *shared[[]routing.HTTPRoute, hostRoutes]) {
	if s == nil || !t.pools.routes.release(s) {
		return
	}
	for _, a := range s.val.actions {
		t.pools.actions.release(a)
	}
	for _, m := range s.val.matches {
		t.pools.matches.release(m)
	}
}
