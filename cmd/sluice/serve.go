package main

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

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/api/apiserver"
	"github.com/sluice-dev/sluice/autoscaler"
	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/routing/store"
	v1 "github.com/sluice-dev/sluice/routing/v1"
	"github.com/sluice-dev/sluice/source/directory"
)

// serveOptions are serve's flags.
type serveOptions struct {
	dataDir  string
	xdsAddr  string
	apiAddr  string
	domain   string
	watchDir string
	logLevel string
	// Where Envoy gateways bind the listeners sluice gives them.
	externalAddr string
	internalAddr string
	// Scale from zero: the in-process activator, and where gateways reach activators.
	activatorAddr     string
	activatorEndpoint string
	activator         activatorLimits
	scaling           *scalingFlags
	// drainPeriod is how long a stopping instance keeps serving after its removal was acknowledged.
	drainPeriod time.Duration
}

func newServeCmd(g *globals) *cobra.Command {
	o := serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the control plane: state store, HTTP API and xDS server",
		Long: `serve runs sluice: the state store (a bbolt file in --data-dir, kept across restarts), the
HTTP API the other commands use (--api-addr) and the xDS server Envoy and gRPC clients connect
to (--xds-addr).

The API listens on loopback by default. To bind it elsewhere, set a token (--token or
SLUICE_TOKEN) that clients must then present: anyone who reaches the API can change routing.

Revisions whose container has a command run as local processes that serve scales like Knative's
KPA: each instance gets its own PORT, output goes to --data-dir/logs ('sluice logs REVISION'), and
an idle revision goes to zero instances. Requests for a revision at zero go to the activator
(--activator-addr), which holds them, wakes the revision and forwards them once an instance is
ready. The autoscaling flags below are Knative's config-autoscaler defaults; a revision's
autoscaling.knative.dev/* annotations override them. Revisions with only an image need Kubernetes
mode; revisions with the sluice.dev/endpoints annotation are served at those addresses and not scaled.

With --watch DIR, serve also applies DIR's *.yaml, *.yml and *.json files at start and whenever
they change, all files as one batch: an invalid file is logged and nothing of it applies, so
the last good state keeps serving. Objects applied from DIR that are later removed from it are
deleted.

SIGINT or SIGTERM stops serve gracefully; a second one stops it at once.`,
		Example: `  # Everything on loopback, state in ./.sluice
  sluice serve

  # GitOps: apply ./deploy whenever it changes, with hosts under example.org
  sluice serve --watch ./deploy --domain example.org

  # Expose the API to other hosts (clients then need the same token)
  export SLUICE_TOKEN=$(openssl rand -hex 16)   # give the same token to the CLI on other hosts
  sluice serve --api-addr 0.0.0.0:9090`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(cmd, o.logLevel)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), o, g.token, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", "./.sluice", "directory of the state store (created if missing)")
	f.StringVar(&o.xdsAddr, "xds-addr", "127.0.0.1:18000", "address of the xDS gRPC server")
	f.StringVar(&o.apiAddr, "api-addr", defaultAPIAddr, "address of the HTTP API; not loopback requires --token")
	f.StringVar(&o.domain, "domain", "example.com", "domain of service hosts: NAME.NAMESPACE.DOMAIN")
	f.StringVar(&o.watchDir, "watch", "", "directory of manifests to apply whenever it changes")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.externalAddr, "envoy-external-addr", "0.0.0.0:8080", "address Envoy gateways bind the external listener to (public hosts)")
	f.StringVar(&o.internalAddr, "envoy-internal-addr", "127.0.0.1:8081", "address Envoy gateways bind the internal listener to (cluster-local hosts); loopback unless you give your private network's address")
	f.StringVar(&o.activatorAddr, "activator-addr", "127.0.0.1:8012", "address of the activator serve runs (empty: none; activators run elsewhere, started with 'sluice activator')")
	f.StringVar(&o.activatorEndpoint, "activator-endpoint", "", "IP:PORT gateways send a revision's requests to while it is at zero (default: --activator-addr)")
	o.activator.bind(f, "activator-")
	f.DurationVar(&o.drainPeriod, "instance-drain-period", time.Second,
		"how long a local instance keeps serving requests already sent to it, once clients stopped sending it new ones")
	o.scaling = bindScalingFlags(f)
	return cmd
}

func newLogger(cmd *cobra.Command, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: l})), nil
}

// server is everything serve runs. Its parts share one lifetime: they start together, the first
// to fail stops the others, and Run returns once all have returned.
type server struct {
	opts  serveOptions
	token string
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

func serve(ctx context.Context, o serveOptions, token string, log *slog.Logger) error {
	gc := newGCTuner(defaultGCPercent, log)
	if gc != nil {
		gc.apply()
	}
	if err := checkExposure(o.apiAddr, token); err != nil {
		return err
	}
	st, err := store.Open(o.dataDir)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing the store", "err", err)
		}
	}()
	s := &server{opts: o, token: token, log: log, store: st}
	if gc != nil {
		s.add("gc", gc.run)
	}
	s.api = apiserver.New(st, apiserver.Options{Token: token, Logger: log, RevisionScale: s.revisionScale})
	// Bind before anything runs so a taken port fails serve at once, with nothing half started.
	ln, err := net.Listen("tcp", o.apiAddr)
	if err != nil {
		return fmt.Errorf("listen for the API on %s: %w", o.apiAddr, err)
	}
	s.add("api", func(ctx context.Context) error { return s.serveAPI(ctx, ln) })
	if o.watchDir != "" {
		w := &directory.Watcher{Dir: o.watchDir, Store: st, Log: log}
		s.add("watch", w.Run)
	}
	if err := s.addControlPlane(ctx); err != nil {
		_ = ln.Close()
		return err
	}
	log.Info("sluice serving", "api", "http://"+ln.Addr().String(), "dataDir", o.dataDir, "watch", o.watchDir)
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

// checkExposure refuses an API reachable from other hosts without a token.
func checkExposure(addr, token string) error {
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
