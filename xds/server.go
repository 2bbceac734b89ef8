// Package xds serves sluice's Envoy resources over xDS to Envoy gateways, to
// proxyless gRPC clients and to activators: the envoy.Resources the translator
// produces, and the envoy.Changes it names, are what Update and UpdateChanged take.
//
// It builds on go-control-plane's LinearCache, one per (type, node kind) behind
// a MuxCache. LinearCache keeps a version per resource, so a change re-sends
// only the resources that changed: SotW RDS/EDS replies carry only them, delta
// replies carry only them, and SotW CDS/LDS replies (which the protocol makes
// full-state) carry the full set. Update diffs the desired resources against
// what the caches hold and touches only the difference; nothing ever replaces a
// cache wholesale, so neither a NACK nor a delete causes a global resync.
//
// Versions. A resource's version is the SHA-256 of its deterministic encoding,
// the version delta xDS puts on the wire, so the same resources after a restart
// have the same versions and a reconnecting delta client that sends
// initial_resource_versions gets nothing new. SotW has only one version_info per
// response; it is this process's prefix plus a counter. A SotW client that
// reconnects after a restart is sent its subscribed resources again (a new stream
// knows nothing of what the old one sent) with identical content, which Envoy
// and gRPC recognise as unchanged. The per-process prefix makes sure such a
// client always gets a reply, even when the new process holds no resources.
//
// ACKs. The server mirrors each stream's subscriptions and records, per
// resource, the version the client ACKed (SotW: the resources of the ACKed
// response; delta: likewise, plus initial_resource_versions). WaitAcked is the
// seam for work that must not proceed before clients applied a change (draining
// an instance after its removal from EDS). The stream callbacks are also where
// load reporting (LRS) hooks in later: LRS is a separate gRPC service that
// Register can add next to these.
package xds

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	sotw "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/sluice-dev/sluice/envoy"
	"github.com/sluice-dev/sluice/wire"
)

// UpdateStats says what an Update changed.
type UpdateStats struct {
	Changed int   // resources added or changed
	Deleted int   // resources removed
	Bytes   int64 // encoded size of the added or changed resources: what one subscriber of all of them is pushed
}

// Options configure a Server.
type Options struct {
	Logger *slog.Logger // default slog.Default()
	// Registerer receives the server's metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// VersionPrefix starts every SotW version_info; default is random per
	// process (see the package comment for why).
	VersionPrefix string
}

// Server is sluice's xDS server.
type Server struct {
	log     *slog.Logger
	metrics *metrics
	caches  map[cacheKey]*cacheState // fixed after NewServer
	gcp     serverv3.Server

	updateMu sync.Mutex // serialises Update: it is the only writer of cacheState.entries

	mu  sync.RWMutex // guards cacheState.entries and seq
	seq uint64       // bumped by every Update that changes something

	nodes *tracker
}

// cacheKey names one LinearCache. Listeners differ by node kind; everything else
// is shared.
type cacheKey string

const (
	keyClusters      cacheKey = "clusters"
	keyEndpoints     cacheKey = "endpoints"
	keyRoutes        cacheKey = "routes"
	keyEnvoyListener cacheKey = "listeners/envoy"
	keyGRPCListener  cacheKey = "listeners/grpc"
	keyActivatorEDS  cacheKey = "endpoints/activator"
)

// keyFor maps a request's type and the client's kind to its cache; ok is false
// for a type sluice does not serve.
func keyFor(typeURL string, kind wire.NodeKind) (cacheKey, bool) {
	if kind == wire.NodeActivator {
		switch typeURL {
		case resource.EndpointType:
			return keyActivatorEDS, true
		case resource.RouteType:
			// The per-host route configurations gRPC clients use, for the activator to tell which
			// revision a gRPC request is for: gRPC clients do not set the gateway's headers.
			return keyRoutes, true
		}
		return "", false
	}
	switch typeURL {
	case resource.ClusterType:
		return keyClusters, true
	case resource.EndpointType:
		return keyEndpoints, true
	case resource.RouteType:
		return keyRoutes, true
	case resource.ListenerType:
		if kind == wire.NodeGRPC {
			return keyGRPCListener, true
		}
		return keyEnvoyListener, true
	}
	return "", false
}

// cacheState is one LinearCache and sluice's record of what it holds.
type cacheState struct {
	key     cacheKey
	typeURL string
	kinds   []wire.NodeKind // node kinds served from this cache
	cache   *cache.LinearCache

	entries map[string]*entry
	enc     vhostEncoder // encodings of large route configurations' virtual hosts; written under updateMu
}

// entry is kept per resource (80k and more at 10,000 services), so it holds
// only what is read after the update that set it.
type entry struct {
	res types.Resource
	// version is the SHA-256 of the encoding, raw: half the size of the hex
	// version go-control-plane puts on the wire (hexVersion), and there is one
	// per resource. versionIs compares it with a version from the wire.
	version string
	seq     uint64 // Server.seq when this content was set; orders versions of one resource; never 0
}

// rawVersion is the raw form of the version cache.HashResource gives for b.
func rawVersion(b []byte) string {
	sum := sha256.Sum256(b)
	return string(sum[:])
}

// hexVersion is a raw version as go-control-plane's cache.HashResource has it.
func hexVersion(raw string) string { return hex.EncodeToString([]byte(raw)) }

// versionIs reports whether wire == hexVersion(raw), without building the latter.
func versionIs(wire, raw string) bool {
	const digits = "0123456789abcdef"
	if len(wire) != 2*len(raw) {
		return false
	}
	for i := 0; i < len(raw); i++ {
		if wire[2*i] != digits[raw[i]>>4] || wire[2*i+1] != digits[raw[i]&0x0f] {
			return false
		}
	}
	return true
}

// NewServer creates a Server. ctx bounds every xDS stream it serves.
func NewServer(ctx context.Context, opts Options) (*Server, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	prefix := opts.VersionPrefix
	if prefix == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("xds: version prefix: %w", err)
		}
		prefix = hex.EncodeToString(b[:]) + "-"
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("xds: registering metrics: %w", err)
	}
	s := &Server{
		log:     logger,
		metrics: m,
		caches:  make(map[cacheKey]*cacheState),
	}
	glog := gcpLogger{logger}
	add := func(key cacheKey, typeURL string, kinds ...wire.NodeKind) {
		s.caches[key] = &cacheState{
			key:     key,
			typeURL: typeURL,
			kinds:   kinds,
			cache:   cache.NewLinearCache(typeURL, cache.WithVersionPrefix(prefix), cache.WithLogger(glog)),
			entries: make(map[string]*entry),
		}
	}
	add(keyClusters, resource.ClusterType, wire.NodeEnvoy, wire.NodeGRPC)
	add(keyEndpoints, resource.EndpointType, wire.NodeEnvoy, wire.NodeGRPC)
	add(keyRoutes, resource.RouteType, wire.NodeEnvoy, wire.NodeGRPC, wire.NodeActivator)
	add(keyEnvoyListener, resource.ListenerType, wire.NodeEnvoy)
	add(keyGRPCListener, resource.ListenerType, wire.NodeGRPC)
	add(keyActivatorEDS, resource.EndpointType, wire.NodeActivator)

	mux := &cache.MuxCache{
		Classify: func(r *cache.Request) string {
			return string(classify(r.GetTypeUrl(), nodeKind(r.GetNode())))
		},
		ClassifyDelta: func(r *cache.DeltaRequest) string {
			return string(classify(r.GetTypeUrl(), nodeKind(r.GetNode())))
		},
		Caches: make(map[string]cache.Cache, len(s.caches)),
	}
	for k, cs := range s.caches {
		mux.Caches[string(k)] = cs.cache
	}
	s.nodes = newTracker(s)
	s.gcp = serverv3.NewServer(ctx, mux, s.nodes, sotw.WithLogger(glog))
	return s, nil
}

// classify is the MuxCache key. The tracker rejects unsupported types before a
// watch is created, so the fallback key only shows up if that check is bypassed,
// and then the mux's "no cache defined for key" error still names the type.
func classify(typeURL string, kind wire.NodeKind) cacheKey {
	if k, ok := keyFor(typeURL, kind); ok {
		return k
	}
	return cacheKey("unsupported type " + typeURL)
}

// Register adds ADS (SotW and delta) and the separate CDS, EDS, LDS and RDS
// services to g.
func (s *Server) Register(g *grpc.Server) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, s.gcp)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, s.gcp)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, s.gcp)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, s.gcp)
	routeservice.RegisterRouteDiscoveryServiceServer(g, s.gcp)
}

// Update makes the caches hold exactly res and notifies the subscribers of what
// changed. A resource is unchanged when it is the same pointer as last time
// (the translator memoises) or has the same encoding. It looks at every
// resource: it is for start-up, a full translation, and the reference that
// UpdateChanged must agree with. Safe for concurrent use; meant to be called by
// one owner. ctx is the change's (the control-plane pass's): what it carries
// (a trace) goes with the push's log records.
func (s *Server) Update(ctx context.Context, res *envoy.Resources) (UpdateStats, error) {
	if res == nil {
		res = &envoy.Resources{}
	}
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	stats, err := s.update(res, nil)
	s.logPush(ctx, stats, err)
	return stats, err
}

// logPush records a push at debug level, in the change's context. A failure is the caller's to
// report (the loop logs and retries it).
func (s *Server) logPush(ctx context.Context, st UpdateStats, err error) {
	if err == nil && st.Changed+st.Deleted > 0 {
		s.log.DebugContext(ctx, "xDS pushed", "changed", st.Changed, "deleted", st.Deleted, "bytes", st.Bytes)
	}
}

// UpdateChanged is Update when only the resources ch names can differ from what
// the caches hold: it diffs those names alone, so its cost follows the change,
// not the 80k resources of 10,000 services. Naming a resource that did not
// change is harmless (it is compared and skipped); leaving out one that did
// leaves the caches stale, which is why ch.Full falls back to Update.
//
// res is read only during the call: the caches keep the resource pointers
// (immutable protos), never the maps, so the caller may patch the maps in place
// afterwards (envoy.Translator.TranslateDiff does). ctx is as for Update.
func (s *Server) UpdateChanged(ctx context.Context, res *envoy.Resources, ch envoy.Changes) (stats UpdateStats, err error) {
	if res == nil {
		res = &envoy.Resources{}
	}
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	defer func() { s.logPush(ctx, stats, err) }()
	if ch.Full {
		return s.update(res, nil)
	}
	// Three pushes, in the order a gateway needs them:
	//  1. everything added or changed, except the route configurations of Envoy's listeners;
	//  2. those route configurations: they hold every host, so encoding and hashing them costs
	//     more than all else a change touches, and gRPC clients need none of them;
	//  3. clusters and endpoints that are gone: a route that still named one until step 2 would
	//     otherwise send requests to a missing cluster (503s) in between.
	// For Envoy this is make-before-break: new clusters before the routes that use them, old
	// ones after the routes that stopped using them.
	var late, gone envoy.Changes
	early := ch
	early.Routes, late.Routes = splitNames(ch.Routes, func(name string) bool { _, gw := res.Listeners[name]; return gw })
	early.Clusters, gone.Clusters = splitNames(ch.Clusters, func(name string) bool { _, ok := res.Clusters[name]; return !ok })
	early.Endpoints, gone.Endpoints = splitNames(ch.Endpoints, func(name string) bool { _, ok := res.Endpoints[name]; return !ok })
	early.ActivatorEndpoints, gone.ActivatorEndpoints = splitNames(ch.ActivatorEndpoints, func(name string) bool {
		_, ok := res.ActivatorEndpoints[name]
		return !ok
	})
	for _, phase := range []*envoy.Changes{&early, &late, &gone} {
		if phase != &early && phase.Empty() {
			continue
		}
		more, err := s.update(res, phase)
		stats.Changed += more.Changed
		stats.Deleted += more.Deleted
		stats.Bytes += more.Bytes
		if err != nil {
			return stats, err
		}
	}
	return stats, nil
}

// splitNames returns the names for which later is false, then those for which it is true.
func splitNames(names []string, later func(string) bool) (now, after []string) {
	for _, n := range names {
		if later(n) {
			after = append(after, n)
		} else {
			now = append(now, n)
		}
	}
	return now, after
}

// update diffs res against the caches (only the names in ch unless ch is nil),
// records the new versions and hands the difference to the caches. Callers hold
// updateMu.
func (s *Server) update(res *envoy.Resources, ch *envoy.Changes) (UpdateStats, error) {
	seq := s.seq + 1
	var (
		stats   UpdateStats
		changes []change
	)
	full := ch == nil
	if full {
		ch = &envoy.Changes{}
	}
	for _, d := range []struct {
		key  cacheKey
		diff func(*cacheState, uint64, *UpdateStats) (change, error)
	}{
		{keyClusters, diffFunc(res.Clusters, full, ch.Clusters)},
		{keyEndpoints, diffFunc(res.Endpoints, full, ch.Endpoints)},
		{keyRoutes, diffFunc(res.Routes, full, ch.Routes)},
		{keyEnvoyListener, diffFunc(res.Listeners, full, ch.Listeners)},
		{keyGRPCListener, diffFunc(res.APIListeners, full, ch.APIListeners)},
		{keyActivatorEDS, diffFunc(res.ActivatorEndpoints, full, ch.ActivatorEndpoints)},
	} {
		c, err := d.diff(s.caches[d.key], seq, &stats)
		if err != nil {
			return UpdateStats{}, err
		}
		if c.put != nil || c.same != nil || c.deleted != nil {
			changes = append(changes, c)
		}
	}
	if len(changes) == 0 {
		return stats, nil
	}

	// Record the new versions before the caches can send them, so that the ACK
	// tracker finds every version a client may receive.
	s.mu.Lock()
	if stats.Changed+stats.Deleted > 0 {
		s.seq = seq
	}
	for _, c := range changes {
		for name, r := range c.same {
			// A fresh entry rather than a write to the old one: readers may hold it.
			old := c.cs.entries[name]
			c.cs.entries[name] = &entry{res: r, version: old.version, seq: old.seq}
		}
		for name, e := range c.put {
			c.cs.entries[name] = e
		}
		for _, name := range c.deleted {
			delete(c.cs.entries, name)
			c.cs.enc.forget(name)
		}
	}
	s.mu.Unlock()

	var errs []error
	for _, c := range changes {
		if len(c.put) == 0 && len(c.deleted) == 0 {
			continue
		}
		put := make(map[string]types.Resource, len(c.put))
		for name, e := range c.put {
			put[name] = e.res
			if w := c.wire[name]; w != nil {
				put[name] = w
			}
		}
		if err := c.cs.cache.UpdateResources(put, c.deleted); err != nil {
			errs = append(errs, fmt.Errorf("xds: update %s: %w", c.cs.key, err))
		}
		s.metrics.resources.WithLabelValues(string(c.cs.key)).Set(float64(len(c.cs.entries)))
	}
	s.metrics.updateBytes.Add(float64(stats.Bytes))
	s.nodes.notify()
	if stats.Changed+stats.Deleted > 0 {
		s.log.Debug("xds resources updated", "changed", stats.Changed, "deleted", stats.Deleted, "bytes", stats.Bytes)
	}
	return stats, errors.Join(errs...)
}

// change is the difference between one cache and its desired content.
type change struct {
	cs   *cacheState
	put  map[string]*entry
	same map[string]types.Resource // equal content, new pointer: remembered so the next Update skips it by identity
	// wire is, for some of put, what the LinearCache gets instead of the
	// resource: equal content, cheaper to encode (see vhostEncoder).
	wire    map[string]types.Resource
	deleted []string
}

// diffFunc diffs a typed map without copying it into a map of interfaces, which
// would cost an allocation per resource on every Update. With full it diffs
// every name of want and of the cache; otherwise only names.
func diffFunc[T types.Resource](want map[string]T, full bool, names []string) func(*cacheState, uint64, *UpdateStats) (change, error) {
	return func(cs *cacheState, seq uint64, stats *UpdateStats) (change, error) {
		c := change{cs: cs}
		// Reading entries without Server.mu is safe: Update is their only
		// writer and holds updateMu.
		if !full {
			var gone map[string]bool // a name listed twice is deleted once
			for _, name := range names {
				r, ok := want[name]
				if !ok {
					if cs.entries[name] != nil && !gone[name] {
						if gone == nil {
							gone = make(map[string]bool)
						}
						gone[name] = true
						c.deleted = append(c.deleted, name)
					}
					continue
				}
				if err := diffOne(cs, &c, name, r, seq, stats); err != nil {
					return change{}, err
				}
			}
			stats.Deleted += len(c.deleted)
			return c, nil
		}
		present := 0 // desired names already in the cache
		for name, r := range want {
			if cs.entries[name] != nil {
				present++
			}
			if err := diffOne(cs, &c, name, r, seq, stats); err != nil {
				return change{}, err
			}
		}
		// Something was removed only if not every cached name is still wanted.
		if present < len(cs.entries) {
			for name := range cs.entries {
				if _, ok := want[name]; !ok {
					c.deleted = append(c.deleted, name)
				}
			}
		}
		stats.Deleted += len(c.deleted)
		return c, nil
	}
}

// diffOne compares one desired resource with the cache's and records it in c as
// put (new content), same (new pointer, same content) or nothing. A name seen
// twice is diffed once.
func diffOne[T types.Resource](cs *cacheState, c *change, name string, r T, seq uint64, stats *UpdateStats) error {
	old := cs.entries[name]
	// The fast path: the translator memoises, so nearly every resource is the
	// very pointer of last time.
	if old != nil && old.res == types.Resource(r) {
		return nil
	}
	if _, done := c.put[name]; done {
		return nil
	}
	if _, done := c.same[name]; done {
		return nil
	}
	if !r.ProtoReflect().IsValid() {
		return fmt.Errorf("xds: update: %s %q is nil", cs.key, name)
	}
	// The ACK tracker reads names out of encoded resources, so the key must be
	// the resource's own name.
	if got := cache.GetResourceName(r); got != name {
		return fmt.Errorf("xds: update: %s %q is keyed as %q", cs.key, got, name)
	}
	// Encoding is needed anyway for a changed resource (its version and size),
	// and the version is the hash of the deterministic encoding, so equal
	// versions mean equal content: no separate proto.Equal walk, which on the
	// 12 MB gateway route configuration costs as much as encoding it.
	b, wire, encoded, err := cs.enc.encode(name, r)
	if err == nil && !encoded {
		b, err = cache.MarshalResource(r)
	}
	if err != nil {
		return fmt.Errorf("xds: update: encoding %s %q: %w", cs.key, name, err)
	}
	version := rawVersion(b)
	if old != nil && old.version == version {
		if c.same == nil {
			c.same = make(map[string]types.Resource)
		}
		c.same[name] = r
		return nil
	}
	if c.put == nil {
		c.put = make(map[string]*entry)
	}
	c.put[name] = &entry{res: r, version: version, seq: seq}
	if wire != nil {
		if c.wire == nil {
			c.wire = make(map[string]types.Resource)
		}
		c.wire[name] = wire
	}
	stats.Changed++
	stats.Bytes += int64(len(b))
	return nil
}

// WantedHosts returns the names gRPC clients subscribe to over LDS: the hosts whose API listener
// (and the route configuration it names) they want. gRPC clients never subscribe by wildcard, so
// this is every host worth building for them; the caller builds those on demand and leaves the
// rest out (at 10,000 services that is 40,000 resources nobody asked for). The map is the
// caller's.
func (s *Server) WantedHosts() map[string]bool {
	hosts, _ := s.wanted(false)
	return hosts
}

// WantedSnapshot is WantedHosts for the one builder of what gRPC clients want (the control-plane
// loop), with the snapshot's generation to hand to WantedServed once the hosts are pushed.
// Its first call turns on building on demand: from then on a request that subscribes a gRPC
// client to a newly wanted host is held (at most a few seconds) until a WantedServed covers it,
// so that its reply carries the host's API listener. That matters to a client reconnecting after
// a restart: answered before its listener is built, it would be told the listener is gone.
func (s *Server) WantedSnapshot() (hosts map[string]bool, gen uint64) { return s.wanted(true) }

func (s *Server) wanted(builder bool) (map[string]bool, uint64) {
	t := s.nodes
	t.mu.Lock()
	defer t.mu.Unlock()
	t.onDemand = t.onDemand || builder
	out := make(map[string]bool, len(t.wanted))
	for name := range t.wanted {
		out[name] = true
	}
	return out, t.wantedGen
}

// WantedServed says the hosts of the WantedSnapshot of generation gen are in the caches (or are
// no hosts): requests held for them proceed.
func (s *Server) WantedServed(gen uint64) {
	t := s.nodes
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen > t.servedGen {
		t.servedGen = gen
		close(t.servedCh)
		t.servedCh = make(chan struct{})
	}
}

// WantedChanges is signalled (coalescing: one pending signal covers any number of changes)
// when a name enters or leaves WantedHosts. Read WantedHosts after receiving from it.
func (s *Server) WantedChanges() <-chan struct{} { return s.nodes.wantedCh }

// Version returns the current version of a resource as served to nodes of the
// given kind (the kind matters for listeners only), and whether it exists.
func (s *Server) Version(typeURL, name string, kind wire.NodeKind) (string, bool) {
	key, ok := keyFor(typeURL, kind)
	if !ok {
		return "", false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.caches[key].entries[name]
	if e == nil {
		return "", false
	}
	return hexVersion(e.version), true
}
