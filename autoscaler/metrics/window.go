// Package metrics turns load reports from the data plane (Envoy and gRPC clients over LRS) and from the
// activator into per-revision averages over the KPA's stable and panic windows.
//
// Window is the time series (1s buckets, like Knative's TimedFloat64Buckets); Collector keeps the latest
// report of every reporter, samples each tracked revision's load once per call to Sample, and answers
// the averages Decide needs. Time is always passed in; nothing here reads a clock.
package metrics

import (
	"math"
	"time"
)

// BucketSize is the granularity of a Window.
const BucketSize = time.Second

// Window is a ring of 1s buckets covering a fixed capacity; each bucket holds the mean of the values
// recorded in its second. Memory is one bucket per second of capacity. Not safe for concurrent use.
type Window struct {
	buckets []bucket
	// first and last are the first and last seconds written since the window last had data; the
	// average only counts seconds in between, so a young window is not diluted by seconds it never saw.
	first, last int64
	written     bool
}

type bucket struct {
	sec int64 // which second the bucket holds; a bucket of an older lap is stale
	sum float64
	n   int
}

// NewWindow returns a window able to average over up to capacity (whole seconds, at least one).
func NewWindow(capacity time.Duration) *Window {
	n := int(math.Ceil(capacity.Seconds()))
	return &Window{buckets: make([]bucket, max(n, 1))}
}

// Capacity is the longest window Average can answer for.
func (w *Window) Capacity() time.Duration { return time.Duration(len(w.buckets)) * BucketSize }

// Record adds a value at a time. Values older than the capacity behind the newest are dropped.
func (w *Window) Record(at time.Time, v float64) {
	sec := at.Unix()
	size := int64(len(w.buckets))
	switch {
	case !w.written || sec-w.last >= size:
		// Nothing in the window any more: start afresh rather than average over the gap.
		w.first, w.last, w.written = sec, sec, true
	case sec <= w.last-size:
		return
	case sec > w.last:
		w.last = sec
	case sec < w.first:
		w.first = sec
	}
	b := &w.buckets[mod(sec, size)]
	if b.sec != sec || b.n == 0 {
		*b = bucket{sec: sec}
	}
	b.sum += v
	b.n++
}

// Average is the mean per second over the window ending at now (the seconds in (now-window, now]),
// counting only seconds since the series started and up to its last write. ok is false when no
// second of the window has data: Knative's ErrNoData. A window longer than the capacity is capped.
func (w *Window) Average(now time.Time, window time.Duration) (avg float64, ok bool) {
	if !w.written {
		return 0, false
	}
	size := int64(len(w.buckets))
	n := min(int64(math.Ceil(window.Seconds())), size)
	end := now.Unix()
	from, to := max(end-n+1, w.first, w.last-size+1), min(end, w.last)
	if from > to {
		return 0, false
	}
	var sum float64
	for sec := from; sec <= to; sec++ {
		// A second the sampler skipped counts as zero: no report, no load.
		if b := w.buckets[mod(sec, size)]; b.sec == sec && b.n > 0 {
			sum += b.sum / float64(b.n)
		}
	}
	return sum / float64(to-from+1), true
}

func mod(a, b int64) int64 { return ((a % b) + b) % b }
