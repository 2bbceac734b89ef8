package activator

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The fast path forwards an HTTP/1.x request to an HTTP/1.1 instance on the handler's own
// goroutine: it writes the request on a pooled connection and reads the response from it, with
// none of http.Transport's per-connection goroutines and hand-offs, header clones or request
// copies. What it does not handle (h2c instances, HTTP/2 clients, upgrades, Expect) goes
// through httputil.ReverseProxy.

// fastPathFits says whether a request for an HTTP/1.1 instance can take the fast path.
func fastPathFits(r *http.Request) bool {
	if r.ProtoMajor != 1 || r.Method == http.MethodConnect {
		return false
	}
	h := r.Header
	if len(h["Upgrade"]) > 0 || len(h["Expect"]) > 0 {
		return false
	}
	for _, v := range h["Connection"] {
		if hasToken(v, "upgrade") {
			return false
		}
	}
	return true
}

// aLongTimeAgo is a deadline that makes pending and future I/O on a connection fail at once.
var aLongTimeAgo = time.Unix(1, 0)

// maxInformational bounds the 1xx responses forwarded before the final one.
const maxInformational = 8

// forwardHTTP1 is forward's fast path: one attempt of r on at.addr. A pooled connection the
// instance turns out to have closed is replaced by a new one, once, when that cannot send the
// request twice (as http.Transport does).
func (p *proxy) forwardHTTP1(ctx context.Context, w http.ResponseWriter, r *http.Request, at *attempt) {
	fresh := false
	for {
		c, err := p.conns.get(ctx, at.addr, fresh)
		if err != nil {
			p.fail(ctx, w, at, err)
			return
		}
		if !p.exchange(ctx, w, r, at, c) {
			return
		}
		fresh = true
	}
}

// exchange sends r on c and streams the answer to w. It reports whether the request should be
// sent again on a new connection: c was pooled, the instance had closed it, and the request
// could not have been processed. c is returned to the pool or closed before it returns, even
// when the response copy aborts.
func (p *proxy) exchange(ctx context.Context, w http.ResponseWriter, r *http.Request, at *attempt, c *upstreamConn) (resend bool) {
	// No goroutine watches the connection: the request's end (client gone, revision timeout)
	// makes its pending read or write fail instead.
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(aLongTimeAgo) })
	reusable := false
	body := &bodyWriter{}
	defer func() {
		if body.join(c, at) != nil {
			reusable = false
		}
		if !stop() {
			reusable = false // the deadline may be set
		}
		if reusable {
			p.conns.put(c)
		} else {
			c.close()
		}
	}()

	resp, err := p.roundTrip(c, r, at, w, body)
	if err != nil {
		if werr := body.join(c, at); werr != nil {
			err = werr
		}
		if c.reused && !at.bodyRead && ctx.Err() == nil && !errors.As(err, new(clientBodyError)) &&
			(c.written == 0 || (c.read == 0 && idempotent(r))) {
			p.log.Debug("activator: pooled connection was closed by the instance, sending on a new one", "addr", at.addr, "err", err)
			return true
		}
		p.fail(ctx, w, at, err)
		return false
	}

	at.status = resp.StatusCode
	h := w.Header()
	copyResponseHeader(h, resp.Header)
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)

	if err := p.copyBody(w, resp.Body, flushesEachWrite(resp)); err != nil {
		// Half a response is out: all that is left is to cut it short, as ReverseProxy does.
		p.log.Debug("activator: response copy failed", "addr", at.addr, "err", err)
		panic(http.ErrAbortHandler)
	}
	if len(resp.Trailer) > 0 {
		// Force chunking, so that the trailers can follow the body.
		_ = http.NewResponseController(w).Flush()
		if len(resp.Trailer) == announced {
			copyHeader(h, resp.Trailer)
		} else {
			for k, vs := range resp.Trailer {
				for _, v := range vs {
					h.Add(http.TrailerPrefix+k, v)
				}
			}
		}
	}
	// The body was read to its end; anything more from the instance would be unasked for. A
	// request body still being sent when the response has ended spoils the connection: the
	// deferred join says so.
	reusable = !resp.Close && c.br.Buffered() == 0
	return false
}

// inlineBodyMax bounds the request bodies written before the response is read, on the
// handler's goroutine. Larger and chunked ones are written by a goroutine of their own while
// the response is read: an instance may answer while still reading (an echo, an early 413) and,
// if nobody read its answer, stop reading and wait forever on a proxy that waits on it. A body
// this small fits in the socket buffers, whatever the instance does.
const inlineBodyMax = 16 << 10

// bodyWriter is the goroutine sending a large or chunked request body, if any. The exchange
// that starts it joins it before the connection is reused or closed, and before the handler
// returns: the request body must not be read after that.
type bodyWriter struct {
	done     chan error // nil when no goroutine was started
	err      error
	joined   bool
	bodyRead atomic.Bool
}

func (b *bodyWriter) start(run func(bodyRead *atomic.Bool) error) {
	b.done = make(chan error, 1)
	go func() { b.done <- run(&b.bodyRead) }()
}

// finished says whether the body was sent in full (or there was no goroutine).
func (b *bodyWriter) finished() bool {
	if b.done == nil || b.joined {
		return b.err == nil
	}
	select {
	case b.err = <-b.done:
		b.joined = true
		return b.err == nil
	default:
		return false
	}
}

// join waits for the goroutine, first making its pending write on c fail if it is still
// running (the exchange is over: what is left of the body is not wanted). A read of the
// client's body in progress ends when the client sends more or goes away. It returns the
// goroutine's error, and records in at whether any body was read.
func (b *bodyWriter) join(c *upstreamConn, at *attempt) error {
	if b.done == nil || b.joined {
		return b.err
	}
	if !b.finished() {
		_ = c.conn.SetWriteDeadline(aLongTimeAgo)
		b.err = <-b.done
		b.joined = true
		if b.err == nil {
			// Every write was done before the deadline: the body went in full, and the goroutine
			// had only not said so yet (on a busy machine it can take that long after its last
			// write, while the instance answers). Nothing is pending on the connection.
			_ = c.conn.SetWriteDeadline(time.Time{})
		}
	}
	if b.bodyRead.Load() {
		at.bodyRead = true
	}
	return b.err
}

// roundTrip writes r on c and reads the instance's final response, passing informational
// (1xx) ones on to w.
func (p *proxy) roundTrip(c *upstreamConn, r *http.Request, at *attempt, w http.ResponseWriter, body *bodyWriter) (*http.Response, error) {
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	chunked := hasBody && r.ContentLength < 0
	writeRequestHead(c.bw, r, hasBody, chunked)
	var werr error
	if hasBody && (chunked || r.ContentLength > inlineBodyMax) {
		// The client's body is read while the response is written: without this Go's HTTP/1
		// server would drain (up to 256 KiB of) the body itself at the response's first write,
		// under the writer's feet.
		_ = http.NewResponseController(w).EnableFullDuplex()
		// The head goes at once: the instance may start on it while the body streams.
		if werr = c.bw.Flush(); werr != nil {
			return nil, werr
		}
		body.start(func(bodyRead *atomic.Bool) error {
			if err := p.writeBody(c.bw, r, bodyRead, chunked); err != nil {
				return err
			}
			return c.bw.Flush()
		})
	} else {
		var bodyRead atomic.Bool
		if hasBody {
			werr = p.writeBody(c.bw, r, &bodyRead, chunked)
		}
		if werr == nil {
			werr = c.bw.Flush()
		}
		at.bodyRead = bodyRead.Load()
		if werr != nil && (!at.bodyRead || errors.As(werr, new(clientBodyError))) {
			return nil, werr
		}
	}
	// A write that failed part-way through the body may have failed because the instance
	// answered early (413, 401) and stopped reading: prefer its answer, as http.Transport does.
	for range maxInformational {
		resp, err := http.ReadResponse(c.br, r)
		if err != nil {
			if werr != nil {
				return nil, werr
			}
			return nil, err
		}
		if werr != nil {
			resp.Close = true
		}
		switch code := resp.StatusCode; {
		case code >= 200:
			return resp, nil
		case code == http.StatusSwitchingProtocols:
			return nil, errors.New("instance switched protocols without being asked to")
		case code == http.StatusContinue:
			// Not asked for (the fast path takes no Expect); skip it.
		default:
			h := w.Header()
			copyResponseHeader(h, resp.Header)
			w.WriteHeader(code)
			clear(h) // a 1xx's headers are not the final response's
		}
	}
	return nil, fmt.Errorf("more than %d informational responses", maxInformational)
}

// clientBodyError is a failure to read the request body from the client.
type clientBodyError struct{ err error }

func (e clientBodyError) Error() string { return "reading the request body: " + e.err.Error() }
func (e clientBodyError) Unwrap() error { return e.err }

// writeRequestHead writes r's head to bw as HTTP/1.1, with the headers ReverseProxy would
// send: hop-by-hop ones dropped (RFC 9110 7.6.1), the client added to X-Forwarded-For, Host
// kept. Errors surface at the next flush.
func writeRequestHead(bw *bufio.Writer, r *http.Request, hasBody, chunked bool) {
	target := r.RequestURI
	if !strings.HasPrefix(target, "/") {
		target = r.URL.RequestURI() // absolute-form, or a request built in-process
	}
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	writeValue(bw, host)
	bw.WriteString("\r\n")

	named := r.Header["Connection"]
	for k, vs := range r.Header {
		switch k {
		case "Host", "Content-Length", "X-Forwarded-For":
			continue
		}
		if isHopByHop(k) || namedIn(named, k) {
			continue
		}
		for _, v := range vs {
			writeField(bw, k, v)
		}
	}
	for _, v := range r.Header["Te"] {
		if hasToken(v, "trailers") {
			bw.WriteString("Te: trailers\r\n")
			break
		}
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		bw.WriteString("X-Forwarded-For: ")
		for _, prior := range r.Header["X-Forwarded-For"] {
			writeValue(bw, prior)
			bw.WriteString(", ")
		}
		bw.WriteString(ip)
		bw.WriteString("\r\n")
	}

	switch {
	case chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(r.Trailer) > 0 {
			keys := make([]string, 0, len(r.Trailer))
			for k := range r.Trailer {
				keys = append(keys, k)
			}
			writeField(bw, "Trailer", strings.Join(keys, ", "))
		}
	case hasBody || len(r.Header["Content-Length"]) > 0 || sendsEmptyLength(r.Method):
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(max(r.ContentLength, 0), 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
}

// writeBody streams r's body to bw as it arrives, flushing after each piece but the last.
func (p *proxy) writeBody(bw *bufio.Writer, r *http.Request, bodyRead *atomic.Bool, chunked bool) error {
	buf := p.bufs.Get()
	defer p.bufs.Put(buf)
	for {
		n, rerr := r.Body.Read(buf)
		if n > 0 {
			bodyRead.Store(true)
			if chunked {
				bw.WriteString(strconv.FormatInt(int64(n), 16))
				bw.WriteString("\r\n")
				bw.Write(buf[:n])
				bw.WriteString("\r\n")
			} else {
				bw.Write(buf[:n])
			}
			// Stream: the instance gets each piece as the client sends it. With the end of
			// the body in hand, the final flush sends it with the rest.
			if rerr == nil {
				if err := bw.Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return clientBodyError{rerr}
		}
	}
	if chunked {
		bw.WriteString("0\r\n")
		for k, vs := range r.Trailer {
			for _, v := range vs {
				writeField(bw, k, v)
			}
		}
		bw.WriteString("\r\n")
	}
	return nil
}

// sendsEmptyLength: methods whose empty body is announced as Content-Length: 0, as
// http.Transport does, since some servers require a length for them.
func sendsEmptyLength(method string) bool {
	return method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch
}

// idempotent says whether a request may be sent again when it is not known whether the
// instance got it (RFC 9110 9.2.2), as http.Transport decides.
func idempotent(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return len(r.Header["Idempotency-Key"]) > 0 || len(r.Header["X-Idempotency-Key"]) > 0
}

func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	writeValue(bw, v)
	bw.WriteString("\r\n")
}

// writeValue writes a header value; a line break (which the server would have refused, but the
// handler may be called in-process) becomes a space so it cannot split the request.
func writeValue(bw *bufio.Writer, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	bw.WriteString(v)
}

// copyBody streams the response body to w, flushing after each write when the response is a
// stream, and reports the first error of either side.
func (p *proxy) copyBody(w http.ResponseWriter, body io.Reader, flushEach bool) error {
	buf := p.bufs.Get()
	defer p.bufs.Put(buf)
	rc := http.NewResponseController(w)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return fmt.Errorf("writing to the client: %w", err)
			}
			if flushEach {
				if err := rc.Flush(); err != nil {
					return fmt.Errorf("flushing to the client: %w", err)
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("reading from the instance: %w", rerr)
		}
	}
}

// flushesEachWrite follows ReverseProxy with FlushInterval 0: responses of unknown length and
// server-sent events are streams, sent on as they come.
func flushesEachWrite(resp *http.Response) bool {
	if resp.ContentLength == -1 {
		return true
	}
	ct := resp.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, "text/event-stream") {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "text/event-stream"
}

// copyResponseHeader copies an instance's response headers, less the hop-by-hop ones.
func copyResponseHeader(dst, src http.Header) {
	named := src["Connection"]
	for k, vs := range src {
		if isHopByHop(k) || namedIn(named, k) {
			continue
		}
		if prior, ok := dst[k]; ok {
			dst[k] = append(prior, vs...)
		} else {
			dst[k] = vs
		}
	}
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		for _, v := range vs {
			dst.Add(k, v)
		}
	}
}

// isHopByHop: the connection-specific headers RFC 9110 7.6.1 says a proxy must not forward,
// and the older ones ReverseProxy drops too (canonical keys).
func isHopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// namedIn says whether a Connection header lists k (which makes it hop-by-hop too).
func namedIn(connection []string, k string) bool {
	for _, v := range connection {
		if hasToken(v, k) {
			return true
		}
	}
	return false
}

// hasToken says whether a comma-separated header value lists token, case-insensitively.
func hasToken(v, token string) bool {
	for len(v) > 0 {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(textproto.TrimString(t), token) {
			return true
		}
	}
	return false
}
