// Package reconnect keeps a stream to the control plane open: the activator's xDS subscription
// and its load reports both run one until it breaks, then again after a backoff.
package reconnect

import (
	"context"
	"log/slog"
	"time"
)

// Backoff bounds the waits between attempts: from Min, doubling to Max, back to Min after a
// stream that was healthy (got at least one answer). Zero fields take 100ms and 5s.
type Backoff struct{ Min, Max time.Duration }

// Loop runs stream until ctx ends, and returns ctx's error. stream returns when its stream broke,
// saying whether it was healthy and why it broke; what names it in the debug log.
func Loop(ctx context.Context, b Backoff, log *slog.Logger, what string, stream func(context.Context) (healthy bool, err error)) error {
	if b.Min <= 0 {
		b.Min = 100 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 5 * time.Second
	}
	backoff := b.Min
	for {
		healthy, err := stream(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if healthy {
			backoff = b.Min
		}
		log.Debug(what+": stream broke, reconnecting", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, b.Max)
	}
}
