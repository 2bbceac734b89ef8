package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The relay passes requests and answers through untouched, several on one kept connection,
// and when stopped closes its open connections and returns.
func TestRelayForwardsAndStops(t *testing.T) {
	backend, backendConns := greetingBackend(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serveRelay(ctx, ln, strings.TrimPrefix(backend.URL, "http://")) }()

	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for i := range 5 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
		req.Header.Set("X-Who", "relay")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "Hello relay!" {
			t.Fatalf("request %d: body %q", i, body)
		}
	}
	if n := backendConns.Load(); n != 1 {
		t.Errorf("5 requests on one client connection opened %d backend connections, want 1", n)
	}

	// A connection held open must not keep the relay from stopping.
	held, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serveRelay after stop: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serveRelay did not return within 5s of its stop")
	}
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil {
		t.Error("a held connection is still open after the stop")
	}
}
