// Command loadgen measures HTTP targets for e2e/bench-activator.sh: latency and throughput of
// several targets against one backend in alternating rounds, and the pieces of the cold-start
// measurement.
//
//	loadgen bench -target direct=http://127.0.0.1:19471/ -target nginx=http://127.0.0.1:19472/ \
//	    -target activator=http://127.0.0.1:19480/ \
//	    -H 'activator:Knative-Serving-Namespace: default' -H 'activator:Knative-Serving-Revision: hello-00001' \
//	    -c 16 -d 5s -warmup 1s -rounds 5 -baseline direct -goal-target activator
//	loadgen appstart -cmd ./helloworld            # prints the app's own start time
//	loadgen firstbyte -url URL -H 'K: V'          # prints one request's time to first byte
//	loadgen coldstats -app app.txt -first first.txt
//	loadgen proxy -listen 127.0.0.1:19481 -upstream http://127.0.0.1:8080   # a bare Go reverse proxy
//	loadgen relay -listen 127.0.0.1:19482 -upstream 127.0.0.1:8080          # a TCP relay, no HTTP
//
// bench reports each target's CPU time per request when told the processes: -backend-pid for
// the backend, -pid NAME=PID,... for those in target NAME's path (Linux: it reads /proc).
//
// Requests are HTTP/1.1 GETs on keep-alive connections (bench), one connection per request
// (appstart, firstbyte). Exit status: 0 when every request succeeded, whether or not the goals
// were met (the report says); 1 on any failed request or other error; 2 on bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "bench":
		err = benchCmd(ctx, os.Args[2:])
	case "appstart":
		err = appStartCmd(ctx, os.Args[2:])
	case "firstbyte":
		err = firstByteCmd(ctx, os.Args[2:])
	case "coldstats":
		err = coldStatsCmd(os.Args[2:])
	case "proxy":
		err = proxyCmd(ctx, os.Args[2:])
	case "relay":
		err = relayCmd(ctx, os.Args[2:])
	default:
		usage()
	}
	if errors.Is(err, errUsage) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen bench|appstart|firstbyte|coldstats|proxy|relay [flags]  (-h for each)")
	os.Exit(2)
}

// parse parses fs and turns its errors into errUsage (the flag package has printed them).
func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "unexpected arguments: %v\n", fs.Args())
		return errUsage
	}
	return nil
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ", ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func goalFlags(fs *flag.FlagSet) *Goals {
	g := &Goals{}
	fs.DurationVar(&g.AddedP50, "goal-added-p50", 200*time.Microsecond, "goal: most p50 latency the goal target may add to the baseline")
	fs.Float64Var(&g.ThroughputRatio, "goal-throughput", 0.70, "goal: least throughput of the goal target as a fraction of the baseline's")
	fs.DurationVar(&g.ColdStartP99, "goal-cold-p99", 20*time.Millisecond, "goal: most cold-start overhead at p99")
	return g
}

func benchCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var targets, headers, pids listFlag
	fs.Var(&targets, "target", "NAME=URL of a target (repeat; the order is the first round's)")
	fs.Var(&headers, "H", "NAME:Header: value added to every request to target NAME (repeat)")
	fs.Var(&pids, "pid", "NAME=PID[,PID...]: the processes in target NAME's path, for CPU time per request (repeat)")
	backendPIDs := fs.String("backend-pid", "", "PID[,PID...] of the backend, for CPU time per request")
	cfg := BenchConfig{}
	fs.IntVar(&cfg.Concurrency, "c", 16, "requests in flight (connections) per target")
	fs.DurationVar(&cfg.Duration, "d", 5*time.Second, "measured duration per target per round")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "unmeasured load before each measurement")
	fs.IntVar(&cfg.Rounds, "rounds", 5, "rounds; each runs every target once, in rotated order")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.StringVar(&cfg.Expect, "expect", "Hello", "a reply must contain this (checked once per target before the run)")
	baseline := fs.String("baseline", "", "target the others are compared with (default: the first)")
	goalTarget := fs.String("goal-target", "activator", "target the goals are checked for")
	goals := goalFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.Targets, err = parseTargets(targets, headers, pids); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return errUsage
	}
	if *backendPIDs != "" {
		if cfg.Backend, err = parsePIDs(*backendPIDs); err != nil {
			fmt.Fprintf(os.Stderr, "-backend-pid: %v\n", err)
			return errUsage
		}
	}
	if cfg.Concurrency < 1 || cfg.Rounds < 1 || cfg.Duration <= 0 {
		fmt.Fprintln(os.Stderr, "-c and -rounds must be at least 1 and -d positive")
		return errUsage
	}
	if *baseline == "" {
		*baseline = cfg.Targets[0].Name
	}
	fmt.Printf("loadgen: %d targets, %d connections each, %v warm-up + %v measured per target per round, %d rounds\n",
		len(cfg.Targets), cfg.Concurrency, cfg.Warmup, cfg.Duration, cfg.Rounds)
	rounds, err := Bench(ctx, cfg, os.Stdout)
	if err != nil {
		return err
	}
	failed, err := Report(os.Stdout, cfg.Targets, *baseline, *goalTarget, rounds, *goals)
	if err != nil {
		return err
	}
	if failed {
		return errors.New("some requests failed (see the errors column)")
	}
	return nil
}

// parseTargets reads NAME=URL targets, NAME:Header: value headers and NAME=PID,... processes.
func parseTargets(targets, headers, pids []string) ([]Target, error) {
	if len(targets) == 0 {
		return nil, errors.New("at least one -target NAME=URL is needed")
	}
	var out []Target
	index := map[string]int{}
	for _, t := range targets {
		name, url, ok := strings.Cut(t, "=")
		if !ok || name == "" || url == "" || strings.Contains(name, ":") {
			return nil, fmt.Errorf("-target %q: want NAME=URL, NAME without ':'", t)
		}
		if _, dup := index[name]; dup {
			return nil, fmt.Errorf("-target %q: %s named twice", t, name)
		}
		index[name] = len(out)
		out = append(out, Target{Name: name, URL: url, Header: http.Header{}})
	}
	for _, h := range headers {
		name, kv, _ := strings.Cut(h, ":")
		i, ok := index[name]
		if !ok {
			return nil, fmt.Errorf("-H %q: no target named %q", h, name)
		}
		k, v, err := parseHeader(kv)
		if err != nil {
			return nil, fmt.Errorf("-H %q: %w", h, err)
		}
		out[i].Header.Add(k, v)
	}
	for _, p := range pids {
		name, list, _ := strings.Cut(p, "=")
		i, ok := index[name]
		if !ok {
			return nil, fmt.Errorf("-pid %q: no target named %q", p, name)
		}
		procs, err := parsePIDs(list)
		if err != nil {
			return nil, fmt.Errorf("-pid %q: %w", p, err)
		}
		out[i].Proxy = append(out[i].Proxy, procs...)
	}
	return out, nil
}

func parseHeader(kv string) (string, string, error) {
	k, v, ok := strings.Cut(kv, ":")
	k, v = strings.TrimSpace(k), strings.TrimSpace(v)
	if !ok || k == "" {
		return "", "", fmt.Errorf("want Header: value")
	}
	return k, v, nil
}

func appStartCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("appstart", flag.ContinueOnError)
	command := fs.String("cmd", "", "the app's binary; it must listen on $HOST:$PORT")
	var env listFlag
	fs.Var(&env, "env", "KEY=VALUE for the app (repeat)")
	poll := fs.Duration("poll", 200*time.Microsecond, "pause between attempts")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *command == "" {
		fmt.Fprintln(os.Stderr, "-cmd is required")
		return errUsage
	}
	d, err := AppStart(ctx, *command, env, *poll, *timeout)
	if err != nil {
		return err
	}
	fmt.Println(d)
	return nil
}

func firstByteCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("firstbyte", flag.ContinueOnError)
	url := fs.String("url", "", "URL to GET")
	var headers listFlag
	fs.Var(&headers, "H", "Header: value (repeat)")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after")
	if err := parse(fs, args); err != nil {
		return err
	}
	h := http.Header{}
	for _, kv := range headers {
		k, v, err := parseHeader(kv)
		if err != nil {
			fmt.Fprintf(os.Stderr, "-H %q: %v\n", kv, err)
			return errUsage
		}
		h.Add(k, v)
	}
	if *url == "" {
		fmt.Fprintln(os.Stderr, "-url is required")
		return errUsage
	}
	d, err := FirstByte(ctx, *url, h, *timeout)
	if err != nil {
		return err
	}
	fmt.Println(d)
	return nil
}

func coldStatsCmd(args []string) error {
	fs := flag.NewFlagSet("coldstats", flag.ContinueOnError)
	appFile := fs.String("app", "", "file of the app's own start times, one duration per line")
	firstFile := fs.String("first", "", "file of first-byte times from zero, one per line, paired by line with -app")
	goals := goalFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	app, err := readDurations(*appFile)
	if err != nil {
		return err
	}
	first, err := readDurations(*firstFile)
	if err != nil {
		return err
	}
	c, err := CompareColdStart(app, first)
	if err != nil {
		return err
	}
	ReportColdStart(os.Stdout, c, *goals)
	return nil
}
