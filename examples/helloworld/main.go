// Command helloworld is Knative's helloworld-go sample, the app of the seed article, extended so
// that a gRPC client can tell revisions apart too.
//
// It listens on $HOST:$PORT (default 0.0.0.0:8080, as a Knative container does) and answers
//
//   - HTTP GET / (any path) with "Hello $TARGET!\n" (TARGET defaults to "World");
//   - gRPC over cleartext HTTP/2 (h2c, prior knowledge) on the same port: grpc.testing.TestService
//     UnaryCall answers with ServerId = $TARGET and Hostname = the address it listens on.
//
// It logs one line when it starts and stops gracefully on SIGTERM or SIGINT.
//
// For load and cold-start tests, DELAY (a Go duration, e.g. 100ms) makes every request take that
// long, and STARTUP_DELAY makes the process wait that long before it listens: an app with a slow
// start or slow requests, without writing one.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// drainTimeout bounds how long a stop waits for in-flight requests and open HTTP/2 connections.
const drainTimeout = 10 * time.Second

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(logger); err != nil {
		logger.Error("helloworld failed", "err", err)
		os.Exit(1)
	}
}

func getenv(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func run(logger *slog.Logger) error {
	target := getenv("TARGET", "World")
	addr := net.JoinHostPort(getenv("HOST", "0.0.0.0"), getenv("PORT", "8080"))
	delay, err := durationEnv("DELAY")
	if err != nil {
		return err
	}
	startupDelay, err := durationEnv("STARTUP_DELAY")
	if err != nil {
		return err
	}
	time.Sleep(startupDelay)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	listenAddr := ln.Addr().String()

	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, &testService{target: target, hostname: listenAddr, delay: delay})

	// hijacked counts the handlers still running, including h2c connections, which the
	// http.Server stops tracking once they are handed to the HTTP/2 server.
	var hijacked sync.WaitGroup
	h2s := &http2.Server{}
	h2 := h2c.NewHandler(newMux(target, gs, delay), h2s)
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hijacked.Add(1)
			defer hijacked.Done()
			h2.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	// Registers a shutdown hook that sends GOAWAY to the HTTP/2 connections on hs.Shutdown.
	if err := http2.ConfigureServer(hs, h2s); err != nil {
		return fmt.Errorf("configure http2: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	logger.Info("helloworld listening", "addr", listenAddr, "target", target, "pid", os.Getpid())

	select {
	case err := <-serveErr:
		gs.Stop()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("helloworld stopping", "addr", listenAddr)
	sctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		logger.Warn("shutdown did not finish cleanly", "err", err)
	}
	done := make(chan struct{})
	go func() { hijacked.Wait(); close(done) }()
	select {
	case <-done:
	case <-sctx.Done():
		logger.Warn("open HTTP/2 connections outlived the drain timeout")
	}
	gs.Stop()
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// newMux sends gRPC requests (HTTP/2 with a gRPC content type) to gs and everything else to the
// helloworld handler.
func newMux(target string, gs *grpc.Server, delay time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r)
			return
		}
		sleep(r.Context(), delay)
		fmt.Fprintf(w, "Hello %s!\n", target)
	})
}

// sleep waits d or until the request is gone.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func durationEnv(key string) (time.Duration, error) {
	v := os.Getenv(key)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration like 100ms", key, v)
	}
	return d, nil
}

// testService answers UnaryCall with who it is; the other methods stay unimplemented.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
	target   string
	hostname string
	delay    time.Duration
}

func (s *testService) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	sleep(ctx, s.delay)
	return &testgrpc.SimpleResponse{ServerId: s.target, Hostname: s.hostname}, nil
}

func (s *testService) EmptyCall(_ context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}
