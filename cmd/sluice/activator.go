package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/activator"
	"github.com/sluice-dev/sluice/internal/gctuner"
)

// activatorOptions are the activator command's flags.
type activatorOptions struct {
	listen, xds, nodeID, logLevel string
	limits                        activatorLimits
}

func newActivatorCmd() *cobra.Command {
	o := activatorOptions{}
	cmd := &cobra.Command{
		Use:   "activator",
		Short: "Run an activator: buffer requests for revisions at zero until they have instances",
		Long: `activator stands in for revisions with no ready instance. Gateways send it a revision's
requests (with Knative-Serving-Namespace and Knative-Serving-Revision set) while the revision is
at zero; it queues them, tells the autoscaler at once, and forwards them once instances are ready,
never above the revision's containerConcurrency per instance. HTTP/1.1 and h2c (gRPC) both ways.

It learns revisions and their ready instances from the control plane over xDS (--xds) and reports
the requests it holds there over LRS, so activators can run as separate replicas.

How it finds a request's revision: Envoy gateways name it in Knative-Serving-Namespace and
Knative-Serving-Revision. Requests without Knative-Serving-Revision (proxyless gRPC clients, which
ignore header rewrites, or HTTP clients sent here without Envoy) are routed by their authority
(Host or :authority, port stripped): the activator asks the control plane for that host's route,
takes the tag route whose Knative-Serving-Tag (gRPC metadata "knative-serving-tag") matches, else
the default route, and picks among its revisions by weight, counting only those the gateways send
to the activator. A host the control plane does not know gets 404; the routes of the
--max-hosts most recently used hosts are kept.

Queues are bounded per revision by request count, bytes (headers and declared Content-Length) and
wait time; a request over a bound gets 503 with X-Sluice-Activator saying which. A request past its
revision's timeoutSeconds gets 504.

SIGINT or SIGTERM stops accepting connections and lets queued and in-flight requests finish, up
to --drain-timeout.`,
		Example: `  # Next to "sluice serve" on the same machine
  sluice activator

  # A replica on another host
  sluice activator --listen 0.0.0.0:8012 --xds controlplane.internal:18000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(cmd, o.logLevel)
			if err != nil {
				return err
			}
			opts := o.limits.options()
			opts.Listen, opts.ControlPlane, opts.NodeID, opts.Logger = o.listen, o.xds, o.nodeID, log
			a, err := activator.New(opts)
			if err != nil {
				return err
			}
			if gc := gctuner.New(gctuner.GoDefaultPercent, log); gc != nil {
				ctx, stop := context.WithCancel(cmd.Context())
				done := make(chan struct{})
				go func() { defer close(done); _ = gc.Run(ctx) }()
				defer func() { stop(); <-done }()
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", activator.DefaultListen, "address to serve HTTP/1.1 and h2c on")
	f.StringVar(&o.xds, "xds", activator.DefaultControlPlane, "address of the control plane's xDS (and LRS) gRPC server")
	f.StringVar(&o.nodeID, "node-id", "", `xDS node id (default "activator-<hostname>-<pid>")`)
	o.limits.bind(f, "")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
