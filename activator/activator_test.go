package activator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sluice-dev/sluice/activator/instances"
	"github.com/sluice-dev/sluice/wire"
)

// serving is an Activator serving on loopback for one test.
type serving struct {
	*Activator
	url  string
	addr string
	done chan error
}

// serve starts an Activator for the test and stops it, checking Serve's error, when the test ends.
func serve(t *testing.T, opts Options) *serving {
	t.Helper()
	s, cancel := startServing(t, opts)
	t.Cleanup(func() {
		cancel()
		if err := <-s.done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// startServing starts an Activator; Serve's error comes on done once cancel or a Shutdown
// stops it, and the caller reads it.
func startServing(t *testing.T, opts Options) (*serving, context.CancelFunc) {
	t.Helper()
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &serving{Activator: a, url: "http://" + ln.Addr().String(), addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { s.done <- a.Serve(ctx, ln) }()
	return s, cancel
}

func backendAddr(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func get(t *testing.T, url, ns, rev string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	return do(t, req, ns, rev)
}

func do(t *testing.T, req *http.Request, ns, rev string) (*http.Response, string) {
	t.Helper()
	if ns != "" {
		req.Header.Set(wire.HeaderNamespace, ns)
	}
	if rev != "" {
		req.Header.Set(wire.HeaderRevision, rev)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

var hello = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "hello from %s", r.Host)
})

func TestForwardsToAReadyInstance(t *testing.T) {
	s := serve(t, Options{})
	s.Update([]instances.Revision{{Name: "default/hello-00001", Addrs: []string{backendAddr(t, hello)}}}, nil)
	resp, body := get(t, s.url+"/path", "default", "hello-00001")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "hello from 127.0.0.1") {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

func TestRevisionWithoutNamespaceIs400(t *testing.T) {
	s := serve(t, Options{})
	resp, body := get(t, s.url, "", "hello-00001")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, wire.HeaderNamespace) {
		t.Errorf("without %s: got %d %q, want 400 naming it", wire.HeaderNamespace, resp.StatusCode, body)
	}
}

// Without a revision header the request is routed by its host; a host the control plane does
// not serve (here: there is none) is 404 naming the host.
func TestUnknownHostIs404AfterAWait(t *testing.T) {
	s := serve(t, Options{UnknownRevisionWait: time.Millisecond})
	req, _ := http.NewRequest(http.MethodGet, s.url, nil)
	req.Host = "Hello.Default.Example.com:8080"
	resp, body := do(t, req, "default", "")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"hello.default.example.com"`) {
		t.Fatalf("got %d %q, want 404 naming the host", resp.StatusCode, body)
	}
}

func TestUnknownRevisionIs404AfterAWait(t *testing.T) {
	s := serve(t, Options{UnknownRevisionWait: time.Millisecond})
	resp, body := get(t, s.url, "default", "nope-00001")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "default/nope-00001") {
		t.Fatalf("got %d %q, want 404 naming the revision", resp.StatusCode, body)
	}
}

func TestRevisionNamedWhileTheRequestWaits(t *testing.T) {
	s := serve(t, Options{UnknownRevisionWait: time.Hour})
	addr := backendAddr(t, hello)
	go func() {
		waitFor(t, func() bool { return s.waitingForNames() > 0 })
		s.Update([]instances.Revision{{Name: "default/late-00001", Addrs: []string{addr}}}, nil)
	}()
	resp, body := get(t, s.url, "default", "late-00001")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

func (a *Activator) waitingForNames() int64 { return a.lookupsWaiting.Load() }

func TestColdRequestPokesAndWaitsForAnInstance(t *testing.T) {
	var s *serving
	addr := backendAddr(t, hello)
	var pokes atomic.Int32
	s = serve(t, Options{Poke: func(rev string) {
		if rev != "default/cold-00001" {
			t.Errorf("poked %q", rev)
		}
		// The autoscaler's answer: an instance becomes ready.
		if pokes.Add(1) == 1 {
			go s.Update([]instances.Revision{{Name: rev, Addrs: []string{addr}}}, nil)
		}
	}})
	s.Update([]instances.Revision{{Name: "default/cold-00001"}}, nil)
	resp, body := get(t, s.url, "default", "cold-00001")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if pokes.Load() != 1 {
		t.Fatalf("poked %d times, want 1", pokes.Load())
	}
	// Warm now: no poke.
	get(t, s.url, "default", "cold-00001")
	if pokes.Load() != 1 {
		t.Fatalf("a request to a warm revision poked")
	}
}

func queued(a *Activator, name string) int {
	a.mu.RLock()
	r := a.revs[name]
	a.mu.RUnlock()
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.queued
}

func TestFullQueueIs503WithTheReason(t *testing.T) {
	s := serve(t, Options{QueueRequests: 2, QueueBytes: 4000})
	s.Update([]instances.Revision{{Name: "default/cold-00001", ContainerConcurrency: 1}}, nil)
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for range 2 {
		wg.Go(func() {
			resp, _ := get(t, s.url, "default", "cold-00001")
			codes <- resp.StatusCode
		})
	}
	waitFor(t, func() bool { return queued(s.Activator, "default/cold-00001") == 2 })

	resp, body := get(t, s.url, "default", "cold-00001")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(wire.HeaderRefused) != wire.RefusedQueueFull || !strings.Contains(body, "2 requests") {
		t.Fatalf("third request: %d %s=%q %q", resp.StatusCode, wire.HeaderRefused, resp.Header.Get(wire.HeaderRefused), body)
	}

	s.Update([]instances.Revision{{Name: "default/cold-00001", ContainerConcurrency: 1, Addrs: []string{backendAddr(t, hello)}}}, nil)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Fatalf("a queued request got %d once an instance was ready", c)
		}
	}
}

func TestQueueByteBoundIs503(t *testing.T) {
	s := serve(t, Options{QueueBytes: 4000})
	s.Update([]instances.Revision{{Name: "default/cold-00001"}}, nil)
	// A declared body bigger than the bound is refused without being read.
	req, _ := http.NewRequest(http.MethodPost, s.url, bytes.NewReader(make([]byte, 4000)))
	resp, body := do(t, req, "default", "cold-00001")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(wire.HeaderRefused) != wire.RefusedQueueBytesFull || !strings.Contains(body, "4000 bytes") {
		t.Fatalf("big request: %d %s=%q %q", resp.StatusCode, wire.HeaderRefused, resp.Header.Get(wire.HeaderRefused), body)
	}
}

func TestQueueWaitBoundIs503(t *testing.T) {
	s := serve(t, Options{QueueTimeout: time.Millisecond})
	s.Update([]instances.Revision{{Name: "default/cold-00001"}}, nil)
	resp, body := get(t, s.url, "default", "cold-00001")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(wire.HeaderRefused) != wire.RefusedQueueTimeout || !strings.Contains(body, "1ms") {
		t.Fatalf("got %d %s=%q %q", resp.StatusCode, wire.HeaderRefused, resp.Header.Get(wire.HeaderRefused), body)
	}
}

func TestRevisionTimeoutIs504(t *testing.T) {
	s := serve(t, Options{})
	// Queued past the revision's timeout.
	s.Update([]instances.Revision{{Name: "default/cold-00001", Timeout: time.Millisecond}}, nil)
	resp, body := get(t, s.url, "default", "cold-00001")
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(wire.HeaderRefused) != wire.RefusedRevisionTimeout {
		t.Fatalf("queued: got %d %s=%q %q", resp.StatusCode, wire.HeaderRefused, resp.Header.Get(wire.HeaderRefused), body)
	}
	// Forwarded, but the instance answers too late.
	slow := backendAddr(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	s.Update([]instances.Revision{{Name: "default/slow-00001", Timeout: time.Millisecond, Addrs: []string{slow}}}, nil)
	resp, body = get(t, s.url, "default", "slow-00001")
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("forwarded: got %d %q", resp.StatusCode, body)
	}
}

// deadAddr is an address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRetriesAnotherInstanceWhenTheConnectionIsRefused(t *testing.T) {
	s := serve(t, Options{})
	echo := backendAddr(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) }))
	// cc 1 picks the first available: the dead one first.
	s.Update([]instances.Revision{{Name: "default/r-00001", ContainerConcurrency: 1, Addrs: []string{deadAddr(t), echo}}}, nil)
	req, _ := http.NewRequest(http.MethodPost, s.url, strings.NewReader("the body survives"))
	resp, body := do(t, req, "default", "r-00001")
	if resp.StatusCode != http.StatusOK || body != "the body survives" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

func TestNoRetryOnceTheRequestWasSent(t *testing.T) {
	s := serve(t, Options{})
	var calls atomic.Int32
	drop := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.ReadAll(r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	s.Update([]instances.Revision{{Name: "default/r-00001", ContainerConcurrency: 1, Addrs: []string{backendAddr(t, drop), backendAddr(t, drop)}}}, nil)
	req, _ := http.NewRequest(http.MethodPost, s.url, strings.NewReader("once"))
	resp, body := do(t, req, "default", "r-00001")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("got %d %q, want 502", resp.StatusCode, body)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("instances saw the request %d times, want 1", n)
	}
}

func TestStreamsResponsesAsTheyComeAndCountsLoads(t *testing.T) {
	s := serve(t, Options{})
	release := make(chan struct{})
	stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second\n")
	})
	s.Update([]instances.Revision{{Name: "default/s-00001", Addrs: []string{backendAddr(t, stream)}}}, nil)
	req, _ := http.NewRequest(http.MethodGet, s.url, nil)
	req.Header.Set(wire.HeaderNamespace, "default")
	req.Header.Set(wire.HeaderRevision, "s-00001")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, len("first\n"))
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("first chunk before the instance finished: %q, %v", buf, err)
	}
	if l := s.TakeLoads(); len(l) != 1 || l[0].InProgress != 1 || l[0].Issued != 1 || l[0].Succeeded != 0 {
		t.Fatalf("loads mid-request = %+v, want one in progress, one issued", l)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second\n" {
		t.Fatalf("rest = %q", rest)
	}
	resp.Body.Close()
	waitFor(t, func() bool { return s.InProgress("default/s-00001") == 0 })
	// The request was held for part of this interval: its average rounds up to one.
	if l := s.TakeLoads(); len(l) != 1 || l[0].InProgress != 1 || l[0].Issued != 0 || l[0].Succeeded != 1 {
		t.Fatalf("loads after = %+v, want one succeeded and the request counted as held on average", l)
	}
	if l := s.TakeLoads(); len(l) != 0 {
		t.Fatalf("loads of a quiet interval = %+v, want none", l)
	}
}

func TestGRPCThroughH2C(t *testing.T) {
	s := serve(t, Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("hello", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	s.Update([]instances.Revision{{Name: "default/g-00001", Protocol: instances.H2C, Addrs: []string{ln.Addr().String()}}}, nil)

	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), wire.HeaderNamespace, "default", wire.HeaderRevision, "g-00001")
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client := healthpb.NewHealthClient(conn)

	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "hello"})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check: %v, %v", resp, err)
	}
	// A status in trailers only.
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("Check of an unknown service: %v, want NotFound", err)
	}
	// A server stream: each update arrives while the stream stays open.
	w, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch first: %v, %v", m, err)
	}
	hs.SetServingStatus("hello", healthpb.HealthCheckResponse_NOT_SERVING)
	if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch second: %v, %v", m, err)
	}
}

func TestShutdownDrainsQueuedRequests(t *testing.T) {
	s, cancel := startServing(t, Options{})
	defer cancel()
	a, addr, served := s.Activator, s.addr, s.done
	a.Update([]instances.Revision{{Name: "default/d-00001"}}, nil)

	got := make(chan int, 1)
	go func() {
		resp, _ := get(t, "http://"+addr, "default", "d-00001")
		got <- resp.StatusCode
	}()
	waitFor(t, func() bool { return queued(a, "default/d-00001") == 1 })

	shut := make(chan error, 1)
	go func() { shut <- a.Shutdown(context.Background()) }()
	// Draining: no new connections.
	waitFor(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request still queued", err)
	default:
	}
	a.Update([]instances.Revision{{Name: "default/d-00001", Addrs: []string{backendAddr(t, hello)}}}, nil)
	if code := <-got; code != http.StatusOK {
		t.Fatalf("queued request got %d while draining, want 200", code)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestDrainTimeoutBoundsShutdown(t *testing.T) {
	s, cancel := startServing(t, Options{DrainTimeout: time.Millisecond})
	defer cancel()
	a, addr, served := s.Activator, s.addr, s.done
	a.Update([]instances.Revision{{Name: "default/d-00001"}}, nil)
	failed := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr, nil)
		req.Header.Set(wire.HeaderNamespace, "default")
		req.Header.Set(wire.HeaderRevision, "d-00001")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			err = errors.New(resp.Status)
		}
		failed <- err
	}()
	waitFor(t, func() bool { return queued(a, "default/d-00001") == 1 })
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-failed; err == nil {
		t.Fatal("a request queued past the drain timeout got an answer")
	}
	<-served
}

func TestRemovedRevisionIsUnknown(t *testing.T) {
	s := serve(t, Options{UnknownRevisionWait: time.Millisecond})
	s.Update([]instances.Revision{{Name: "default/gone-00001", Addrs: []string{backendAddr(t, hello)}}}, nil)
	if resp, _ := get(t, s.url, "default", "gone-00001"); resp.StatusCode != http.StatusOK {
		t.Fatalf("before removal: %d", resp.StatusCode)
	}
	// The handler counts the request just after the client has its answer.
	waitFor(t, func() bool { return s.InProgress("default/gone-00001") == 0 })
	s.Update(nil, []string{"default/gone-00001"})
	if resp, body := get(t, s.url, "default", "gone-00001"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("after removal: %d %q, want 404", resp.StatusCode, body)
	}
	// Its last counts are still reported once, then it is forgotten.
	if l := s.TakeLoads(); len(l) != 1 || l[0].Succeeded != 1 {
		t.Fatalf("loads after removal = %+v, want the one success", l)
	}
	if l := s.TakeLoads(); len(l) != 0 {
		t.Fatalf("loads later = %+v, want none", l)
	}
}

// An HTTP/1.1 client reaches an h2c-only instance: the activator speaks each side's protocol.
func TestHTTP1ClientToAnH2CInstance(t *testing.T) {
	s := serve(t, Options{})
	var h2cOnly http.Protocols
	h2cOnly.SetUnencryptedHTTP2(true)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "HTTP/%d", r.ProtoMajor)
	}))
	backend.Config.Protocols = &h2cOnly
	backend.Start()
	defer backend.Close()
	s.Update([]instances.Revision{{Name: "default/h2-00001", Protocol: instances.H2C, Addrs: []string{backend.Listener.Addr().String()}}}, nil)
	resp, body := get(t, s.url, "default", "h2-00001")
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 || body != "HTTP/2" {
		t.Fatalf("got %s %d %q, want HTTP/1.1 200 from an instance seeing HTTP/2", resp.Proto, resp.StatusCode, body)
	}
}

func TestRetriesARefusedH2CInstance(t *testing.T) {
	s := serve(t, Options{})
	var h2cOnly http.Protocols
	h2cOnly.SetUnencryptedHTTP2(true)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) }))
	backend.Config.Protocols = &h2cOnly
	backend.Start()
	defer backend.Close()
	s.Update([]instances.Revision{{Name: "default/h2-00001", Protocol: instances.H2C, ContainerConcurrency: 1, Addrs: []string{deadAddr(t), backend.Listener.Addr().String()}}}, nil)
	req, _ := http.NewRequest(http.MethodPost, s.url, strings.NewReader("over h2c"))
	if resp, body := do(t, req, "default", "h2-00001"); resp.StatusCode != http.StatusOK || body != "over h2c" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

// An HTTP/1.1 client streams a large body through ReverseProxy (here: to an h2c instance) to an
// instance that answers while it reads: the activator must keep reading the client's body while
// it writes the answer, or Go's HTTP/1 server cuts the body short.
func TestLargeBodyEchoedThroughReverseProxy(t *testing.T) {
	s := serve(t, Options{})
	var h2cOnly http.Protocols
	h2cOnly.SetUnencryptedHTTP2(true)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Answer first, read later: the body (larger than HTTP/2's flow-control windows) is
		// then still on its way when the answer reaches the activator.
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		time.Sleep(50 * time.Millisecond)
		io.Copy(w, r.Body)
	}))
	backend.Config.Protocols = &h2cOnly
	backend.Start()
	defer backend.Close()
	s.Update([]instances.Revision{{Name: "default/e-00001", Protocol: instances.H2C, Addrs: []string{backend.Listener.Addr().String()}}}, nil)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<18)                                  // 4 MiB
	req, _ := http.NewRequest(http.MethodPost, s.url, io.MultiReader(bytes.NewReader(payload))) // chunked: no length
	resp, body := do(t, req, "default", "e-00001")
	if resp.StatusCode != http.StatusOK || body != string(payload) {
		t.Fatalf("got %d and %d bytes back, want 200 and the %d sent", resp.StatusCode, len(body), len(payload))
	}
}
