package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/sluice-dev/sluice/activator"
	"github.com/sluice-dev/sluice/autoscaler"
	"github.com/sluice-dev/sluice/autoscaler/local"
	"github.com/sluice-dev/sluice/autoscaler/lrs"
	"github.com/sluice-dev/sluice/autoscaler/metrics"
	"github.com/sluice-dev/sluice/routing"
	v1 "github.com/sluice-dev/sluice/routing/v1"
	"github.com/sluice-dev/sluice/xds"
)

// addScaling adds what scales revisions from and to zero: the local instances' supervisor, the
// load reporting server feeding the autoscaler, the autoscaler, and (unless --activator-addr is
// empty) an activator. It returns the autoscaler, which is the control-plane loop's endpoint
// source. Ports are bound here, so a taken one fails serve before anything runs.
func (s *server) addScaling(srv *xds.Server, g *grpc.Server, xdsAddr net.Addr) (*autoscaler.Autoscaler, error) {
	defaults, err := s.opts.scaling.config()
	if err != nil {
		return nil, err
	}
	// The activator's port is bound first: the address gateways are given is the bound one.
	var actLn net.Listener
	if s.opts.activatorAddr != "" {
		if actLn, err = net.Listen("tcp", s.opts.activatorAddr); err != nil {
			return nil, fmt.Errorf("listen for the activator on %s: %w", s.opts.activatorAddr, err)
		}
	}
	bound := ""
	if actLn != nil {
		bound = actLn.Addr().String()
	}
	actEndpoint, err := activatorEndpoint(bound, s.opts.activatorEndpoint)
	if err != nil {
		if actLn != nil {
			_ = actLn.Close()
		}
		return nil, err
	}

	collector := metrics.NewCollector(0)
	var as *autoscaler.Autoscaler
	sup, err := local.New(local.Options{
		LogsDir: filepath.Join(s.opts.dataDir, "logs"),
		// An instance leaves the load assignments, and the clients acknowledge that, before it is
		// signalled.
		BeforeStop: func(ctx context.Context, key routing.Key, addr string) error {
			ep, err := parseEndpoint(addr)
			if err != nil {
				return err
			}
			return as.WaitRemoved(ctx, key, ep)
		},
		DrainPeriod: s.opts.drainPeriod,
		Logger:      s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("start the local instances' supervisor: %w", err)
	}
	as = autoscaler.New(localScaler{sup}, collector, srv, s.store.State, autoscaler.Options{
		Defaults:     defaults,
		Activator:    actEndpoint,
		TickInterval: s.opts.scaling.tick,
		Logger:       s.log,
	})
	lrs.NewServer(pokingSink{collector, as}, lrs.Options{Logger: s.log, Clusters: as.Clusters}).Register(g)
	s.api.Handle(local.LogsPattern, sup.LogsHandler())

	s.add("instances", sup.Run)
	s.add("autoscaler", func(ctx context.Context) error { as.Run(ctx); return nil })
	if actLn != nil {
		opts := s.opts.activator.options()
		opts.ControlPlane = dialable(xdsAddr)
		opts.NodeID = "sluice-activator-" + actLn.Addr().String()
		opts.Logger = s.log
		act, err := activator.New(opts)
		if err != nil {
			_ = actLn.Close()
			return nil, err
		}
		s.add("activator", func(ctx context.Context) error { return act.Serve(ctx, actLn) })
	}
	return as, nil
}

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

// localScaler runs revisions as local processes (standalone mode).
type localScaler struct{ sup *local.Supervisor }

func (l localScaler) Check(rev *v1.Revision) error {
	_, err := local.SpecFromRevision(rev)
	return err
}

func (l localScaler) Scale(rev *v1.Revision, n int) {
	spec, err := local.SpecFromRevision(rev)
	if err != nil {
		return // Check said so already; the revision is not Ready with that reason
	}
	l.sup.Scale(routing.KeyOf(rev), spec, n)
}

func (l localScaler) Forget(key routing.Key)   { l.sup.Forget(key) }
func (l localScaler) Changes() <-chan struct{} { return l.sup.Changes() }
func (l localScaler) Changed() []routing.Key   { return l.sup.Changed() }
func (l localScaler) Instances(key routing.Key) autoscaler.Instances {
	st, _ := l.sup.Revision(key)
	out := autoscaler.Instances{Desired: st.Desired, Actual: st.Actual, Ready: st.Ready, Endpoints: st.Endpoints()}
	var lastCrashStart time.Time
	for _, in := range st.Instances {
		out.Restarts += in.Restarts
		crashed := in.State == local.StateCrashed
		if in.LastExit == "" || (!crashed && in.Restarts == 0) {
			continue // never crashed: its LastExit, if any, is a stop
		}
		if crashed {
			out.Failure = "instance " + in.Name + " " + in.LastExit
		}
		if out.LastCrash == "" || in.Started.After(lastCrashStart) {
			out.LastCrash, lastCrashStart = "instance "+in.Name+" "+in.LastExit, in.Started
		}
	}
	return out
}

// pokingSink hands load reports to the collector, and wakes the autoscaler at once when an
// activator holds requests for a revision: that is the activator's poke.
type pokingSink struct {
	*metrics.Collector
	as *autoscaler.Autoscaler
}

func (p pokingSink) Report(r metrics.Report) {
	p.Collector.Report(r)
	if r.Kind == metrics.Activator && r.InProgress > 0 {
		p.as.Poke(r.Cluster)
	}
}

// activatorEndpoint is where gateways send a revision's requests while the activator is in its
// path: --activator-endpoint, else --activator-addr (loopback when it binds every address).
func activatorEndpoint(listen, advertised string) (routing.Endpoint, error) {
	addr, flag := advertised, "--activator-endpoint"
	if addr == "" {
		addr, flag = listen, "--activator-addr"
	}
	if addr == "" {
		return routing.Endpoint{}, fmt.Errorf("--activator-endpoint is required when --activator-addr is empty (activators run elsewhere)")
	}
	ep, err := parseEndpoint(addr)
	if err != nil {
		return ep, fmt.Errorf("%s %q: %w", flag, addr, err)
	}
	if ep.Host == "0.0.0.0" || ep.Host == "::" {
		if advertised != "" {
			return ep, fmt.Errorf("--activator-endpoint %q: gateways need an address they can connect to, not the wildcard", addr)
		}
		ep.Host = "127.0.0.1"
	}
	return ep, nil
}

func parseEndpoint(addr string) (routing.Endpoint, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return routing.Endpoint{}, fmt.Errorf("want IP:PORT: %w", err)
	}
	if net.ParseIP(host) == nil {
		return routing.Endpoint{}, fmt.Errorf("host %q is not an IP address", host)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return routing.Endpoint{}, fmt.Errorf("port %q must be 1-65535", port)
	}
	return routing.Endpoint{Host: host, Port: uint32(p)}, nil
}

// dialable is an address to connect to what listens on addr: loopback for a wildcard bind.
func dialable(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port))
}
