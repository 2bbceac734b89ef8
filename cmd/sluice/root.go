package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/api/apiclient"
)

// Defaults shared by the client commands and serve.
const (
	defaultServer  = "http://127.0.0.1:9090"
	defaultAPIAddr = "127.0.0.1:9090"
)

// globals are the root's persistent flags, resolved against the environment before a command runs.
type globals struct {
	server string
	token  string
	stdin  io.Reader
	// httpClient is the transport for the API; nil means http.DefaultClient.
	httpClient *http.Client
}

func (g *globals) client() (*apiclient.Client, error) {
	return apiclient.New(g.server, g.token, g.httpClient)
}

// run executes the CLI and returns the process exit code. getenv is passed in so tests need not
// touch the process environment.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	root := newRootCmd(stdin, getenv)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return 1
		}
		fmt.Fprintln(stderr, "error: "+oneLine(err.Error()))
		return 1
	}
	return 0
}

// oneLine keeps the "error: ..." contract of one line on stderr even for multi-line causes.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

func newRootCmd(stdin io.Reader, getenv func(string) string) *cobra.Command {
	g := &globals{stdin: stdin}
	root := &cobra.Command{
		Use:   "sluice",
		Short: "Knative-style revision traffic management for Envoy and gRPC xDS clients",
		Long: `sluice keeps Knative serving.knative.dev/v1 Services, Configurations, Routes and Revisions,
resolves their traffic and serves it over xDS to Envoy gateways and proxyless gRPC clients.

"sluice serve" runs the control plane; the other commands talk to it over its HTTP API
(--server, or SLUICE_SERVER).`,
		Example: `  # Run the control plane with its state in ./.sluice
  sluice serve

  # Deploy the walkthrough's service, then split traffic 80/20 between its two revisions
  sluice apply -f examples/walkthrough/01-helloworld-go-v1.yaml
  sluice apply -f examples/walkthrough/02-helloworld-go-v2.yaml
  sluice service update helloworld-go --traffic helloworld-go-v1=80 --traffic @latest=20
  sluice get ksvc`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			// Flags beat the environment, which beats the defaults.
			if !cmd.Flags().Changed("server") {
				if v := getenv("SLUICE_SERVER"); v != "" {
					g.server = v
				}
			}
			if !cmd.Flags().Changed("token") {
				if v := getenv("SLUICE_TOKEN"); v != "" {
					g.token = v
				}
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&g.server, "server", defaultServer, "URL of the sluice API (env SLUICE_SERVER)")
	root.PersistentFlags().StringVar(&g.token, "token", "", "bearer token of the sluice API; serve requires it of clients when set (env SLUICE_TOKEN)")
	root.AddCommand(
		newServeCmd(g),
		newApplyCmd(g),
		newGetCmd(g),
		newDeleteCmd(g),
		newServiceCmd(g),
		newActivatorCmd(),
		newLogsCmd(g),
	)
	return root
}
