// Command sluice is a control plane that gives Envoy gateways and gRPC xDS clients Knative-style
// revision traffic management. "sluice serve" runs it; the other commands talk to it over HTTP.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// The first SIGINT/SIGTERM cancels ctx for a graceful stop; stop() restores the default so a
	// second one kills a shutdown that hangs.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
