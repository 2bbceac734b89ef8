package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Summary is one target's measurement in one round.
type Summary struct {
	Requests, Errors   int
	P50, P90, P99, Max time.Duration
	// RPS counts successful requests only, over the measured duration.
	RPS float64
	CPU CPUPerRequest
}

// Quantile is the nearest-rank quantile of sorted (q in (0, 1]): the smallest sample with at
// least q of the samples at or below it. Nearest rank never invents a value between two samples,
// so with 10 samples p99 is the largest, as it should be read.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Summarize sorts latencies in place and summarizes them; elapsed is the measured duration.
func Summarize(latencies []time.Duration, errors int, elapsed time.Duration) Summary {
	slices.Sort(latencies)
	s := Summary{
		Requests: len(latencies) + errors,
		Errors:   errors,
		P50:      Quantile(latencies, 0.50),
		P90:      Quantile(latencies, 0.90),
		P99:      Quantile(latencies, 0.99),
		Max:      Quantile(latencies, 1),
	}
	if elapsed > 0 {
		s.RPS = float64(len(latencies)) / elapsed.Seconds()
	}
	return s
}

// median of xs (the mean of the two middle values for an even count); xs is reordered.
func median[T time.Duration | float64](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// MedianSummary is the field-by-field median of one target's rounds: each column is a median of
// its own, so the row need not be any single round. Requests and Errors are totals.
func MedianSummary(rounds []Summary) Summary {
	var out Summary
	var p50, p90, p99, mx []time.Duration
	var rps []float64
	var cpuL, cpuB, cpuP []time.Duration
	for _, r := range rounds {
		out.Requests += r.Requests
		out.Errors += r.Errors
		p50, p90, p99, mx = append(p50, r.P50), append(p90, r.P90), append(p99, r.P99), append(mx, r.Max)
		rps = append(rps, r.RPS)
		if r.CPU.Measured {
			cpuL, cpuB, cpuP = append(cpuL, r.CPU.Loadgen), append(cpuB, r.CPU.Backend), append(cpuP, r.CPU.Proxy)
		}
	}
	out.P50, out.P90, out.P99, out.Max = median(p50), median(p90), median(p99), median(mx)
	out.RPS = median(rps)
	if len(cpuL) > 0 {
		out.CPU = CPUPerRequest{Measured: true, Loadgen: median(cpuL), Backend: median(cpuB), Proxy: median(cpuP)}
	}
	return out
}

// Comparison is a target against the baseline, each figure the median over rounds of that
// round's own difference or ratio: both were measured in the same round, so the machine's noise
// between rounds cancels out of each pair.
type Comparison struct {
	AddedP50, AddedP99 time.Duration
	ThroughputRatio    float64
}

// Compare pairs target's and baseline's summaries round by round; both must hold one summary per
// round, in round order.
func Compare(target, baseline []Summary) (Comparison, error) {
	if len(target) != len(baseline) || len(target) == 0 {
		return Comparison{}, fmt.Errorf("compare: %d rounds against %d baseline rounds", len(target), len(baseline))
	}
	var p50, p99 []time.Duration
	var ratio []float64
	for i := range target {
		p50 = append(p50, target[i].P50-baseline[i].P50)
		p99 = append(p99, target[i].P99-baseline[i].P99)
		if baseline[i].RPS > 0 {
			ratio = append(ratio, target[i].RPS/baseline[i].RPS)
		}
	}
	return Comparison{AddedP50: median(p50), AddedP99: median(p99), ThroughputRatio: median(ratio)}, nil
}

// ColdStart is the cold-start overhead over paired samples: sample i of each was taken in the
// same iteration, the app's own start right before the request through the activator from zero.
type ColdStart struct {
	N                        int
	AppP50, AppP99           time.Duration
	FirstP50, FirstP99       time.Duration // time to first byte through the activator from zero
	OverheadP50, OverheadP99 time.Duration
}

// CompareColdStart computes the overhead quantiles of first[i] − app[i].
func CompareColdStart(app, first []time.Duration) (ColdStart, error) {
	if len(app) != len(first) || len(app) == 0 {
		return ColdStart{}, fmt.Errorf("cold start: %d app start samples against %d first-byte samples, want the same number, at least one", len(app), len(first))
	}
	diff := make([]time.Duration, len(app))
	for i := range app {
		diff[i] = first[i] - app[i]
	}
	a, f := slices.Clone(app), slices.Clone(first)
	slices.Sort(a)
	slices.Sort(f)
	slices.Sort(diff)
	return ColdStart{
		N:      len(app),
		AppP50: Quantile(a, 0.5), AppP99: Quantile(a, 0.99),
		FirstP50: Quantile(f, 0.5), FirstP99: Quantile(f, 0.99),
		OverheadP50: Quantile(diff, 0.5), OverheadP99: Quantile(diff, 0.99),
	}, nil
}
