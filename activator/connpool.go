package activator

import (
	"bufio"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the HTTP/1.1 connection pool. The idle bound is per instance: the activator is in
// front of few instances per revision, and containerConcurrency usually bounds how many
// connections one of them can use at a time anyway.
const (
	defaultMaxIdlePerInstance = 128
	defaultIdleTimeout        = 90 * time.Second
	defaultSweepEvery         = time.Second
	// A connection idle for less than this is taken without a peek: under load connections
	// come back within microseconds, and a peek is a system call. An instance that closed one
	// that soon costs an idempotent request a resend, and any other a 502.
	peekAfterIdle = time.Millisecond
)

// connPool keeps idle HTTP/1.1 connections to instances for the fast path. Unlike
// http.Transport it runs no goroutine per connection: a connection is only ever read or
// written by the handler that took it, and idle ones are checked when taken and by a sweep.
// The sweep is a timer armed only while some connection is idle, so an idle pool costs nothing
// and leaves nothing running.
type connPool struct {
	dial               func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdlePerInstance int
	idleTimeout        time.Duration
	sweepEvery         time.Duration
	now                func() time.Time

	mu    sync.Mutex
	idle  map[string][]*upstreamConn // per instance address, oldest first
	nIdle int
	// live, once set, says which instance addresses are still ready; the sweep closes idle
	// connections to the others.
	live  func() map[string]bool
	sweep *time.Timer // armed while nIdle > 0

	// open counts connections dialled and not yet closed, idle or in use.
	open atomic.Int64
}

func newConnPool(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *connPool {
	return &connPool{
		dial:               dial,
		maxIdlePerInstance: defaultMaxIdlePerInstance,
		idleTimeout:        defaultIdleTimeout,
		sweepEvery:         defaultSweepEvery,
		now:                time.Now,
		idle:               map[string][]*upstreamConn{},
	}
}

// upstreamConn is one HTTP/1.1 connection to an instance, owned by one request at a time. It
// counts the bytes of the current exchange, to tell a connection the instance had closed while
// idle (nothing written or nothing read) from a request that failed half-way.
type upstreamConn struct {
	conn    net.Conn
	addr    string
	pool    *connPool
	reused  bool // taken from the pool rather than dialled for this request
	idleAt  time.Time
	written int64
	read    int64
	closed  bool

	// Held only while the connection is in use; idle connections give them back.
	br *bufio.Reader
	bw *bufio.Writer
}

func (c *upstreamConn) Read(p []byte) (int, error) {
	n, err := c.conn.Read(p)
	c.read += int64(n)
	return n, err
}

func (c *upstreamConn) Write(p []byte) (int, error) {
	n, err := c.conn.Write(p)
	c.written += int64(n)
	return n, err
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// begin readies the connection for one exchange.
func (c *upstreamConn) begin() {
	c.written, c.read = 0, 0
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(c)
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(c)
}

func (c *upstreamConn) releaseBuffers() {
	if c.br != nil {
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.br = nil
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw = nil
	}
}

// close closes the connection; only its current owner (a request, or the pool for idle ones)
// calls it.
func (c *upstreamConn) close() {
	c.releaseBuffers()
	if c.closed {
		return
	}
	c.closed = true
	_ = c.conn.Close()
	c.pool.open.Add(-1)
}

// get returns a connection to addr: the most recently idle one that is still open, else a new
// one. fresh skips the idle ones.
func (p *connPool) get(ctx context.Context, addr string, fresh bool) (*upstreamConn, error) {
	if !fresh {
		for {
			c := p.takeIdle(addr)
			if c == nil {
				break
			}
			if p.now().Sub(c.idleAt) < peekAfterIdle || stillOpen(c.conn) {
				c.reused = true
				c.begin()
				return c, nil
			}
			c.close()
		}
	}
	nc, err := p.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	p.open.Add(1)
	c := &upstreamConn{conn: nc, addr: addr, pool: p}
	c.begin()
	return c, nil
}

func (p *connPool) takeIdle(addr string) *upstreamConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := p.idle[addr]
	if len(cs) == 0 {
		return nil
	}
	c := cs[len(cs)-1]
	cs[len(cs)-1] = nil
	if len(cs) == 1 {
		delete(p.idle, addr)
	} else {
		p.idle[addr] = cs[:len(cs)-1]
	}
	p.nIdle--
	return c
}

// put takes back a connection whose last exchange ended cleanly, or closes it when the
// instance already has as many idle connections as allowed.
func (p *connPool) put(c *upstreamConn) {
	c.releaseBuffers()
	p.mu.Lock()
	cs := p.idle[c.addr]
	if len(cs) >= p.maxIdlePerInstance {
		p.mu.Unlock()
		c.close()
		return
	}
	c.idleAt = p.now()
	p.idle[c.addr] = append(cs, c)
	p.nIdle++
	if p.sweep == nil {
		p.sweep = time.AfterFunc(p.sweepEvery, p.sweepIdle)
	}
	p.mu.Unlock()
}

// setLive tells the pool which instances are still ready, for the sweep.
func (p *connPool) setLive(live func() map[string]bool) {
	p.mu.Lock()
	p.live = live
	p.mu.Unlock()
}

// sweepIdle closes the connections idle for longer than the idle timeout and those to instances
// that are no longer ready, and re-arms itself while any connection stays idle.
func (p *connPool) sweepIdle() {
	p.mu.Lock()
	live := p.live
	p.mu.Unlock()
	var ready map[string]bool
	if live != nil {
		ready = live() // outside p.mu: it takes the activator's locks
	}

	var gone []*upstreamConn
	p.mu.Lock()
	expired := p.now().Add(-p.idleTimeout)
	for addr, cs := range p.idle {
		keepFrom := 0
		if live == nil || ready[addr] {
			for keepFrom < len(cs) && cs[keepFrom].idleAt.Before(expired) {
				keepFrom++
			}
		} else {
			keepFrom = len(cs)
		}
		if keepFrom == 0 {
			continue
		}
		gone = append(gone, cs[:keepFrom]...)
		p.nIdle -= keepFrom
		if keepFrom == len(cs) {
			delete(p.idle, addr)
		} else {
			p.idle[addr] = append(cs[:0:0], cs[keepFrom:]...)
		}
	}
	if p.sweep != nil {
		if p.nIdle > 0 {
			p.sweep.Reset(p.sweepEvery)
		} else {
			p.sweep.Stop()
			p.sweep = nil
		}
	}
	p.mu.Unlock()
	for _, c := range gone {
		c.close()
	}
}

// closeIdle closes every idle connection and stops the sweep; connections in use are closed
// or returned by their requests as usual.
func (p *connPool) closeIdle() {
	p.mu.Lock()
	var gone []*upstreamConn
	for _, cs := range p.idle {
		gone = append(gone, cs...)
	}
	clear(p.idle)
	p.nIdle = 0
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, c := range gone {
		c.close()
	}
}

func (p *connPool) idleCount(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle[addr])
}

// readyAddrs is the set of every revision's ready instances, for the pool's sweep.
func (a *Activator) readyAddrs() map[string]bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	ready := map[string]bool{}
	for _, r := range a.revs {
		r.mu.Lock()
		for _, b := range r.backends {
			ready[b.addr] = true
		}
		r.mu.Unlock()
	}
	return ready
}
