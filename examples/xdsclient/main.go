// Command xdsclient is a proxyless gRPC client that finds its backends through sluice over xDS,
// the way a gRPC service in a mesh would: it dials xds:///HOST, and gRPC-Go's xDS resolver asks
// sluice for HOST's listener, route, clusters and endpoints. It calls the helloworld example's
// grpc.testing.TestService and counts which revision (the app's TARGET) answered, so a traffic
// split can be seen without Envoy.
//
//	go run ./examples/xdsclient -n 1000 hello.default.example.com
//	go run ./examples/xdsclient -tag v1 hello.default.example.com
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds" // also registers the xds:/// resolver and balancers

	"github.com/sluice-dev/sluice/wire"
)

func main() {
	xdsAddr := flag.String("xds", "127.0.0.1:18000", "sluice's xDS address")
	n := flag.Int("n", 100, "number of calls")
	tag := flag.String("tag", "", "send Knative-Serving-Tag: TAG to reach a tagged revision on the main host")
	timeout := flag.Duration("timeout", 5*time.Second, "deadline of each call")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: xdsclient [flags] HOST\n\nCalls HOST (e.g. hello.default.example.com) through sluice's xDS and counts the answering revisions.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *xdsAddr, *n, *tag, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(host, xdsAddr string, n int, tag string, timeout time.Duration) error {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	// A real service sets GRPC_XDS_BOOTSTRAP (a file) or GRPC_XDS_BOOTSTRAP_CONFIG (its content),
	// which gRPC reads when it starts. Without one, this example builds its own pointing at -xds,
	// handed to this channel only.
	if os.Getenv("GRPC_XDS_BOOTSTRAP") == "" && os.Getenv("GRPC_XDS_BOOTSTRAP_CONFIG") == "" {
		b, err := json.Marshal(map[string]any{
			"xds_servers": []any{map[string]any{
				"server_uri":      xdsAddr,
				"channel_creds":   []any{map[string]any{"type": "insecure"}},
				"server_features": []string{"xds_v3"},
			}},
			"node": map[string]any{"id": "xdsclient-" + fmt.Sprint(os.Getpid()), "cluster": "examples"},
		})
		if err != nil {
			return err
		}
		resolver, err := xds.NewXDSResolverWithConfigForTesting(b)
		if err != nil {
			return fmt.Errorf("xDS bootstrap for %s: %w", xdsAddr, err)
		}
		opts = append(opts, grpc.WithResolvers(resolver))
	}
	conn, err := grpc.NewClient("xds:///"+host, opts...)
	if err != nil {
		return fmt.Errorf("dial xds:///%s: %w", host, err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)

	counts := map[string]int{}
	var failed int
	var lastErr error
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		if tag != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, wire.HeaderTagLower, tag)
		}
		resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{FillServerId: true})
		cancel()
		if err != nil {
			failed++
			lastErr = err
			continue
		}
		counts[resp.GetServerId()]++
	}
	names := make([]string, 0, len(counts))
	for k := range counts {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Printf("%-20s %6d  %5.1f%%\n", k, counts[k], 100*float64(counts[k])/float64(n))
	}
	if failed > 0 {
		fmt.Printf("%-20s %6d  %5.1f%%\n", "(failed)", failed, 100*float64(failed)/float64(n))
		return errors.Join(fmt.Errorf("%d of %d calls failed", failed, n), lastErr)
	}
	return nil
}
