package xds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-dev/sluice/wire"
)

const (
	typeCluster  = resource.ClusterType
	typeEndpoint = resource.EndpointType
	typeRoute    = resource.RouteType
	typeListener = resource.ListenerType
)

// ErrNotFound is returned by WaitAcked for a resource that is not (or no longer)
// in the caches.
var ErrNotFound = errors.New("resource not found")

// maxPending bounds the unanswered responses remembered per stream and type.
// go-control-plane sends the next response of a type only after the client's
// next request, so more than one or two means a misbehaving client.
const maxPending = 16

// tracker is the go-control-plane callbacks: it follows every stream's node,
// subscriptions, responses and ACKs/NACKs. The callbacks of one stream run on
// that stream's goroutine, in order, so a response is always recorded before
// the request that answers it.
type tracker struct {
	s *Server

	mu      sync.Mutex
	streams map[streamKey]*streamState
	changed chan struct{} // closed and replaced whenever an ACK, subscription, stream or resource changes

	// wanted counts, per LDS name, the gRPC streams subscribed to it: the hosts whose API
	// listener and route configuration are worth building (see Server.WantedHosts).
	wanted map[string]wantedName
	// wantedGen counts names entering wanted; wantedCh is signalled (buffered, coalescing)
	// when a name enters or leaves it.
	wantedGen uint64
	wantedCh  chan struct{}
	// onDemand is set once a builder reads the wanted hosts (Server.WantedSnapshot): from then
	// on a request that subscribes a gRPC stream to a newly wanted name is held until the
	// builder served a snapshot at least that recent (servedGen, Server.WantedServed), so that
	// the reply carries the resource rather than its absence. servedCh is closed and replaced
	// whenever servedGen moves.
	onDemand  bool
	servedGen uint64
	servedCh  chan struct{}
}

type wantedName struct {
	streams int    // gRPC streams subscribed to it
	since   uint64 // wantedGen when it became wanted
}

// servedWait bounds how long a request waits for the builder (awaitServed): a builder whose
// pass failed must not hold clients forever; they then get what the caches hold, as they
// would without building on demand.
const servedWait = 10 * time.Second

// streamKey tells streams apart: go-control-plane numbers SotW and delta
// streams with separate counters.
type streamKey struct {
	delta bool
	id    int64
}

func (k streamKey) protocol() string {
	if k.delta {
		return "delta"
	}
	return "sotw"
}

type streamState struct {
	key         streamKey
	defaultType string     // the service's type on non-ADS streams, "" on ADS
	node        *core.Node // nil until the first request
	kind        wire.NodeKind
	opened      time.Time
	types       map[string]*typeState
	lastNACK    *NACK
	ctx         context.Context // the stream's: a held request (awaitServed) ends with it
}

type typeState struct {
	sub      stream.Subscription // mirrors go-control-plane's subscription
	started  bool
	lastSent string // nonce of the last response, to mirror the stale-nonce rule
	pending  []sentResponse
	acked    map[string]ackedVersion
	// counted are the names this stream adds to tracker.wanted (LDS on gRPC streams only).
	counted map[string]struct{}
}

type sentResponse struct {
	nonce     string
	version   string // SotW version_info
	resources map[string]ackedVersion
	removed   []string
	full      bool // a SotW CDS/LDS response: resources missing from it are gone
}

type ackedVersion struct {
	// version is the entry's raw version when seq is not 0, else the version as the
	// client had it (hex, or whatever it sent).
	version string
	seq     uint64 // 0 when the version was no longer current: older than anything current
}

// is reports whether a is the raw version raw.
func (a ackedVersion) is(raw string) bool {
	if a.seq > 0 {
		return a.version == raw
	}
	return versionIs(a.version, raw)
}

// String is the version as on the wire.
func (a ackedVersion) String() string {
	if a.seq > 0 {
		return hexVersion(a.version)
	}
	return a.version
}

// NACK describes the last response a node rejected.
type NACK struct {
	TypeURL   string    `json:"type_url"`
	Nonce     string    `json:"nonce"`
	Version   string    `json:"version,omitempty"` // the rejected SotW version_info
	Resources []string  `json:"resources"`
	Message   string    `json:"message"`
	Time      time.Time `json:"time"`
}

func newTracker(s *Server) *tracker {
	return &tracker{s: s, streams: make(map[streamKey]*streamState), changed: make(chan struct{}),
		wanted: make(map[string]wantedName), wantedCh: make(chan struct{}, 1), servedCh: make(chan struct{})}
}

// countWantedLocked brings the stream's share of t.wanted in line with its subscription to
// typeURL, and signals wantedCh when a name gained its first or lost its last subscriber. Only
// LDS on gRPC streams counts: gRPC clients ask LDS for exactly the host they dial, so that names
// every host worth building an API listener for. A wildcard LDS subscription names none: gRPC
// never makes one, and building every host for it would undo the point of building on demand.
// An activator's RDS names count too: it asks for the per-host route configuration of a host a
// gRPC client sent it a request for, and must get it even once that client has gone.
// It returns the wantedGen a builder must have served for every name the stream just added
// (0: none added). Callers hold t.mu.
func (t *tracker) countWantedLocked(st *streamState, ts *typeState, typeURL string) (need uint64) {
	counts := typeURL == typeListener && st.kind == wire.NodeGRPC || typeURL == resource.RouteType && st.kind == wire.NodeActivator
	if !counts {
		return 0
	}
	var now map[string]struct{}
	if ts.started && !ts.sub.IsWildcard() {
		now = ts.sub.SubscribedResources()
	}
	changed := false
	for name := range now {
		if _, ok := ts.counted[name]; ok || name == "*" {
			continue
		}
		if ts.counted == nil {
			ts.counted = make(map[string]struct{})
		}
		ts.counted[name] = struct{}{}
		w := t.wanted[name]
		if w.streams == 0 {
			t.wantedGen++
			w.since = t.wantedGen
			changed = true
		}
		w.streams++
		t.wanted[name] = w
		need = max(need, w.since)
	}
	for name := range ts.counted {
		if _, ok := now[name]; ok {
			continue
		}
		delete(ts.counted, name)
		w := t.wanted[name]
		if w.streams--; w.streams <= 0 {
			delete(t.wanted, name)
			changed = true
		} else {
			t.wanted[name] = w
		}
	}
	if changed {
		select {
		case t.wantedCh <- struct{}{}:
		default: // a signal is pending already: the reader will see this change too
		}
	}
	return need
}

// awaitServed holds a request that subscribed a gRPC stream to newly wanted names until the
// builder served them (see tracker.onDemand), the stream ends, or servedWait passed. Without
// it a SotW client reconnecting after a restart, which sends the old server's version, is
// answered at once with an LDS reply that lacks its listener, which gRPC takes for a deletion
// and fails its RPCs; a delta client's initial_resource_versions likewise get it "removed".
func (t *tracker) awaitServed(ctx context.Context, need uint64) {
	if need == 0 {
		return
	}
	timer := time.NewTimer(servedWait)
	defer timer.Stop()
	for {
		t.mu.Lock()
		done, ch := !t.onDemand || t.servedGen >= need, t.servedCh
		t.mu.Unlock()
		if done {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-timer.C:
			t.s.log.Warn("xds: gRPC client's listeners were not built in time; answering with what there is")
			return
		}
	}
}

// notifyLocked wakes WaitAcked callers. Callers hold t.mu.
func (t *tracker) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *tracker) notify() {
	t.mu.Lock()
	t.notifyLocked()
	t.mu.Unlock()
}

func (t *tracker) open(ctx context.Context, key streamKey, typeURL string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams[key] = &streamState{key: key, defaultType: typeURL, opened: time.Now(), types: make(map[string]*typeState), ctx: ctx}
}

func (t *tracker) closed(key streamKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[key]
	if st == nil {
		return
	}
	delete(t.streams, key)
	// Its subscriptions end with it.
	for typeURL, ts := range st.types {
		ts.started = false
		t.countWantedLocked(st, ts, typeURL)
	}
	if st.node != nil {
		t.s.metrics.streams.WithLabelValues(string(st.kind), key.protocol()).Dec()
	}
	// A node that is gone no longer holds up WaitAcked.
	t.notifyLocked()
}

// identify records the node of a stream from its first request that has one.
func (t *tracker) identify(st *streamState, node *core.Node) {
	if st.node != nil || node == nil {
		return
	}
	st.node = node
	st.kind = nodeKind(node)
	t.s.metrics.streams.WithLabelValues(string(st.kind), st.key.protocol()).Inc()
	t.s.log.Debug("xds node connected", "node", node.GetId(), "node_kind", st.kind,
		"user_agent", node.GetUserAgentName(), "protocol", st.key.protocol(), "stream", st.key.id)
}

func (st *streamState) typeState(typeURL string) *typeState {
	ts := st.types[typeURL]
	if ts == nil {
		ts = &typeState{acked: make(map[string]ackedVersion)}
		st.types[typeURL] = ts
	}
	return ts
}

func unsupported(typeURL string, kind wire.NodeKind) error {
	if kind == wire.NodeActivator {
		return status.Errorf(codes.InvalidArgument,
			"sluice serves activator nodes only load assignments and route configurations; unsupported type URL %q", typeURL)
	}
	return status.Errorf(codes.InvalidArgument,
		"sluice serves only clusters, endpoints, listeners and route configurations; unsupported type URL %q", typeURL)
}

// answer handles the nonce of a request: an ACK or a NACK of an earlier
// response. It returns the response answered, nil if it is not known (e.g. a
// nonce from before a reconnect).
func (t *tracker) answer(st *streamState, ts *typeState, typeURL, nonce string, errDetail *rpcstatus.Status, reqNames []string) *sentResponse {
	i := slices.IndexFunc(ts.pending, func(r sentResponse) bool { return r.nonce == nonce })
	var resp *sentResponse
	if i >= 0 {
		resp = &ts.pending[i]
		// Clients answer responses in order, so earlier ones were answered
		// already or superseded.
		ts.pending = ts.pending[i+1:]
	}
	if errDetail != nil {
		n := &NACK{TypeURL: typeURL, Nonce: nonce, Message: errDetail.GetMessage(), Time: time.Now()}
		if resp != nil {
			n.Version = resp.version
			n.Resources = sortedKeys(resp.resources)
		} else {
			n.Resources = slices.Clone(reqNames)
		}
		st.lastNACK = n
		t.s.metrics.nacks.WithLabelValues(typeLabel(typeURL), string(st.kind)).Inc()
		t.s.log.Warn("xds client rejected configuration",
			"node", st.node.GetId(), "node_kind", st.kind, "protocol", st.key.protocol(),
			"type", typeURL, "resources", n.Resources, "version", n.Version, "nonce", nonce,
			"error", n.Message)
		return resp
	}
	if resp == nil {
		return nil
	}
	if resp.full {
		clear(ts.acked)
	}
	for name, v := range resp.resources {
		ts.acked[name] = v
	}
	for _, name := range resp.removed {
		delete(ts.acked, name)
	}
	return resp
}

// forgetUnsubscribed drops ACKs of resources the stream no longer watches.
func (ts *typeState) forgetUnsubscribed() {
	if ts.sub.IsWildcard() {
		return
	}
	subscribed := ts.sub.SubscribedResources()
	for name := range ts.acked {
		if _, ok := subscribed[name]; !ok {
			delete(ts.acked, name)
		}
	}
}

func (t *tracker) OnStreamOpen(ctx context.Context, id int64, typeURL string) error {
	t.open(ctx, streamKey{id: id}, typeURL)
	return nil
}

func (t *tracker) OnStreamClosed(id int64, _ *core.Node) { t.closed(streamKey{id: id}) }

func (t *tracker) OnDeltaStreamOpen(ctx context.Context, id int64, typeURL string) error {
	t.open(ctx, streamKey{delta: true, id: id}, typeURL)
	return nil
}

func (t *tracker) OnDeltaStreamClosed(id int64, _ *core.Node) {
	t.closed(streamKey{delta: true, id: id})
}

func (t *tracker) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	ctx, need, err := t.streamRequest(id, req)
	// go-control-plane creates the watch after this returns: holding the request here is what
	// makes its reply carry the newly wanted names.
	t.awaitServed(ctx, need)
	return err
}

func (t *tracker) streamRequest(id int64, req *discovery.DiscoveryRequest) (context.Context, uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, typeURL, _, ts, err := t.requestLocked(streamKey{id: id}, req.GetNode(), req.GetTypeUrl())
	if st == nil || err != nil {
		return nil, 0, err
	}
	nonce := req.GetResponseNonce()
	if nonce != "" {
		resp := t.answer(st, ts, typeURL, nonce, req.GetErrorDetail(), req.GetResourceNames())
		// A client that NACKs its first response reports the version it has,
		// which is none. LinearCache answers an empty version with everything
		// and, for CDS and LDS, that is the rejected set again: the client
		// would NACK it forever. Naming the rejected version instead makes the
		// cache wait for a real change, which is what a NACK calls for.
		if req.GetErrorDetail() != nil && req.GetVersionInfo() == "" && resp != nil {
			req.VersionInfo = resp.version
		}
	}
	// go-control-plane ignores a request whose nonce is not the latest
	// response's; so must the mirror.
	if ts.lastSent != "" && nonce != ts.lastSent {
		return nil, 0, nil
	}
	if !ts.started {
		ts.sub = stream.NewSotwSubscription(req.GetResourceNames(), true)
		ts.started = true
	} else {
		ts.sub.SetResourceSubscription(req.GetResourceNames())
	}
	return t.subscribedLocked(st, ts, typeURL)
}

// requestLocked is what every request starts with: find the stream (nil if it is gone), learn
// its node, and resolve the request's type (a delta or ADS request may leave it to the
// stream's) to its cache and its state on the stream. Callers hold t.mu.
func (t *tracker) requestLocked(key streamKey, node *core.Node, typeURL string) (*streamState, string, cacheKey, *typeState, error) {
	st := t.streams[key]
	if st == nil {
		return nil, "", "", nil, nil
	}
	t.identify(st, node)
	if typeURL == "" {
		typeURL = st.defaultType
	}
	ck, ok := keyFor(typeURL, st.kind)
	if !ok {
		return nil, "", "", nil, unsupported(typeURL, st.kind)
	}
	return st, typeURL, ck, st.typeState(typeURL), nil
}

// subscribedLocked is what every request ends with, once the stream's subscription to
// typeURL is up to date: count the names it wants, wake ACK waiters. Callers hold t.mu.
func (t *tracker) subscribedLocked(st *streamState, ts *typeState, typeURL string) (context.Context, uint64, error) {
	ts.forgetUnsubscribed()
	need := t.countWantedLocked(st, ts, typeURL)
	t.notifyLocked()
	return st.ctx, need, nil
}

func (t *tracker) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	typeURL := resp.GetTypeUrl()
	// SotW responses carry no per-resource versions or names: derive both from
	// the encoded resource, outside the lock since hashing is the costly part.
	type item struct{ name, version string }
	items := make([]item, 0, len(resp.GetResources()))
	for _, a := range resp.GetResources() {
		items = append(items, item{version: cache.HashResource(a.GetValue())})
		name, err := encodedName(a.GetValue())
		if err != nil {
			t.s.log.Error("xds: cannot track an ACK", "type", typeURL, "error", err)
			continue
		}
		items[len(items)-1].name = name
	}
	size := proto.Size(resp)

	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[streamKey{id: id}]
	if st == nil {
		return
	}
	key, ok := keyFor(typeURL, st.kind)
	if !ok {
		return
	}
	sent := sentResponse{
		nonce:     resp.GetNonce(),
		version:   resp.GetVersionInfo(),
		resources: make(map[string]ackedVersion, len(items)),
		full:      cache.ResourceRequiresFullStateInSotw(typeURL),
	}
	for _, it := range items {
		if it.name != "" {
			sent.resources[it.name] = t.s.ackedVersion(key, it.name, it.version)
		}
	}
	t.sent(st, typeURL, sent, size)
}

func (t *tracker) sent(st *streamState, typeURL string, r sentResponse, size int) {
	ts := st.typeState(typeURL)
	ts.lastSent = r.nonce
	if len(ts.pending) >= maxPending {
		ts.pending = slices.Delete(ts.pending, 0, 1)
	}
	ts.pending = append(ts.pending, r)
	t.s.metrics.sentBytes.WithLabelValues(typeLabel(typeURL), string(st.kind)).Add(float64(size))
}

func (t *tracker) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	ctx, need, err := t.deltaRequest(id, req)
	t.awaitServed(ctx, need) // as in OnStreamRequest
	return err
}

func (t *tracker) deltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) (context.Context, uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, typeURL, key, ts, err := t.requestLocked(streamKey{delta: true, id: id}, req.GetNode(), req.GetTypeUrl())
	if st == nil || err != nil {
		return nil, 0, err
	}
	if nonce := req.GetResponseNonce(); nonce != "" {
		t.answer(st, ts, typeURL, nonce, req.GetErrorDetail(), req.GetResourceNamesSubscribe())
	}
	if !ts.started {
		// No initial versions here: go-control-plane keeps that very map as its
		// own state, and the mirror must not share it.
		ts.sub = stream.NewDeltaSubscription(req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe(), nil, true)
		ts.started = true
		// What a reconnecting client already has counts as ACKed: the server
		// will not send it again.
		for name, v := range req.GetInitialResourceVersions() {
			ts.acked[name] = t.s.ackedVersion(key, name, v)
		}
	} else {
		ts.sub.UpdateResourceSubscriptions(req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe())
		for _, name := range req.GetResourceNamesUnsubscribe() {
			delete(ts.acked, name)
		}
	}
	return t.subscribedLocked(st, ts, typeURL)
}

func (t *tracker) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	size := proto.Size(resp)
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[streamKey{delta: true, id: id}]
	if st == nil {
		return
	}
	typeURL := resp.GetTypeUrl()
	key, ok := keyFor(typeURL, st.kind)
	if !ok {
		return
	}
	sent := sentResponse{
		nonce:     resp.GetNonce(),
		version:   resp.GetSystemVersionInfo(),
		resources: make(map[string]ackedVersion, len(resp.GetResources())),
		removed:   resp.GetRemovedResources(),
	}
	for _, r := range resp.GetResources() {
		sent.resources[r.GetName()] = t.s.ackedVersion(key, r.GetName(), r.GetVersion())
	}
	t.sent(st, typeURL, sent, size)
}

// OnFetchRequest refuses REST fetches: LinearCache cannot answer them and
// sluice does not register the REST endpoints.
func (t *tracker) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error {
	return status.Error(codes.Unimplemented, "sluice serves xDS over gRPC streams only")
}

func (t *tracker) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

// ackedVersion pairs a version with its order among the resource's versions:
// the current one's sequence, or 0 for anything else (older, since a version
// becomes current before any client can be sent it).
func (s *Server) ackedVersion(key cacheKey, name, version string) ackedVersion {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.caches[key].entries[name]; e != nil && versionIs(version, e.version) {
		// The entry's string, not the caller's equal one: every stream keeps
		// one per resource it was sent, and sharing makes that a pointer.
		return ackedVersion{version: e.version, seq: e.seq}
	}
	return ackedVersion{version: version}
}

// encodedName reads field 1 of an encoded resource: the name of a Cluster,
// Listener or RouteConfiguration and the cluster_name of a
// ClusterLoadAssignment. Deterministic encoding writes it first, so this is
// far cheaper than decoding the resource.
func encodedName(b []byte) (string, error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", fmt.Errorf("reading resource name: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", fmt.Errorf("reading resource name: %w", protowire.ParseError(n))
			}
			return string(v), nil
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", fmt.Errorf("reading resource name: %w", protowire.ParseError(n))
		}
		b = b[n:]
	}
	return "", errors.New("reading resource name: resource has no name")
}

// WaitAcked returns when every connected node subscribed to the resource has
// ACKed version or a later one, or has gone; or with ctx's error. A version
// that is no longer current is treated as superseded by the current one, which
// is then waited for. The resource must be in the caches (ErrNotFound).
//
// It is the seam for changes that must be applied by the data plane before the
// caller proceeds: e.g. stopping an instance only after its removal from a
// ClusterLoadAssignment was ACKed.
func (s *Server) WaitAcked(ctx context.Context, typeURL, name, version string) error {
	// The goal is fixed at the first look so that later changes to the
	// resource do not make the wait longer than asked.
	goals := make(map[cacheKey]uint64, 2)
	for {
		targets, err := s.ackTargets(typeURL, name)
		if err != nil {
			return fmt.Errorf("xds: waiting for ACKs of %s %q: %w", typeURL, name, err)
		}
		for k, tg := range targets {
			if g, ok := goals[k]; ok {
				tg.seq = g
				targets[k] = tg
			} else {
				goals[k] = tg.seq
			}
		}
		changed, waiting := s.nodes.unacked(typeURL, name, targets)
		if len(waiting) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("xds: waiting for %s %q version %s to be ACKed by %v: %w", typeURL, name, version, waiting, ctx.Err())
		case <-changed:
		}
	}
}

type ackTarget struct {
	version string // current, raw (entry.version): ACKing it is always enough
	seq     uint64 // ACKing a version at least this recent is enough
}

func (s *Server) ackTargets(typeURL, name string) (map[cacheKey]ackTarget, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	targets := make(map[cacheKey]ackTarget, 2)
	served := false
	for _, kind := range wire.NodeKinds {
		key, ok := keyFor(typeURL, kind)
		if !ok {
			continue
		}
		served = true
		if e := s.caches[key].entries[name]; e != nil {
			targets[key] = ackTarget{version: e.version, seq: e.seq}
		}
	}
	if !served {
		return nil, unsupported(typeURL, wire.NodeEnvoy)
	}
	if len(targets) == 0 {
		return nil, ErrNotFound
	}
	return targets, nil
}

// unacked lists the nodes that still have to ACK, and the channel that is
// closed when that may have changed.
func (t *tracker) unacked(typeURL, name string, targets map[cacheKey]ackTarget) (<-chan struct{}, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var waiting []string
	for _, st := range t.streams {
		if st.node == nil {
			continue
		}
		key, _ := keyFor(typeURL, st.kind)
		tg, ok := targets[key]
		if !ok {
			continue // not served to this kind of node
		}
		ts := st.types[typeURL]
		if ts == nil || !ts.started {
			continue
		}
		if _, ok := ts.sub.SubscribedResources()[name]; !ok && !ts.sub.IsWildcard() {
			continue
		}
		if a, ok := ts.acked[name]; ok && (a.is(tg.version) || a.seq >= tg.seq && a.seq > 0) {
			continue
		}
		waiting = append(waiting, st.node.GetId())
	}
	return t.changed, waiting
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
