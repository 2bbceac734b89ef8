package activator

import (
	"context"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/sluice-dev/sluice/activator/routes"
)

// hostRoutes are the routes of the hosts that requests without a revision header arrived for
// (gRPC clients), subscribed to on first use and kept for the most recently used MaxHosts:
// each costs the control plane a subscription and this process a route.
type hostRoutes struct {
	// subscribe and unsubscribe tell the control plane; they must not block nor call back.
	subscribe, unsubscribe func(hosts ...string)

	mu      sync.Mutex
	lru     *simplelru.LRU[string, *hostEntry]
	evicted []string // by the last lru.Add, for unsubscribe
	changed chan struct{}
}

// hostEntry is a subscribed host; route is nil until the control plane serves it, and again
// once it removes it.
type hostEntry struct {
	route *routes.Host
}

func newHostRoutes(size int, subscribe, unsubscribe func(hosts ...string)) *hostRoutes {
	hr := &hostRoutes{subscribe: subscribe, unsubscribe: unsubscribe, changed: make(chan struct{})}
	// NewLRU fails only for a size ≤ 0, which setDefaults rules out.
	hr.lru, _ = simplelru.NewLRU(max(size, 1), func(name string, _ *hostEntry) {
		hr.evicted = append(hr.evicted, name)
	})
	return hr
}

// get returns the routes of host, subscribing to them on first use and waiting up to wait for
// the control plane to serve them. nil means none within the wait.
func (hr *hostRoutes) get(ctx context.Context, host string, wait time.Duration) *routes.Host {
	return awaitFound(ctx, wait, nil, func() (*routes.Host, <-chan struct{}) {
		hr.mu.Lock()
		e, ok := hr.lru.Get(host)
		if !ok {
			e = &hostEntry{}
			hr.lru.Add(host, e)
			// Under mu, so a host evicted and asked for again at once ends subscribed.
			if len(hr.evicted) > 0 {
				hr.unsubscribe(hr.evicted...)
				hr.evicted = hr.evicted[:0]
			}
			hr.subscribe(host)
		}
		route, changed := e.route, hr.changed
		hr.mu.Unlock()
		return route, changed
	})
}

// update takes the control plane's routes of subscribed hosts. A host no longer subscribed
// (evicted meanwhile) is ignored.
func (hr *hostRoutes) update(put []routes.Host, removed []string) {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	for i := range put {
		if e, ok := hr.lru.Peek(put[i].Name); ok {
			e.route = &put[i]
		}
	}
	for _, name := range removed {
		if e, ok := hr.lru.Peek(name); ok {
			e.route = nil
		}
	}
	close(hr.changed)
	hr.changed = make(chan struct{})
}

// hostOf is the host a request's authority (Host header or :authority) names, as route
// configurations are named: without a port or a trailing dot, lowercase.
func hostOf(authority string) string {
	h := authority
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	} else {
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if 'A' <= h[i] && h[i] <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}
