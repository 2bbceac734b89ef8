// Package standalone runs sluice's control plane on one machine: the bbolt store as the source of
// desired state (fed by the HTTP API and, optionally, a watched directory), the control-plane loop,
// the xDS server, the autoscaler with local processes as its scaler, the load reporting server and
// an activator. It is the wiring of those parts and nothing else: each part is a package of its
// own, and a Kubernetes runner wires the same loop to informers instead.
package standalone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sluice-dev/sluice/activator"
	"github.com/sluice-dev/sluice/api/apiserver"
	"github.com/sluice-dev/sluice/autoscaler"
	"github.com/sluice-dev/sluice/autoscaler/scaling"
	"github.com/sluice-dev/sluice/internal/gctuner"
	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/routing/store"
	v1 "github.com/sluice-dev/sluice/routing/v1"
	"github.com/sluice-dev/sluice/source/directory"
)

// Config is everything a standalone control plane is configured with: serve's flags.
type Config struct {
	// DataDir holds the store (kept across restarts) and the local instances' logs.
	DataDir string
	// XDSAddr is where the xDS (and LRS) gRPC server listens.
	XDSAddr string
	// APIAddr is where the HTTP API listens; beyond loopback it requires Token.
	APIAddr string
	// Token, when set, is required of every API client as a bearer token.
	Token string
	// Domain is the domain of service hosts: NAME.NAMESPACE.DOMAIN.
	Domain string
	// WatchDir, when set, is a directory of manifests applied whenever it changes.
	WatchDir string
	// ExternalAddr and InternalAddr are where Envoy gateways bind the listeners sluice gives them.
	ExternalAddr, InternalAddr string
	// ActivatorAddr is where the in-process activator listens; empty for none.
	ActivatorAddr string
	// ActivatorEndpoint is where gateways reach activators; default ActivatorAddr.
	ActivatorEndpoint string
	// Activator are the in-process activator's limits (queue bounds, drain timeout, hosts).
	Activator activator.Options
	// Scaling are the global autoscaling defaults (Knative's config-autoscaler).
	Scaling scaling.Config
	// TickInterval is how often every revision's scale is decided.
	TickInterval time.Duration
	// DrainPeriod is how long a stopping instance keeps serving after its removal was acknowledged.
	DrainPeriod time.Duration
}

// server is everything serve runs. Its parts share one lifetime: they start together, the first
// to fail stops the others, and Run returns once all have returned.
type server struct {
	cfg   Config
	log   *slog.Logger
	store *store.Store
	// api is the HTTP API; parts may add handlers (metrics, xDS debug) with api.Handle.
	api   *apiserver.Server
	parts []part
	// scale is the autoscaler, set before anything runs; the API reads revisions' scale from it.
	scale *autoscaler.Autoscaler
}

// part is one long-running piece of serve. run must return when ctx is done, with nil if that
// is why it returned.
type part struct {
	name string
	run  func(ctx context.Context) error
}

func (s *server) add(name string, run func(ctx context.Context) error) {
	s.parts = append(s.parts, part{name, run})
}

// Run runs the control plane until ctx is done (a clean stop: nil) or a part fails. Every port is
// bound before anything runs, so a taken one fails Run at once with nothing half started.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	gc := gctuner.New(gctuner.ControlPlanePercent, log)
	if gc != nil {
		gc.Apply() // before the store's load grows the heap
	}
	if err := CheckExposure(cfg.APIAddr, cfg.Token); err != nil {
		return err
	}
	st, err := store.Open(cfg.DataDir)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing the store", "err", err)
		}
	}()
	s := &server{cfg: cfg, log: log, store: st}
	if gc != nil {
		s.add("gc", gc.Run)
	}
	s.api = apiserver.New(st, apiserver.Options{Token: cfg.Token, Logger: log, RevisionScale: s.revisionScale})
	ln, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("listen for the API on %s: %w", cfg.APIAddr, err)
	}
	s.add("api", func(ctx context.Context) error { return s.serveAPI(ctx, ln) })
	if cfg.WatchDir != "" {
		w := &directory.Watcher{Dir: cfg.WatchDir, Store: st, Log: log}
		s.add("watch", w.Run)
	}
	if err := s.addControlPlane(ctx); err != nil {
		_ = ln.Close()
		return err
	}
	log.Info("sluice serving", "api", "http://"+ln.Addr().String(), "dataDir", cfg.DataDir, "watch", cfg.WatchDir)
	return s.run(ctx)
}

// revisionScale is a revision's live scale for the API.
func (s *server) revisionScale(k routing.Key) (desired, actual int32, scale v1.ScaleStatus, ok bool) {
	if s.scale == nil {
		return 0, 0, scale, false
	}
	st, ok := s.scale.Status(k)
	if !ok {
		return 0, 0, scale, false
	}
	return st.Desired, st.Actual, v1.ScaleStatus{ReadyReplicas: st.Ready, Mode: st.Mode, Reason: st.Reason, Restarts: st.Restarts, LastCrash: st.LastCrash}, true
}

// run starts every part and waits for all of them. The first error cancels the rest and is
// returned; cancellation of ctx (a signal) is a clean stop.
func (s *server) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, p := range s.parts {
		wg.Go(func() {
			if err := p.run(ctx); err != nil {
				once.Do(func() { first = fmt.Errorf("%s: %w", p.name, err) })
				cancel()
			}
		})
	}
	wg.Wait()
	return first
}

func (s *server) serveAPI(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.api,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve API on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	// A CLI request in flight gets a few seconds to finish; then we stop regardless.
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := hs.Shutdown(shutdownCtx)
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve API on %s: %w", ln.Addr(), serveErr)
	}
	if err != nil {
		return fmt.Errorf("shut down API: %w", err)
	}
	return nil
}

// CheckExposure refuses an API reachable from other hosts without a token.
func CheckExposure(addr, token string) error {
	if token != "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--api-addr %q: %w", addr, err)
	}
	if isLoopback(host) {
		return nil
	}
	return fmt.Errorf("refusing to serve the API on %s without a token: anyone who can reach it could change routing; set --token or SLUICE_TOKEN, or bind --api-addr to 127.0.0.1", addr)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
