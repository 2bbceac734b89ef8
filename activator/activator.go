// Package activator stands in for revisions with no ready instance: it queues their requests,
// pokes the autoscaler, and forwards the requests once instances are ready, never above a
// revision's containerConcurrency per instance. It learns instances from the control plane over
// delta ADS (activator/xdsclient) and reports what it holds over LRS (activator/lrs).
//
// A request's revision is the one its Knative-Serving-Namespace and Knative-Serving-Revision
// headers name: Envoy gateways set them (overwriting what a client sent). Proxyless gRPC clients
// ignore header rewrites, so a request without Knative-Serving-Revision is routed by its
// authority instead: the activator subscribes (on the same ADS stream) to the route
// configuration named by the host, takes the route its Knative-Serving-Tag selects (else the
// default route), and picks among that route's weighted revisions by weight, counting only those
// the gateways send to the activator (activator/routes). A host the control plane does not serve
// within UnknownRevisionWait gets 404.
package activator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluice-dev/sluice/activator/instances"
	"github.com/sluice-dev/sluice/activator/lrs"
	"github.com/sluice-dev/sluice/activator/routes"
	"github.com/sluice-dev/sluice/activator/xdsclient"
	"github.com/sluice-dev/sluice/wire"
)

// Defaults. The queue length is Knative's; Knative has no byte or wait bound (serving #13583).
const (
	DefaultListen              = "127.0.0.1:8012"
	DefaultControlPlane        = "127.0.0.1:18000"
	DefaultQueueRequests       = 10000
	DefaultQueueBytes          = 64 << 20
	DefaultQueueTimeout        = 60 * time.Second
	DefaultDrainTimeout        = 30 * time.Second
	DefaultUnknownRevisionWait = 2 * time.Second
	DefaultMaxAttempts         = 3
	DefaultMaxHosts            = 1000
)

// Options configure an Activator. Zero values take the defaults above.
type Options struct {
	// Listen is the address Run serves on.
	Listen string
	// ControlPlane is the xDS/LRS gRPC address. Empty means no control plane: instances come only
	// from Update and nothing is reported (tests, or a caller that wires its own).
	ControlPlane string
	// NodeID names this activator to the control plane; default "activator-<hostname>-<pid>".
	NodeID string

	// Per revision: the most requests waiting for an instance, the most bytes they may declare
	// (headers plus Content-Length; bodies are not read while queued), and the longest wait.
	QueueRequests int
	QueueBytes    int64
	QueueTimeout  time.Duration

	// DrainTimeout bounds how long Run waits for in-flight and queued requests once stopped.
	DrainTimeout time.Duration
	// UnknownRevisionWait is how long a request for a revision (or a host) the control plane has
	// not named yet waits for it before a 404.
	UnknownRevisionWait time.Duration
	// MaxHosts bounds the hosts whose routes are kept (and subscribed to) for requests without a
	// revision header; the least recently used beyond it are dropped.
	MaxHosts int
	// MaxAttempts bounds the instances tried for one request when connecting to them fails.
	MaxAttempts int

	// Poke is called with "namespace/revision" when a request arrives for a revision with no ready
	// instance. Default: an immediate LRS report for it (rate-limited by the reporter).
	Poke func(revision string)

	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.NodeID == "" {
		host, _ := os.Hostname()
		o.NodeID = fmt.Sprintf("activator-%s-%d", host, os.Getpid())
	}
	if o.QueueRequests <= 0 {
		o.QueueRequests = DefaultQueueRequests
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = DefaultQueueBytes
	}
	if o.QueueTimeout <= 0 {
		o.QueueTimeout = DefaultQueueTimeout
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.UnknownRevisionWait <= 0 {
		o.UnknownRevisionWait = DefaultUnknownRevisionWait
	}
	if o.MaxHosts <= 0 {
		o.MaxHosts = DefaultMaxHosts
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Activator is the proxy and its connections to the control plane. It is an http.Handler.
type Activator struct {
	opts Options
	log  *slog.Logger
	lim  limits

	mu      sync.RWMutex
	revs    map[string]*revision
	changed chan struct{} // closed and replaced when revisions are added
	// lookupsWaiting counts requests waiting for their revision to be named.
	lookupsWaiting atomic.Int64

	proxy *proxy
	hosts *hostRoutes

	conn     *grpc.ClientConn // nil without a control plane
	xds      *xdsclient.Client
	reporter *lrs.Reporter

	stopOnce sync.Once
	stopping chan struct{} // closed by Shutdown
	done     chan struct{} // closed when Serve has drained
}

// New builds an Activator; it starts nothing until Run or Serve.
func New(opts Options) (*Activator, error) {
	opts.setDefaults()
	a := &Activator{
		opts:     opts,
		log:      opts.Logger,
		lim:      limits{count: opts.QueueRequests, bytes: opts.QueueBytes, wait: opts.QueueTimeout},
		revs:     map[string]*revision{},
		changed:  make(chan struct{}),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
	a.proxy = newProxy(opts.Logger)
	// The pool's sweep closes idle connections to instances that are no longer ready.
	a.proxy.conns.setLive(a.readyAddrs)
	// Without a control plane no host is ever served: requests need the revision headers.
	subscribe, unsubscribe := func(...string) {}, func(...string) {}
	if opts.ControlPlane != "" {
		conn, err := grpc.NewClient(opts.ControlPlane, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("activator: control plane %q: %w", opts.ControlPlane, err)
		}
		a.conn = conn
		node := Node(opts.NodeID)
		a.xds = xdsclient.New(xdsclient.Options{Conn: conn, Node: node, Sink: a, Routes: a, Logger: opts.Logger})
		subscribe, unsubscribe = a.xds.SubscribeRoutes, a.xds.UnsubscribeRoutes
		a.reporter = lrs.NewReporter(lrs.Options{Conn: conn, Node: node, Source: a, Logger: opts.Logger})
		if a.opts.Poke == nil {
			a.opts.Poke = a.reporter.Poke
		}
	}
	a.hosts = newHostRoutes(opts.MaxHosts, subscribe, unsubscribe)
	return a, nil
}

// Node is how an activator presents itself to the control plane.
func Node(id string) *corev3.Node {
	return &corev3.Node{
		Id:             id,
		UserAgentName:  wire.ActivatorUserAgent,
		ClientFeatures: []string{"envoy.lrs.supports_send_all_clusters"},
		Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			wire.NodeKindMetadataKey: structpb.NewStringValue(string(wire.NodeActivator)),
		}},
	}
}

// Update implements instances.Sink: the control plane's revisions, as they change.
func (a *Activator) Update(put []instances.Revision, removed []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, name := range removed {
		if r := a.revs[name]; r != nil {
			r.forget()
			// Otherwise TakeLoads drops it once its last counts are reported.
			if r.idle() {
				delete(a.revs, name)
			}
		}
	}
	for _, spec := range put {
		r := a.revs[spec.Name]
		if r == nil {
			r = newRevision(spec.Name)
			a.revs[spec.Name] = r
		}
		r.setSpec(spec)
	}
	if len(put) > 0 {
		close(a.changed)
		a.changed = make(chan struct{})
	}
}

// UpdateRoutes implements xdsclient.RouteSink: the routes of the hosts subscribed to.
func (a *Activator) UpdateRoutes(put []routes.Host, removed []string) {
	a.hosts.update(put, removed)
}

// standing is what the activator knows of a revision, for routes.Pick.
func (a *Activator) standing(name string) routes.Standing {
	a.mu.RLock()
	r := a.revs[name]
	a.mu.RUnlock()
	if r == nil {
		return routes.Unknown
	}
	switch spec, known, _ := r.snapshot(); {
	case !known:
		return routes.Unknown
	case spec.Proxied:
		return routes.Proxied
	}
	return routes.Direct
}

// lookup finds a known revision, waiting up to UnknownRevisionWait for the control plane to
// name it: a request can race the push that created its revision.
func (a *Activator) lookup(ctx context.Context, name string) *revision {
	return awaitFound(ctx, a.opts.UnknownRevisionWait, &a.lookupsWaiting, func() (*revision, <-chan struct{}) {
		a.mu.RLock()
		r, changed := a.revs[name], a.changed
		a.mu.RUnlock()
		if r != nil {
			if _, known, _ := r.snapshot(); known {
				return r, changed
			}
		}
		return nil, changed
	})
}

// awaitFound calls find until it finds something (non-nil), waiting in between for the
// channel find returns to be closed (something changed), for at most wait after the first miss
// or until ctx is done; then it returns nil. waiting, when set, counts the calls that wait.
func awaitFound[T any](ctx context.Context, wait time.Duration, waiting *atomic.Int64, find func() (*T, <-chan struct{})) *T {
	var timer *time.Timer
	for {
		v, changed := find()
		if v != nil {
			return v
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
			if waiting != nil {
				waiting.Add(1)
				defer waiting.Add(-1)
			}
		}
		select {
		case <-changed:
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// TakeLoads implements lrs.Source: every revision with requests held now or since the last call,
// resetting the counts. A removed revision stays until its last request has been reported.
// InProgress is the average number of requests held since the last call (see concurrency),
// at least the number held now.
func (a *Activator) TakeLoads() []lrs.Load {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	var out []lrs.Load
	for name, r := range a.revs {
		if _, known, _ := r.snapshot(); !known && r.inProgress.Load() == 0 {
			delete(a.revs, name) // its counts are reported below, for the last time
		}
		l := lrs.Load{
			Cluster:    name,
			InProgress: max(uint64(max(r.inProgress.Load(), 0)), r.average.take(now)),
			Issued:     r.issued.Swap(0),
			Succeeded:  r.succeeded.Swap(0),
			Failed:     r.failed.Swap(0),
		}
		if l.InProgress > 0 || l.Issued > 0 || l.Succeeded > 0 || l.Failed > 0 {
			out = append(out, l)
		}
	}
	return out
}

// InProgress implements lrs.Source: the requests the activator holds for the revision now.
func (a *Activator) InProgress(name string) uint64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if r := a.revs[name]; r != nil {
		return uint64(max(r.inProgress.Load(), 0))
	}
	return 0
}

// Run serves on Options.Listen until ctx ends or Shutdown is called, then drains.
func (a *Activator) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.opts.Listen)
	if err != nil {
		return fmt.Errorf("activator: listen: %w", err)
	}
	return a.Serve(ctx, ln)
}

// Serve is Run on a listener of the caller's. It returns once in-flight and queued requests
// have finished or DrainTimeout has passed, and the control-plane streams have stopped. An
// Activator serves once: call Run or Serve a single time.
func (a *Activator) Serve(ctx context.Context, ln net.Listener) error {
	defer close(a.done)
	// After the drain nothing uses the upstream connections: close them and stop their sweep.
	defer a.proxy.conns.closeIdle()
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           a,
		Protocols:         &protocols,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}

	// The control-plane streams outlive the listener: queued requests still need instances and
	// the autoscaler still needs to see them while draining.
	bgCtx, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	if a.conn != nil {
		bg.Go(func() { a.logExit("xds", a.xds.Run(bgCtx)) })
		bg.Go(func() { a.logExit("lrs", a.reporter.Run(bgCtx)) })
	}
	defer func() {
		stopBG()
		bg.Wait()
		if a.conn != nil {
			_ = a.conn.Close()
		}
	}()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	a.log.Info("activator serving", "addr", ln.Addr().String(), "control_plane", a.opts.ControlPlane)

	select {
	case err := <-serveErr:
		return fmt.Errorf("activator: serve: %w", err)
	case <-ctx.Done():
	case <-a.stopping:
	}
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.opts.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(drainCtx); err != nil {
		a.log.Warn("activator: drain timed out, closing the remaining connections", "timeout", a.opts.DrainTimeout)
		_ = srv.Close()
	}
	<-serveErr // http.ErrServerClosed
	return nil
}

func (a *Activator) logExit(what string, err error) {
	if err != nil && !errors.Is(err, context.Canceled) {
		a.log.Error("activator: stream stopped", "stream", what, "err", err)
	}
}

// Shutdown stops accepting connections and waits, up to ctx, for Run or Serve to drain (bounded
// by DrainTimeout) and return. Called before Run or Serve, it waits for ctx.
func (a *Activator) Shutdown(ctx context.Context) error {
	a.stopOnce.Do(func() { close(a.stopping) })
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("activator: shutdown: %w", ctx.Err())
	}
}
