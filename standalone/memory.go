package standalone

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/sluice-dev/sluice/controlplane"
)

// memoryReleaser returns to the OS the memory a large change left behind, once serve is quiet.
// Loading thousands of services makes garbage (decoded YAML, superseded tables and resources)
// that the next collections free, but the Go runtime hands freed pages back to the OS slowly,
// and how much it keeps depends on how much garbage the last collection before the quiet
// happened to see: after the same bulk load steady RSS varied by 60 MB between runs. One forced
// collection and release when things have settled makes it follow the live state instead.
// Small changes never trigger it.
type memoryReleaser struct {
	quiet     time.Duration // how long without large changes before releasing
	threshold int           // resources changed (since the last release) that make a change large
	log       *slog.Logger
	release   func() // debug.FreeOSMemory

	changes chan int // from the control-plane loop's Synced, never blocking it
}

func newMemoryReleaser(log *slog.Logger) *memoryReleaser {
	return &memoryReleaser{quiet: 10 * time.Second, threshold: 1000, log: log, release: debug.FreeOSMemory, changes: make(chan int, 64)}
}

// synced is the control-plane loop's Synced hook.
func (m *memoryReleaser) synced(_ context.Context, s controlplane.SyncStats) {
	n := s.XDS.Changed + s.XDS.Deleted + s.StatusUpdates
	if n == 0 {
		return
	}
	select {
	case m.changes <- n:
	default: // the releaser is behind on a burst of passes: it is armed already
	}
}

// run releases after quiet periods that follow large changes, until ctx is done.
func (m *memoryReleaser) run(ctx context.Context) error {
	pending := 0
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case n := <-m.changes:
			pending += n
			if pending >= m.threshold {
				timer.Reset(m.quiet) // each large pass pushes the release back: wait for quiet
			}
		case <-timer.C:
			start := time.Now()
			m.release()
			m.log.Debug("returned freed memory to the OS after a large change", "resources", pending, "took", time.Since(start))
			pending = 0
		}
	}
}
