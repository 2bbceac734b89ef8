package activator

import (
	"math"
	"sync"
	"time"
)

// concurrency is a revision's requests in the activator, averaged over time between reports.
// The autoscaler needs the average: a burst of 200 requests that all finish within the second
// between two reports is invisible in a snapshot taken at either end, and a revision at zero
// woken by such a burst would get one instance instead of enough for it. Knative's activator
// reports the same average.
type concurrency struct {
	mu    sync.Mutex
	n     int64     // requests held now
	last  time.Time // when n last changed, or the last take
	since time.Time // the start of the current interval
	area  float64   // requests × seconds since `since`
}

func (c *concurrency) add(d int64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance(now)
	c.n += d
}

func (c *concurrency) advance(now time.Time) {
	if c.since.IsZero() {
		c.since, c.last = now, now
	}
	if now.After(c.last) {
		c.area += float64(c.n) * now.Sub(c.last).Seconds()
		c.last = now
	}
}

// take returns the average since the previous take, rounded up so that any load counts as at
// least one request, and starts a new interval.
func (c *concurrency) take(now time.Time) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance(now)
	avg := 0.0
	if d := c.last.Sub(c.since).Seconds(); d > 0 {
		avg = c.area / d
	}
	c.since, c.area = c.last, 0
	return uint64(math.Ceil(avg - 1e-9))
}
