package standalone

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/controlplane"
	"github.com/sluice-dev/sluice/xds"
)

// A large change is followed, once quiet, by one release; small changes add up to one.
func TestMemoryReleaser(t *testing.T) {
	var released atomic.Int32
	m := newMemoryReleaser(slog.New(slog.DiscardHandler))
	m.quiet, m.threshold = time.Millisecond, 100
	m.release = func() { released.Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.run(ctx) }()
	defer func() { cancel(); <-done }()

	wait := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for released.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("releases = %d, want %d", released.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	m.synced(context.Background(), controlplane.SyncStats{XDS: xds.UpdateStats{Changed: 150}})
	wait(1)
	for range 4 {
		m.synced(context.Background(), controlplane.SyncStats{StatusUpdates: 30}) // 120 in all: large, in small steps
	}
	wait(2)
}
