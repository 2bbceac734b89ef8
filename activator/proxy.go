package activator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-dev/sluice/activator/instances"
	"github.com/sluice-dev/sluice/activator/routes"
	"github.com/sluice-dev/sluice/wire"
)

// ServeHTTP forwards a request to an instance of its revision, queueing it until one has
// capacity.
func (a *Activator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key, found := a.revisionOf(w, r)
	if !found {
		return
	}
	rev := a.lookup(r.Context(), key)
	if rev == nil {
		http.Error(w, "activator: unknown revision "+key, http.StatusNotFound)
		return
	}
	rev.inProgress.Add(1)
	rev.average.add(1, time.Now())
	defer func() {
		rev.inProgress.Add(-1)
		rev.average.add(-1, time.Now())
	}()
	rev.issued.Add(1)
	ok := false
	// A deferred count also covers a response aborted mid-stream (http.ErrAbortHandler panics).
	defer func() {
		if ok {
			rev.succeeded.Add(1)
		} else {
			rev.failed.Add(1)
		}
	}()

	spec, _, ready := rev.snapshot()
	if ready == 0 && a.opts.Poke != nil {
		a.opts.Poke(key)
	}
	ctx := r.Context()
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.Timeout)
		defer cancel()
	}
	size := requestSize(r)
	var exclude []string
	for n := 1; ; n++ {
		b, err := rev.acquire(ctx, size, exclude, a.lim)
		if err != nil {
			a.refuse(w, r, key, spec, err)
			return
		}
		at := &attempt{revision: key, timeout: spec.Timeout, addr: b.addr, mayRetry: n < a.opts.MaxAttempts}
		a.forward(ctx, w, r, spec.Protocol, at, func() { rev.release(b) })
		if !at.retry {
			ok = at.status != 0 && at.status < 500
			return
		}
		a.log.Debug("activator: instance refused the connection, trying another", "revision", key, "addr", b.addr, "err", at.err)
		exclude = append(exclude, b.addr)
	}
}

// revisionOf is the revision ("namespace/revision") a request is for: the one the gateway's
// headers name, or else one its host's route leads to. When there is none it answers the
// request itself and ok is false.
func (a *Activator) revisionOf(w http.ResponseWriter, r *http.Request) (key string, ok bool) {
	if name := r.Header.Get(wire.HeaderRevision); name != "" {
		ns := r.Header.Get(wire.HeaderNamespace)
		if ns == "" {
			http.Error(w, "activator: missing header "+wire.HeaderNamespace, http.StatusBadRequest)
			return "", false
		}
		return ns + "/" + name, true
	}
	host := hostOf(r.Host)
	if host == "" {
		http.Error(w, "activator: no "+wire.HeaderRevision+" header and no host to route by", http.StatusBadRequest)
		return "", false
	}
	h := a.hosts.get(r.Context(), host, a.opts.UnknownRevisionWait)
	if h == nil {
		http.Error(w, fmt.Sprintf("activator: no %s header and no route for host %q", wire.HeaderRevision, host), http.StatusNotFound)
		return "", false
	}
	tag := r.Header.Get(wire.HeaderTag)
	route, ok := h.Match(tag)
	if !ok {
		http.Error(w, fmt.Sprintf("activator: no route of host %q for %s %q", host, wire.HeaderTag, tag), http.StatusNotFound)
		return "", false
	}
	key, ok = routes.Pick(route.Targets, a.standing, rand.Uint64())
	if !ok {
		http.Error(w, fmt.Sprintf("activator: the route of host %q sends no traffic anywhere", host), http.StatusNotFound)
		return "", false
	}
	return key, true
}

// forward sends one attempt of r to at.addr; release runs when the attempt is over, even if the
// response copy aborts.
func (a *Activator) forward(ctx context.Context, w http.ResponseWriter, r *http.Request, proto instances.Protocol, at *attempt, release func()) {
	defer release()
	if proto != instances.H2C && a.proxy.fastHTTP1 && fastPathFits(r) {
		a.proxy.forwardHTTP1(ctx, w, r, at)
		return
	}
	out := r.WithContext(context.WithValue(ctx, attemptKey{}, at))
	if r.Body != nil && r.Body != http.NoBody {
		// The transport closes the body it is given, even when it could not connect; the real
		// body must survive that for a retry, and the server closes it.
		out.Body = &attemptBody{rc: r.Body, at: at}
		if r.ProtoMajor == 1 {
			// The transport may still be sending the body when the instance's answer is
			// written back; without this Go's HTTP/1 server would drain the body itself first.
			_ = http.NewResponseController(w).EnableFullDuplex()
		}
	}
	a.proxy.forProtocol(proto).ServeHTTP(w, out)
}

// refuse answers a request that got no instance.
func (a *Activator) refuse(w http.ResponseWriter, r *http.Request, key string, spec instances.Revision, err error) {
	var msg string
	status := http.StatusServiceUnavailable
	switch {
	case errors.Is(err, errQueueFull):
		msg = fmt.Sprintf("activator: queue of %s is full (%d requests)", key, a.lim.count)
	case errors.Is(err, errQueueBytesFull):
		msg = fmt.Sprintf("activator: queue of %s is full (%d bytes of headers and declared bodies)", key, a.lim.bytes)
	case errors.Is(err, errQueueTimeout):
		msg = fmt.Sprintf("activator: no instance of %s was free within %s", key, a.lim.wait)
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		revisionTimedOut(w, key, spec.Timeout)
		return
	default:
		return // the client went away: nobody to answer
	}
	w.Header().Set(wire.HeaderRefused, err.Error())
	http.Error(w, msg, status)
}

var errRevisionTimeout = errors.New(wire.RefusedRevisionTimeout)

// revisionTimedOut answers a request that outlived its revision's timeoutSeconds, whether it
// was still queued or already at an instance.
func revisionTimedOut(w http.ResponseWriter, key string, timeout time.Duration) {
	w.Header().Set(wire.HeaderRefused, errRevisionTimeout.Error())
	http.Error(w, fmt.Sprintf("activator: timeout of %s (%s) exceeded", key, timeout), http.StatusGatewayTimeout)
}

// requestSize is what a queued request counts against the byte bound: its request line and
// headers, and the body it declares. A chunked body counts nothing: it is not read while queued.
func requestSize(r *http.Request) int64 {
	n := int64(len(r.Method) + len(r.RequestURI) + len(r.Host) + len(r.Proto) + 4)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += int64(len(k) + len(v) + 4)
		}
	}
	if r.ContentLength > 0 {
		n += r.ContentLength
	}
	return n
}

// attempt is one try of a request on one instance, shared with the reverse proxy's hooks.
type attempt struct {
	revision string        // "namespace/name"
	timeout  time.Duration // the revision's timeoutSeconds
	addr     string
	mayRetry bool
	bodyRead bool
	status   int   // the instance's response status; 0 if none
	err      error // why the attempt failed
	retry    bool  // the instance could not be reached and nothing was sent: try another
}

type attemptKey struct{}

// attemptBody passes a request body through, remembering whether any was sent and ignoring Close.
type attemptBody struct {
	rc io.ReadCloser
	at *attempt
}

func (b *attemptBody) Read(p []byte) (int, error) {
	b.at.bodyRead = true
	return b.rc.Read(p)
}

func (b *attemptBody) Close() error { return nil }

// proxy holds one reverse proxy per upstream protocol; their transports keep connections to
// instances across requests.
type proxy struct {
	http1, h2c *httputil.ReverseProxy
	log        *slog.Logger

	// fastHTTP1 sends what it can to HTTP/1.1 instances on pooled connections of conns,
	// without ReverseProxy (fastpath.go). Off only to compare the two in benchmarks.
	fastHTTP1 bool
	conns     *connPool
	bufs      *bufferPool
}

func newProxy(log *slog.Logger) *proxy {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	p := &proxy{log: log, fastHTTP1: true, conns: newConnPool(dialer.DialContext)}
	h1 := &http.Transport{
		DialContext:         dialer.DialContext,
		MaxIdleConns:        10000,
		MaxIdleConnsPerHost: 1000,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	var h2cOnly http.Protocols
	h2cOnly.SetUnencryptedHTTP2(true)
	h2 := &http.Transport{
		DialContext:        dialer.DialContext,
		IdleConnTimeout:    90 * time.Second,
		DisableCompression: true,
		Protocols:          &h2cOnly,
	}
	pool := &bufferPool{}
	p.bufs = pool
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	for _, rp := range []**httputil.ReverseProxy{&p.http1, &p.h2c} {
		*rp = &httputil.ReverseProxy{
			Rewrite: rewrite,
			// Streaming responses (no Content-Length, or text/event-stream: gRPC, SSE, chunked)
			// are flushed on every write by ReverseProxy itself; the rest go out when the
			// server's buffer fills or the response ends, saving a writer and a flush per write.
			FlushInterval:  0,
			BufferPool:     pool,
			ErrorLog:       errLog,
			ModifyResponse: recordStatus,
			ErrorHandler:   p.handleError,
		}
	}
	p.http1.Transport = h1
	p.h2c.Transport = h2
	return p
}

func (p *proxy) forProtocol(proto instances.Protocol) *httputil.ReverseProxy {
	if proto == instances.H2C {
		return p.h2c
	}
	return p.http1
}

// rewrite points the request at the attempt's instance, keeping the gateway's Host and
// X-Forwarded-* headers (Rewrite would drop them) and adding the gateway to X-Forwarded-For.
func rewrite(pr *httputil.ProxyRequest) {
	at := pr.In.Context().Value(attemptKey{}).(*attempt)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = at.addr
	pr.Out.Host = pr.In.Host
	for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"} {
		if v, ok := pr.In.Header[h]; ok {
			pr.Out.Header[h] = v
		}
	}
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		if prior := pr.In.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		pr.Out.Header.Set("X-Forwarded-For", ip)
	}
}

func recordStatus(resp *http.Response) error {
	resp.Request.Context().Value(attemptKey{}).(*attempt).status = resp.StatusCode
	return nil
}

// handleError answers a failed attempt, unless the instance refused the connection before
// anything was sent and another may be tried: then it writes nothing and marks a retry.
func (p *proxy) handleError(w http.ResponseWriter, r *http.Request, err error) {
	p.fail(r.Context(), w, r.Context().Value(attemptKey{}).(*attempt), err)
}

// fail is handleError for both paths; ctx is the attempt's (the revision timeout's) context.
func (p *proxy) fail(ctx context.Context, w http.ResponseWriter, at *attempt, err error) {
	at.err = err
	var op *net.OpError
	if at.mayRetry && !at.bodyRead && errors.As(err, &op) && op.Op == "dial" && ctx.Err() == nil {
		at.retry = true
		return
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		revisionTimedOut(w, at.revision, at.timeout)
		at.status = http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		// The client went away; nobody reads an answer.
	default:
		p.log.Debug("activator: proxy error", "addr", at.addr, "err", err)
		http.Error(w, "activator: instance "+at.addr+" failed: "+strconv.Quote(err.Error()), http.StatusBadGateway)
		at.status = http.StatusBadGateway
	}
}

// bufferPool recycles the reverse proxy's copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
