package activator

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/activator/instances"
	"github.com/sluice-dev/sluice/wire"
)

func TestFastPathFits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		major  int
		method string
		header http.Header
		want   bool
	}{
		{"plain GET", 1, "GET", nil, true},
		{"POST with keep-alive", 1, "POST", http.Header{"Connection": {"keep-alive"}}, true},
		{"HTTP/2 client", 2, "GET", nil, false},
		{"websocket", 1, "GET", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, false},
		{"upgrade token among others", 1, "GET", http.Header{"Connection": {"keep-alive, upgrade"}}, false},
		{"Upgrade without Connection", 1, "GET", http.Header{"Upgrade": {"h2c"}}, false},
		{"Expect", 1, "PUT", http.Header{"Expect": {"100-continue"}}, false},
		{"CONNECT", 1, "CONNECT", nil, false},
	} {
		r := httptest.NewRequest(tc.method, "/", nil)
		r.ProtoMajor = tc.major
		if tc.header != nil {
			r.Header = tc.header
		}
		if got := fastPathFits(r); got != tc.want {
			t.Errorf("%s: fastPathFits = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// tracked is a backend that counts the connections the activator opens to it.
type tracked struct {
	addr   string
	srv    *httptest.Server
	opened atomic.Int32
	open   atomic.Int32
}

func trackedBackend(t *testing.T, h http.Handler) *tracked {
	t.Helper()
	b := &tracked{}
	b.srv = httptest.NewUnstartedServer(h)
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			b.opened.Add(1)
			b.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			b.open.Add(-1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	b.addr = b.srv.Listener.Addr().String()
	return b
}

// fakeClock is the pool's clock in tests: it moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fastServing is an activator whose pool runs on a fake clock and never sweeps on its own.
func fastServing(t *testing.T) (*serving, *fakeClock) {
	t.Helper()
	s := serve(t, Options{})
	clock := &fakeClock{now: time.Unix(1000, 0)}
	s.proxy.conns.now = clock.Now
	s.proxy.conns.sweepEvery = time.Hour
	t.Cleanup(func() {
		s.proxy.conns.closeIdle()
		if n := s.proxy.conns.open.Load(); n != 0 {
			t.Errorf("%d upstream connections still open after closing the idle ones: the pool leaks", n)
		}
	})
	return s, clock
}

func revise(s *serving, name string, addrs ...string) {
	s.Update([]instances.Revision{{Name: "default/" + name, Addrs: addrs}}, nil)
}

func TestFastPathReusesOneConnection(t *testing.T) {
	s, _ := fastServing(t)
	b := trackedBackend(t, hello)
	revise(s, "k-00001", b.addr)
	for i := range 20 {
		if resp, body := get(t, s.url, "default", "k-00001"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "hello from") {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := b.opened.Load(); n != 1 {
		t.Fatalf("20 sequential requests opened %d connections to the instance, want 1", n)
	}
	if n := s.proxy.conns.idleCount(b.addr); n != 1 {
		t.Fatalf("idle connections = %d, want 1", n)
	}
}

// Requests the fast path does not take go through ReverseProxy, whose connections are not the
// pool's.
func TestFallbackDoesNotUseThePool(t *testing.T) {
	s, _ := fastServing(t)
	b := trackedBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) }))
	revise(s, "f-00001", b.addr)
	req, _ := http.NewRequest(http.MethodPut, s.url, strings.NewReader("expecting"))
	req.Header.Set("Expect", "100-continue")
	if resp, body := do(t, req, "default", "f-00001"); resp.StatusCode != http.StatusOK || body != "expecting" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if n := s.proxy.conns.open.Load(); n != 0 {
		t.Fatalf("an Expect request left %d pool connections, want it on ReverseProxy", n)
	}
	get(t, s.url, "default", "f-00001")
	if n := s.proxy.conns.open.Load(); n != 1 {
		t.Fatalf("a plain GET left %d pool connections, want the fast path's one", n)
	}
}

func TestFastPathClosesWhenTheInstanceSaysClose(t *testing.T) {
	s, _ := fastServing(t)
	b := trackedBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	}))
	revise(s, "c-00001", b.addr)
	for range 3 {
		resp, body := get(t, s.url, "default", "c-00001")
		if resp.StatusCode != http.StatusOK || body != "bye" || resp.Close {
			t.Fatalf("got %d %q close=%v: the instance's Connection: close must not reach the client", resp.StatusCode, body, resp.Close)
		}
	}
	if n := b.opened.Load(); n != 3 {
		t.Fatalf("opened %d connections, want one per request", n)
	}
	if n := s.proxy.conns.open.Load(); n != 0 {
		t.Fatalf("%d connections kept after Connection: close", n)
	}
}

func TestFastPathHeaders(t *testing.T) {
	s, _ := fastServing(t)
	seen := make(chan http.Header, 1)
	hosts := make(chan string, 1)
	b := trackedBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		hosts <- r.Host
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "no")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End", "yes")
		w.WriteHeader(http.StatusTeapot)
	}))
	revise(s, "h-00001", b.addr)
	req, _ := http.NewRequest(http.MethodGet, s.url+"/p?q=1", nil)
	req.Host = "hello.default.example.com"
	req.Header.Set("Connection", "X-Custom")
	req.Header.Set("X-Custom", "hop")
	req.Header.Set("Proxy-Authorization", "secret")
	req.Header.Set("Te", "trailers, deflate")
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-End", "kept")
	resp, _ := do(t, req, "default", "h-00001")
	if resp.StatusCode != http.StatusTeapot || resp.Header.Get("X-End") != "yes" {
		t.Fatalf("got %d %v", resp.StatusCode, resp.Header)
	}
	if resp.Header.Get("X-Hop") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("response hop-by-hop headers reached the client: %v", resp.Header)
	}
	h := <-seen
	for _, k := range []string{"X-Custom", "Proxy-Authorization", "Connection"} {
		if v := h.Get(k); v != "" {
			t.Errorf("instance got hop-by-hop %s: %q", k, v)
		}
	}
	if got := h.Get("Te"); got != "trailers" {
		t.Errorf("Te = %q, want trailers", got)
	}
	if got := h.Get("X-Forwarded-For"); got != "10.0.0.1, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the client appended", got)
	}
	if h.Get("X-Forwarded-Proto") != "https" || h.Get("X-End") != "kept" || h.Get(wire.HeaderRevision) != "h-00001" {
		t.Errorf("end-to-end headers lost: %v", h)
	}
	if h.Get("User-Agent") != "Go-http-client/1.1" {
		t.Errorf("User-Agent = %q, want the client's", h.Get("User-Agent"))
	}
	if host := <-hosts; host != "hello.default.example.com" {
		t.Errorf("Host = %q, want the client's", host)
	}
}

// A chunked request body with a trailer reaches the instance as one, and the instance's chunked
// response with trailers reaches the client.
func TestFastPathChunkedBodiesAndTrailers(t *testing.T) {
	s, _ := fastServing(t)
	b := trackedBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != -1 || len(r.TransferEncoding) == 0 {
			http.Error(w, fmt.Sprintf("want a chunked body, got length %d", r.ContentLength), 400)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
		w.(http.Flusher).Flush()
		w.Write([]byte("|" + r.Trailer.Get("X-Client")))
		w.Header().Set("X-Sum", fmt.Sprint(len(body)))
		w.Header().Set(http.TrailerPrefix+"X-Late", "undeclared")
	}))
	revise(s, "t-00001", b.addr)
	pr, pw := io.Pipe()
	go func() {
		for _, part := range []string{"one ", "two ", "three"} {
			pw.Write([]byte(part))
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, s.url, pr)
	req.Trailer = http.Header{"X-Client": {"trailing"}}
	req.Header.Set(wire.HeaderNamespace, "default")
	req.Header.Set(wire.HeaderRevision, "t-00001")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != "one two three|trailing" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if resp.ContentLength != -1 {
		t.Errorf("response length %d, want chunked", resp.ContentLength)
	}
	if got := resp.Trailer.Get("X-Sum"); got != "13" {
		t.Errorf("trailer X-Sum = %q, want 13 (trailers %v)", got, resp.Trailer)
	}
	if got := resp.Trailer.Get("X-Late"); got != "undeclared" {
		t.Errorf("undeclared trailer X-Late = %q (trailers %v)", got, resp.Trailer)
	}
	// The handler returns the connection just after the client has its answer.
	waitFor(t, func() bool { return s.InProgress("default/t-00001") == 0 })
	if n := s.proxy.conns.idleCount(b.addr); n != 1 {
		t.Errorf("idle connections after a chunked exchange = %d, want it kept", n)
	}
}

func TestFastPathStreamsLargeBodies(t *testing.T) {
	s, _ := fastServing(t)
	// An echo answers while it reads: the fast path must read while it writes. (Go's HTTP/1
	// server cuts such a body short unless told the handler is full duplex.)
	b := trackedBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		io.Copy(w, r.Body)
	}))
	revise(s, "l-00001", b.addr)
	payload := make([]byte, 8<<20+123)
	for i := range payload {
		payload[i] = byte(rand.Uint32())
	}
	for _, chunked := range []bool{false, true} {
		var body io.Reader = bytes.NewReader(payload)
		if chunked {
			body = io.MultiReader(body) // hides the length
		}
		req, _ := http.NewRequest(http.MethodPost, s.url, body)
		resp, got := do(t, req, "default", "l-00001")
		if resp.StatusCode != http.StatusOK || sha256.Sum256([]byte(got)) != sha256.Sum256(payload) {
			t.Fatalf("chunked=%v: got %d, %d bytes, want the %d sent back", chunked, resp.StatusCode, len(got), len(payload))
		}
	}
}

// A client that goes away mid-response takes the instance's connection with it.
func TestFastPathClientGoneClosesTheUpstreamConnection(t *testing.T) {
	s, _ := fastServing(t)
	canceled := make(chan struct{})
	b := trackedBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the instance's view: its connection went away
		close(canceled)
	}))
	revise(s, "g-00001", b.addr)
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n%s: default\r\n%s: g-00001\r\n\r\n", wire.HeaderNamespace, wire.HeaderRevision)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	conn.Close()
	select {
	case <-canceled:
	case <-time.After(30 * time.Second):
		t.Fatal("the instance's connection stayed open after the client left")
	}
	waitFor(t, func() bool { return s.proxy.conns.open.Load() == 0 && s.InProgress("default/g-00001") == 0 })
}

func TestFastPathRevisionTimeoutClosesTheConnection(t *testing.T) {
	s, _ := fastServing(t)
	b := trackedBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	s.Update([]instances.Revision{{Name: "default/slow-00001", Timeout: time.Millisecond, Addrs: []string{b.addr}}}, nil)
	resp, body := get(t, s.url, "default", "slow-00001")
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(wire.HeaderRefused) != wire.RefusedRevisionTimeout {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	waitFor(t, func() bool { return s.proxy.conns.open.Load() == 0 && b.open.Load() == 0 })
}

func TestIdleConnectionsOfARemovedInstanceAreClosed(t *testing.T) {
	s, _ := fastServing(t)
	stays, leaves := trackedBackend(t, hello), trackedBackend(t, hello)
	s.Update([]instances.Revision{{Name: "default/a-00001", Addrs: []string{stays.addr}}, {Name: "default/b-00001", Addrs: []string{leaves.addr}}}, nil)
	get(t, s.url, "default", "a-00001")
	get(t, s.url, "default", "b-00001")
	s.proxy.conns.sweepIdle()
	if s.proxy.conns.idleCount(stays.addr) != 1 || s.proxy.conns.idleCount(leaves.addr) != 1 {
		t.Fatal("a sweep closed connections of ready instances")
	}
	s.Update([]instances.Revision{{Name: "default/b-00001"}}, nil) // b's instance is gone
	s.proxy.conns.sweepIdle()
	if n := s.proxy.conns.idleCount(leaves.addr); n != 0 {
		t.Fatalf("%d idle connections to a removed instance after a sweep", n)
	}
	waitFor(t, func() bool { return leaves.open.Load() == 0 })
	if s.proxy.conns.idleCount(stays.addr) != 1 || stays.open.Load() != 1 {
		t.Fatal("the instance that stays lost its connection")
	}
	// A removed revision takes its instances' connections too.
	s.Update(nil, []string{"default/a-00001"})
	s.proxy.conns.sweepIdle()
	waitFor(t, func() bool { return stays.open.Load() == 0 })
}

func TestIdleTimeoutClosesConnections(t *testing.T) {
	s, clock := fastServing(t)
	b := trackedBackend(t, hello)
	revise(s, "i-00001", b.addr)
	get(t, s.url, "default", "i-00001")
	clock.Advance(s.proxy.conns.idleTimeout)
	s.proxy.conns.sweepIdle()
	if s.proxy.conns.idleCount(b.addr) != 1 {
		t.Fatal("closed a connection idle for exactly the timeout")
	}
	clock.Advance(time.Nanosecond)
	s.proxy.conns.sweepIdle()
	if s.proxy.conns.idleCount(b.addr) != 0 {
		t.Fatal("kept a connection idle past the timeout")
	}
	waitFor(t, func() bool { return b.open.Load() == 0 })
}

func TestIdleConnectionsPerInstanceAreBounded(t *testing.T) {
	s, _ := fastServing(t)
	s.proxy.conns.maxIdlePerInstance = 2
	var arrived sync.WaitGroup
	arrived.Add(5)
	release := make(chan struct{})
	b := trackedBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		<-release
	}))
	revise(s, "m-00001", b.addr)
	var done sync.WaitGroup
	for range 5 {
		done.Go(func() { get(t, s.url, "default", "m-00001") })
	}
	arrived.Wait()
	if n := s.proxy.conns.open.Load(); n != 5 {
		t.Fatalf("%d connections for 5 concurrent requests", n)
	}
	close(release)
	done.Wait()
	if idle, open := s.proxy.conns.idleCount(b.addr), s.proxy.conns.open.Load(); idle != 2 || open != 2 {
		t.Fatalf("idle %d, open %d after the burst, want 2 and 2", idle, open)
	}
}

// A pooled connection the instance closed while it was idle is replaced, whether the peek
// finds it closed or (taken too soon for a peek) the request fails on it.
func TestFastPathResendsOnAConnectionClosedWhileIdle(t *testing.T) {
	for _, tc := range []struct {
		name   string
		idle   time.Duration
		method string
	}{
		{"found by the peek", time.Second, http.MethodPost},
		{"found by the failed request", 0, http.MethodGet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, clock := fastServing(t)
			b := trackedBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, r.Method)
			}))
			revise(s, "r-00001", b.addr)
			get(t, s.url, "default", "r-00001")
			b.srv.CloseClientConnections()
			waitFor(t, func() bool { return b.open.Load() == 0 })
			clock.Advance(tc.idle)
			req, _ := http.NewRequest(tc.method, s.url, nil)
			if resp, body := do(t, req, "default", "r-00001"); resp.StatusCode != http.StatusOK || body != tc.method {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			if n := b.opened.Load(); n != 2 {
				t.Fatalf("opened %d connections, want 2", n)
			}
		})
	}
}

// A request that may have been processed is not sent twice, even on a pooled connection.
func TestFastPathDoesNotResendAPOSTThatWasWritten(t *testing.T) {
	s, _ := fastServing(t)
	var calls atomic.Int32
	b := trackedBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			return // the first request leaves a pooled connection
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	revise(s, "p-00001", b.addr)
	get(t, s.url, "default", "p-00001")
	req, _ := http.NewRequest(http.MethodPost, s.url, nil)
	if resp, body := do(t, req, "default", "p-00001"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("got %d %q, want 502", resp.StatusCode, body)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("the instance saw %d requests, want 2 (no resend)", n)
	}
}

// Every way a fast-path exchange can end leaves no connection behind once the idle ones are
// closed (fastServing's cleanup checks the pool's count; this checks the instances' side).
func TestFastPathDoesNotLeakConnections(t *testing.T) {
	s, _ := fastServing(t)
	var calls atomic.Int32
	b := trackedBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/close":
			w.Header().Set("Connection", "close")
		case "/drop":
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
			return
		case "/half":
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "half")
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		calls.Add(1)
		io.Copy(w, r.Body)
	}))
	revise(s, "x-00001", b.addr)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			path := []string{"/", "/close", "/drop", "/half", "/"}[i%5]
			req, _ := http.NewRequest(http.MethodPost, s.url+path, strings.NewReader("body"))
			req.Header.Set(wire.HeaderNamespace, "default")
			req.Header.Set(wire.HeaderRevision, "x-00001")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if calls.Load() == 0 {
		t.Fatal("no request got through")
	}
	waitFor(t, func() bool { return s.InProgress("default/x-00001") == 0 })
	if idle := s.proxy.conns.nIdleLocked(); int64(idle) != s.proxy.conns.open.Load() {
		t.Fatalf("%d connections open but %d idle: some are owned by nobody", s.proxy.conns.open.Load(), idle)
	}
	s.proxy.conns.closeIdle()
	waitFor(t, func() bool { return b.open.Load() == 0 })
}

func (p *connPool) nIdleLocked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nIdle
}
