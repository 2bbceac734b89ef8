package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/standalone"
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
			cfg, err := o.config(g.token)
			if err != nil {
				return err
			}
			return standalone.Run(cmd.Context(), cfg, log)
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

// config turns serve's flags into the standalone control plane's configuration.
func (o serveOptions) config(token string) (standalone.Config, error) {
	defaults, err := o.scaling.config()
	if err != nil {
		return standalone.Config{}, err
	}
	return standalone.Config{
		DataDir:           o.dataDir,
		XDSAddr:           o.xdsAddr,
		APIAddr:           o.apiAddr,
		Token:             token,
		Domain:            o.domain,
		WatchDir:          o.watchDir,
		ExternalAddr:      o.externalAddr,
		InternalAddr:      o.internalAddr,
		ActivatorAddr:     o.activatorAddr,
		ActivatorEndpoint: o.activatorEndpoint,
		Activator:         o.activator.options(),
		Scaling:           defaults,
		TickInterval:      o.scaling.tick,
		DrainPeriod:       o.drainPeriod,
	}, nil
}
