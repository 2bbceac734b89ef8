package standalone

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"google.golang.org/grpc"

	"github.com/sluice-dev/sluice/activator"
	"github.com/sluice-dev/sluice/autoscaler"
	"github.com/sluice-dev/sluice/autoscaler/local"
	"github.com/sluice-dev/sluice/autoscaler/lrs"
	"github.com/sluice-dev/sluice/autoscaler/metrics"
	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/xds"
)

// addScaling adds what scales revisions from and to zero: the local instances' supervisor, the
// load reporting server feeding the autoscaler, the autoscaler, and (unless --activator-addr is
// empty) an activator. It returns the autoscaler, which is the control-plane loop's endpoint
// source. Ports are bound here, so a taken one fails serve before anything runs.
func (s *server) addScaling(srv *xds.Server, g *grpc.Server, xdsAddr net.Addr) (*autoscaler.Autoscaler, error) {
	defaults := s.cfg.Scaling
	var err error
	// The activator's port is bound first: the address gateways are given is the bound one.
	var actLn net.Listener
	if s.cfg.ActivatorAddr != "" {
		if actLn, err = net.Listen("tcp", s.cfg.ActivatorAddr); err != nil {
			return nil, fmt.Errorf("listen for the activator on %s: %w", s.cfg.ActivatorAddr, err)
		}
	}
	bound := ""
	if actLn != nil {
		bound = actLn.Addr().String()
	}
	actEndpoint, err := activatorEndpoint(bound, s.cfg.ActivatorEndpoint)
	if err != nil {
		if actLn != nil {
			_ = actLn.Close()
		}
		return nil, err
	}

	collector := metrics.NewCollector(0)
	var as *autoscaler.Autoscaler
	sup, err := local.New(local.Options{
		LogsDir: filepath.Join(s.cfg.DataDir, "logs"),
		// An instance leaves the load assignments, and the clients acknowledge that, before it is
		// signalled.
		BeforeStop: func(ctx context.Context, key routing.Key, addr string) error {
			ep, err := parseEndpoint(addr)
			if err != nil {
				return err
			}
			return as.WaitRemoved(ctx, key, ep)
		},
		DrainPeriod: s.cfg.DrainPeriod,
		Logger:      s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("start the local instances' supervisor: %w", err)
	}
	as = autoscaler.New(local.NewScaler(sup), collector, srv, autoscaler.Options{
		Defaults:     defaults,
		Activator:    actEndpoint,
		TickInterval: s.cfg.TickInterval,
		Logger:       s.log,
	})
	lrs.NewServer(pokingSink{collector, as}, lrs.Options{Logger: s.log, Clusters: as.Clusters}).Register(g)
	s.api.Handle(local.LogsPattern, sup.LogsHandler())

	s.add("instances", sup.Run)
	s.add("autoscaler", func(ctx context.Context) error { as.Run(ctx); return nil })
	if actLn != nil {
		opts := s.cfg.Activator
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
