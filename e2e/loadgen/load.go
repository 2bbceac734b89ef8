package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Target is one endpoint under load: a name for the report, a URL and the headers every request
// carries (the activator's revision headers).
type Target struct {
	Name   string
	URL    string
	Header http.Header
	// Proxy are the processes in the target's path between the load generator and the backend,
	// whose CPU time per request is reported.
	Proxy []int
}

// newTransport is an HTTP/1.1 keep-alive transport holding up to conc connections to one target,
// so that after the warm-up every request reuses a connection. No proxy from the environment: the
// point is to measure the path named, nothing in front of it.
func newTransport(conc int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conc,
		MaxIdleConnsPerHost: conc,
		MaxConnsPerHost:     conc,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// load is one target's measurement state: its client lives across warm-up and rounds so the
// connections do too.
type load struct {
	target Target
	client *http.Client
	conc   int
}

func newLoad(t Target, conc int, timeout time.Duration) *load {
	return &load{target: t, conc: conc, client: &http.Client{Transport: newTransport(conc), Timeout: timeout}}
}

func (l *load) close() { l.client.CloseIdleConnections() }

// check sends one request and checks the reply is a 200 whose body contains expect.
func (l *load) check(ctx context.Context, expect string) error {
	req, err := l.request(ctx)
	if err != nil {
		return err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", l.target.Name, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("%s: read reply: %w", l.target.Name, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), expect) {
		return fmt.Errorf("%s: GET %s: %s %q, want 200 with %q", l.target.Name, l.target.URL, resp.Status, body, expect)
	}
	return nil
}

func (l *load) request(ctx context.Context) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.target.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.target.Name, err)
	}
	for k, vs := range l.target.Header {
		req.Header[k] = vs
	}
	return req, nil
}

// run keeps conc requests in flight for d, or, if n is above zero, until n requests have been
// sent (or until ctx is done), and returns every successful request's latency, the number of
// failures and the first failure. A failure is a transport error or a status other than 200.
func (l *load) run(ctx context.Context, d time.Duration, n int) (lat []time.Duration, errs int, firstErr error, elapsed time.Duration) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type worker struct {
		lat      []time.Duration
		errs     int
		firstErr error
	}
	workers := make([]worker, l.conc)
	start := time.Now()
	deadline := start.Add(d)
	var sent atomic.Int64 // requests begun, when n bounds the run
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.lat = make([]time.Duration, 0, 4096)
		wg.Go(func() {
			req, err := l.request(ctx)
			if err != nil {
				w.errs, w.firstErr = 1, err
				return
			}
			for ctx.Err() == nil {
				if n > 0 && sent.Add(1) > int64(n) {
					return
				}
				t0 := time.Now()
				if n <= 0 && !t0.Before(deadline) {
					return
				}
				err := l.once(req)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					w.errs++
					if w.firstErr == nil {
						w.firstErr = err
					}
					continue
				}
				w.lat = append(w.lat, time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed = time.Since(start)
	for _, w := range workers {
		lat = append(lat, w.lat...)
		errs += w.errs
		if firstErr == nil {
			firstErr = w.firstErr
		}
	}
	return lat, errs, firstErr, elapsed
}

// once sends req (reused by one worker, one request at a time) and reads the whole reply so its
// connection goes back to the pool.
func (l *load) once(req *http.Request) error {
	resp, err := l.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", l.target.Name, err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("%s: read reply: %w", l.target.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", l.target.Name, resp.Status)
	}
	return nil
}
