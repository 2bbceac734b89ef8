package main

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/sluice-dev/sluice/activator"
)

// activatorLimits are an activator's bounds, as flags of serve (prefixed) and of `sluice activator`.
type activatorLimits struct {
	queueRequests int
	queueBytes    int64
	queueTimeout  time.Duration
	drainTimeout  time.Duration
	maxHosts      int
}

func (l *activatorLimits) bind(f *pflag.FlagSet, prefix string) {
	f.IntVar(&l.queueRequests, prefix+"queue-requests", activator.DefaultQueueRequests, "most requests the activator queues per revision; more get 503")
	f.Int64Var(&l.queueBytes, prefix+"queue-bytes", activator.DefaultQueueBytes, "most bytes (headers and declared bodies) the activator queues per revision; more get 503")
	f.DurationVar(&l.queueTimeout, prefix+"queue-timeout", activator.DefaultQueueTimeout, "longest a request waits in the activator for an instance before a 503")
	f.DurationVar(&l.drainTimeout, prefix+"drain-timeout", activator.DefaultDrainTimeout, "longest the activator waits for queued and in-flight requests when stopping")
	f.IntVar(&l.maxHosts, prefix+"max-hosts", activator.DefaultMaxHosts, "most hosts whose routes the activator keeps, for requests without a revision header (gRPC clients)")
}

func (l *activatorLimits) options() activator.Options {
	return activator.Options{QueueRequests: l.queueRequests, QueueBytes: l.queueBytes, QueueTimeout: l.queueTimeout,
		DrainTimeout: l.drainTimeout, MaxHosts: l.maxHosts}
}
