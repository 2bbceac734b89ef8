package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Goals are the targets for a proxy against the direct connection.
type Goals struct {
	AddedP50        time.Duration // at most
	ThroughputRatio float64       // at least
	ColdStartP99    time.Duration // overhead, at most
}

// Report prints the medians of rounds per target, each target against baseline, and whether
// goalTarget met the goals. It returns whether any request failed.
func Report(w io.Writer, targets []Target, baseline, goalTarget string, rounds map[string][]Summary, goals Goals) (failed bool, err error) {
	base, ok := rounds[baseline]
	if !ok {
		return false, fmt.Errorf("baseline %q was not measured", baseline)
	}
	n := len(base)
	fmt.Fprintf(w, "\nmedians of %d rounds; added latency and throughput are per-round pairs against %s, then their median\n", n, baseline)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	cpu := false
	for _, rs := range rounds {
		cpu = cpu || MedianSummary(rs).CPU.Measured
	}
	head := "target\tp50\tp90\tp99\tmax\treq/s\terrors\tadded p50\tadded p99\tthroughput vs " + baseline + "\t"
	if cpu {
		head += "CPU/req: loadgen\tbackend\tproxy\t"
	}
	fmt.Fprintln(tw, head)
	verdicts := []string{}
	for _, t := range targets {
		rs := rounds[t.Name]
		m := MedianSummary(rs)
		failed = failed || m.Errors > 0
		added50, added99, ratio := "-", "-", "-"
		if t.Name != baseline {
			c, err := Compare(rs, base)
			if err != nil {
				return failed, fmt.Errorf("%s: %w", t.Name, err)
			}
			added50, added99 = signedUs(c.AddedP50), signedUs(c.AddedP99)
			ratio = fmt.Sprintf("%.0f%%", 100*c.ThroughputRatio)
			if t.Name == goalTarget {
				verdicts = append(verdicts,
					verdict(fmt.Sprintf("%s added p50 %s ≤ %s", t.Name, signedUs(c.AddedP50), us(goals.AddedP50)), c.AddedP50 <= goals.AddedP50),
					verdict(fmt.Sprintf("%s throughput %.0f%% of %s ≥ %.0f%%", t.Name, 100*c.ThroughputRatio, baseline, 100*goals.ThroughputRatio), c.ThroughputRatio >= goals.ThroughputRatio))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\t%d\t%s\t%s\t%s\t", t.Name, us(m.P50), us(m.P90), us(m.P99), us(m.Max), m.RPS, m.Errors, added50, added99, ratio)
		switch {
		case !cpu:
		case m.CPU.Measured:
			fmt.Fprintf(tw, "%s\t%s\t%s\t", us(m.CPU.Loadgen), us(m.CPU.Backend), us(m.CPU.Proxy))
		default:
			fmt.Fprint(tw, "-\t-\t-\t")
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return failed, err
	}
	if cpu {
		fmt.Fprintln(w, "CPU/req: CPU time (user + system, from /proc) per successful request of the load generator, the backend and the target's proxy process(es), medians of rounds")
	}
	if goalTarget != "" && len(verdicts) == 0 {
		fmt.Fprintf(w, "goals: %s was not measured\n", goalTarget)
	}
	for _, v := range verdicts {
		fmt.Fprintln(w, v)
	}
	return failed, nil
}

// ReportColdStart prints the cold-start quantiles and whether the overhead met the goal.
func ReportColdStart(w io.Writer, c ColdStart, goals Goals) {
	fmt.Fprintf(w, "cold start over %d paired samples (nearest-rank quantiles; with fewer than 100 samples p99 is the largest)\n", c.N)
	fmt.Fprintf(w, "  app's own start (exec to first 200):    p50 %s  p99 %s\n", ms(c.AppP50), ms(c.AppP99))
	fmt.Fprintf(w, "  first byte through the activator from 0: p50 %s  p99 %s\n", ms(c.FirstP50), ms(c.FirstP99))
	fmt.Fprintf(w, "  overhead (first byte − app start):      p50 %s  p99 %s\n", ms(c.OverheadP50), ms(c.OverheadP99))
	fmt.Fprintln(w, verdict(fmt.Sprintf("cold-start overhead p99 %s ≤ %s", ms(c.OverheadP99), ms(goals.ColdStartP99)), c.OverheadP99 <= goals.ColdStartP99))
}

func verdict(what string, met bool) string {
	if met {
		return "goal met:     " + what
	}
	return "goal NOT met: " + what
}

func signedUs(d time.Duration) string {
	if d >= 0 {
		return "+" + us(d)
	}
	return us(d)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}
