package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
)

// The floor proxy forwards requests with their headers and keeps its upstream connection: a
// proxy that dialed per request would make the floor look worse than Go's real one. (net/http
// drops a connection instead of reusing it when its write goroutine has not reported the request
// written within 50ms of the reply, which a loaded machine can make happen now and then; so the
// test asks that nearly every request reuse a connection, not that one connection serve all.)
func TestGoProxyForwardsOnAKeptConnection(t *testing.T) {
	backend, upstreamConns := greetingBackend(t)
	u, err := url.Parse(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(newGoProxy(u, 4))
	defer front.Close()

	const requests = 100
	for i := range requests {
		req, _ := http.NewRequest(http.MethodGet, front.URL+"/", nil)
		req.Header.Set("X-Who", "bench")
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "Hello bench!" {
			t.Fatalf("request %d: %s %q, want 200 \"Hello bench!\"", i, resp.Status, body)
		}
	}
	if n := upstreamConns.Load(); n < 1 || n > requests/10 {
		t.Errorf("%d sequential requests opened %d upstream connections, want 1 (a few more on a loaded machine)", requests, n)
	}
}

// greetingBackend answers "Hello $X-Who!" and counts the connections it accepts. It is closed
// when the test ends.
func greetingBackend(t *testing.T) (*httptest.Server, *atomic.Int64) {
	conns := new(atomic.Int64)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "Hello "+r.Header.Get("X-Who")+"!")
	}))
	backend.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	backend.Start()
	t.Cleanup(backend.Close)
	return backend, conns
}
