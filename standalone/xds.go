package standalone

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/sluice-dev/sluice/controlplane"
	"github.com/sluice-dev/sluice/envoy"
	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/xds"
)

// addControlPlane adds the xDS server and the loop feeding it to s, and mounts /metrics and
// /debug/xds on the API. The xDS port is bound here so a taken port fails serve before anything
// runs.
func (s *server) addControlPlane(ctx context.Context) error {
	gw, err := gatewayOptions(s.cfg.ExternalAddr, s.cfg.InternalAddr)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := xds.NewServer(ctx, xds.Options{Logger: s.log, Registerer: reg})
	if err != nil {
		return fmt.Errorf("start xDS server: %w", err)
	}
	ln, err := net.Listen("tcp", s.cfg.XDSAddr)
	if err != nil {
		return fmt.Errorf("listen for xDS on %s: %w", s.cfg.XDSAddr, err)
	}
	if host, _, err := net.SplitHostPort(s.cfg.XDSAddr); err == nil && !isLoopback(host) {
		// xDS has no authentication yet: whoever reaches the port reads every host and backend.
		s.log.Warn("xDS is served beyond loopback without authentication: every node that can reach it reads all routes and endpoints; restrict it to your gateways' network",
			"addr", s.cfg.XDSAddr)
	}
	g := grpc.NewServer(
		// Envoy's bootstrap pings every 30s on idle streams; let it, rather than closing its
		// connection with "too many pings".
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	srv.Register(g)
	as, err := s.addScaling(srv, g, ln.Addr())
	if err != nil {
		_ = ln.Close()
		return err
	}
	s.scale = as
	mem := newMemoryReleaser(s.log)
	s.add("memory", mem.run)

	loop := controlplane.New(s.store, as, envoy.NewTranslator(gw), srv, controlplane.Options{
		Routing:   routing.Config{Domain: s.cfg.Domain},
		Logger:    s.log,
		Revisions: as,
		Synced:    mem.synced,
	})
	s.api.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.api.Handle("GET /debug/xds", srv.DebugHandler())
	// Go's profiler, for "why is it slow / big" at a user's site; behind the API's token like the rest.
	s.api.Handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
	s.api.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	s.add("xds", func(ctx context.Context) error { return serveGRPC(ctx, g, ln) })
	s.add("controlplane", loop.Run)
	s.log.Info("xDS serving", "addr", ln.Addr().String(), "envoyExternal", s.cfg.ExternalAddr, "envoyInternal", s.cfg.InternalAddr)
	return nil
}

// serveGRPC serves g on ln until ctx is done, then stops gracefully: open xDS streams never end by
// themselves, so after a short grace period they are cut and clients reconnect to the next sluice.
func serveGRPC(ctx context.Context, g *grpc.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve xDS on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		g.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve xDS on %s: %w", ln.Addr(), err)
	}
	return nil
}

// gatewayOptions turns the --envoy-*-addr flags into the listeners sluice gives Envoy.
func gatewayOptions(external, internal string) (envoy.Options, error) {
	var o envoy.Options
	var err error
	if o.ExternalAddress, o.ExternalPort, err = splitListenAddr("--envoy-external-addr", external); err != nil {
		return o, err
	}
	if o.InternalAddress, o.InternalPort, err = splitListenAddr("--envoy-internal-addr", internal); err != nil {
		return o, err
	}
	return o, nil
}

func splitListenAddr(flag, addr string) (string, uint32, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: want HOST:PORT: %w", flag, addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return "", 0, fmt.Errorf("%s %q: the host must be an IP address (Envoy binds listeners to addresses)", flag, addr)
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil || p == 0 {
		return "", 0, fmt.Errorf("%s %q: the port must be 1-65535", flag, addr)
	}
	return ip.String(), uint32(p), nil
}
