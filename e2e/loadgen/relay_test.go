package main

import (
	"bufio"
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

	// The requests go one after another on one connection of the test's own: an http.Client
	// may drop a connection and dial again on a loaded machine (see goproxy_test.go), and then
	// the relay would rightly dial its upstream again too.
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.SetDeadline(time.Now().Add(30 * time.Second)) // only stops a hang
	replies := bufio.NewReader(client)
	for i := range 5 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
		req.Header.Set("X-Who", "relay")
		if err := req.Write(client); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp, err := http.ReadResponse(replies, req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close || string(body) != "Hello relay!" {
			t.Fatalf("request %d: %s (close %v) %q, want 200 \"Hello relay!\" on a kept connection", i, resp.Status, resp.Close, body)
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
	case <-time.After(30 * time.Second): // only stops a hang
		t.Fatal("serveRelay did not return within 30s of its stop")
	}
	held.SetReadDeadline(time.Now().Add(30 * time.Second)) // only stops a hang
	if _, err := held.Read(make([]byte, 1)); err == nil {
		t.Error("a held connection is still open after the stop")
	}
}
