package e2e

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// TestHelloworld checks the example app on its own: HTTP and gRPC (h2c) on one port, answering
// with its TARGET, and a clean exit on SIGTERM (checked by the process harness) with a gRPC
// connection still open.
func TestHelloworld(t *testing.T) {
	b := startBackend(t, "Go Sample v1") // startBackend waits for "Hello Go Sample v1!\n" over HTTP

	conn, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testgrpc.SimpleRequest{FillServerId: true}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("UnaryCall over h2c: %v", err)
	}
	if resp.GetServerId() != "Go Sample v1" || resp.GetHostname() != b.addr {
		t.Errorf("UnaryCall = server_id %q hostname %q, want %q %q", resp.GetServerId(), resp.GetHostname(), "Go Sample v1", b.addr)
	}
	b.proc.stop(t)
}
