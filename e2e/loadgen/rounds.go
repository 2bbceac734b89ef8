package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

// BenchConfig is one run: every target gets the same load, in rounds.
type BenchConfig struct {
	Targets     []Target
	Concurrency int
	Warmup      time.Duration // before each target's measurement, every round
	Duration    time.Duration // measured, per target per round (unless Requests is set)
	Rounds      int
	Timeout     time.Duration // per request
	Expect      string        // substring of a good reply, checked once per target before the run
	// Requests, when above zero, ends each measured round after that many requests, successful
	// or failed, instead of after Duration: the round then measures the same work however busy
	// the machine is, where a short Duration on a loaded machine can pass before a request is
	// sent. The tests use it; a benchmark states its rounds in time.
	Requests int
	// Backend are the processes serving every target, whose CPU time per request is reported.
	Backend []int
}

// Bench runs the rounds and returns each target's summaries in round order. Within a round the
// targets run one after another, each starting one position later than in the round before, so
// no target always runs first (or right after the same neighbour) on a machine whose load drifts.
// Each line of progress goes to w as it is measured.
func Bench(ctx context.Context, cfg BenchConfig, w io.Writer) (map[string][]Summary, error) {
	loads := make([]*load, len(cfg.Targets))
	for i, t := range cfg.Targets {
		loads[i] = newLoad(t, cfg.Concurrency, cfg.Timeout)
		defer loads[i].close()
		if err := loads[i].check(ctx, cfg.Expect); err != nil {
			return nil, fmt.Errorf("before the run: %w", err)
		}
	}
	out := make(map[string][]Summary, len(loads))
	for r := range cfg.Rounds {
		for i := range loads {
			l := loads[(i+r)%len(loads)]
			if cfg.Warmup > 0 {
				if _, _, err, _ := l.run(ctx, cfg.Warmup, 0); err != nil {
					return out, fmt.Errorf("round %d: warm-up: %w", r+1, err)
				}
			}
			before := takeCPUSnapshot(cfg.Backend, l.target.Proxy)
			lat, errs, firstErr, elapsed := l.run(ctx, cfg.Duration, cfg.Requests)
			after := takeCPUSnapshot(cfg.Backend, l.target.Proxy)
			if err := ctx.Err(); err != nil {
				return out, err
			}
			s := Summarize(lat, errs, elapsed)
			s.CPU = cpuPerRequest(before, after, len(lat))
			out[l.target.Name] = append(out[l.target.Name], s)
			fmt.Fprintf(w, "round %d/%d  %-10s %s\n", r+1, cfg.Rounds, l.target.Name, formatSummary(s))
			if firstErr != nil {
				fmt.Fprintf(w, "  %d failed requests, the first: %v\n", errs, firstErr)
			}
		}
	}
	return out, nil
}

func formatSummary(s Summary) string {
	line := fmt.Sprintf("p50 %8s  p90 %8s  p99 %8s  max %8s  %8.0f req/s  %d requests, %d errors",
		us(s.P50), us(s.P90), us(s.P99), us(s.Max), s.RPS, s.Requests, s.Errors)
	if s.CPU.Measured {
		line += fmt.Sprintf("  CPU/req loadgen %s backend %s proxy %s", us(s.CPU.Loadgen), us(s.CPU.Backend), us(s.CPU.Proxy))
	}
	return line
}

// us prints a duration in microseconds, the unit the targets are stated in.
func us(d time.Duration) string {
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}
