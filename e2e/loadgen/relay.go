package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// relay copies bytes both ways between each client connection and a connection of its own to
// upstream, reading no HTTP at all (Go's io.Copy between TCP connections uses splice(2) on
// Linux). No HTTP proxy can do less per request: it is the benchmark's ceiling, the throughput
// any proxy hop can keep on this machine when the load generator and the backend share its
// cores.
type relay struct {
	upstream string
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

// serveRelay relays connections accepted on ln until ctx is done, then closes every connection
// and returns once all of them are closed.
func serveRelay(ctx context.Context, ln net.Listener, upstream string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &relay{upstream: upstream, conns: map[net.Conn]struct{}{}}
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		r.mu.Lock()
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
	})
	defer stop()
	var err error
	for {
		var c net.Conn
		if c, err = ln.Accept(); err != nil {
			break
		}
		r.wg.Go(func() { r.serve(ctx, c) })
	}
	stopped := ctx.Err() != nil
	cancel() // an accept that failed on its own ends the relay too: close what is open
	r.wg.Wait()
	if stopped {
		return nil
	}
	return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
}

// track adds c to the connections closed at the end, or closes it if the end has come.
func (r *relay) track(ctx context.Context, c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Err() != nil {
		c.Close()
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) forget(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

func (r *relay) serve(ctx context.Context, client net.Conn) {
	if !r.track(ctx, client) {
		return
	}
	defer r.forget(client)
	up, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", r.upstream)
	if err != nil {
		return
	}
	if !r.track(ctx, up) {
		return
	}
	defer r.forget(up)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(up, client)
		// The client is done sending: pass the half-close on, and let the answer finish.
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(client, up)
	client.Close()
	<-done
}

func relayCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	upstream := fs.String("upstream", "", "HOST:PORT of the backend")
	if err := parse(fs, args); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(*upstream); err != nil {
		fmt.Fprintf(os.Stderr, "-upstream %q: want HOST:PORT\n", *upstream)
		return errUsage
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	return serveRelay(ctx, ln, *upstream)
}
