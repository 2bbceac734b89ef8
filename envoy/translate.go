// Package envoy translates the routing Table into Envoy v3 resources: clusters and load
// assignments per revision, route configurations for Envoy's listeners and for each gRPC
// client's host, the Envoy listeners and the gRPC API listeners. It is pure: no I/O, and the
// same Table always gives equal resources.
package envoy

import (
	"maps"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/wire"
)

// Names of the Envoy gateway listeners and of their route configurations.
const (
	ExternalListener = "external"
	InternalListener = "internal"
)

// Options say where the Envoy gateway listeners bind.
type Options struct {
	ExternalAddress string // default 0.0.0.0
	ExternalPort    uint32 // default 8080
	InternalAddress string // default 0.0.0.0
	InternalPort    uint32 // default 8081
}

func (o Options) withDefaults() Options {
	if o.ExternalAddress == "" {
		o.ExternalAddress = "0.0.0.0"
	}
	if o.ExternalPort == 0 {
		o.ExternalPort = 8080
	}
	if o.InternalAddress == "" {
		o.InternalAddress = "0.0.0.0"
	}
	if o.InternalPort == 0 {
		o.InternalPort = 8081
	}
	return o
}

// Resources are every xDS resource for one Table, keyed by resource name. The protos are shared
// with the Translator's memo and with earlier Resources: treat them as immutable.
type Resources struct {
	Clusters  map[string]*clusterv3.Cluster
	Endpoints map[string]*endpointv3.ClusterLoadAssignment
	// Routes holds Envoy's "external" and "internal" and one per host for gRPC clients. Host
	// names always contain a dot, so they cannot collide with the listener names.
	Routes map[string]*routev3.RouteConfiguration
	// Listeners are for Envoy nodes: "external" and "internal".
	Listeners map[string]*listenerv3.Listener
	// APIListeners are for gRPC nodes, one per host, named by the host.
	APIListeners map[string]*listenerv3.Listener
	// ActivatorEndpoints are for activators: one per scaled revision, named like its cluster,
	// listing its ready instances even while Endpoints send its traffic to the activator.
	ActivatorEndpoints map[string]*endpointv3.ClusterLoadAssignment
}

// Translator turns Tables into Resources, remembering what it built last time so that an
// unchanged virtual host or backend gives the very same proto pointers: the xds layer compares
// pointers to skip unchanged resources without marshalling them.
//
// The memo is updated in place and the previous Resources' maps are copied and patched rather
// than rebuilt, so re-translating a large Table after a small change costs lookups and
// comparisons, not allocations per resource.
//
// A Translator is not safe for concurrent use; it has one owner (the control-plane loop).
type Translator struct {
	listeners map[string]*listenerv3.Listener
	// gen counts translations; memo entries not stamped with the current one are gone from
	// the Table and get dropped.
	gen      uint64
	hosts    map[hostKey]*hostEntry
	backends map[string]*backendEntry
	// The entries in the order of the last Table. Tables are sorted, so the next one mostly
	// lists the same names in the same order: walking this alongside it finds each entry
	// without hashing (the map is the fallback after an insertion or a removal).
	hostOrder    []*hostEntry
	backendOrder []*backendEntry
	last         *Resources
	// owned says last's maps are the Translator's own, patched in place by TranslateDiff;
	// false while they are shared with the caller of Translate (see TranslateDiff).
	owned bool
	// changes are what the last call changed (LastChanges).
	changes Changes
	// Last route configuration per Envoy listener and the virtual hosts it was built from.
	gateway [2]gatewayRoutes
	// pools share route protos among equal hosts and headers among revisions (see share.go).
	pools pools
	// wanted are the hosts gRPC clients want (SetWanted); nil means every host. Only these get
	// an API listener and a per-host route configuration.
	wanted map[string]bool
	// wantedChanged are the names whose wantedness changed since the last translation, to
	// add or remove on the next one; wantedAll says every host's may have (from or to nil).
	wantedChanged []string
	wantedAll     bool
}

type hostKey struct {
	vis  routing.Visibility // normalised: External or ClusterLocal
	name string
}

type hostEntry struct {
	gen uint64
	pos int // index in hostOrder
	// ir is the Table's own value: Tables are read-only (routing.TableBuilder's Tables share
	// their slices with each other), so there is nothing to copy.
	ir     routing.VirtualHost
	routes *shared[[]routing.HTTPRoute, hostRoutes]
	vhost  *routev3.VirtualHost
	// grpcRC and listener are what gRPC clients get for the host; built on demand (grpcFor),
	// only while the host is wanted, and dropped when it no longer is.
	grpcRC   *routev3.RouteConfiguration
	listener *listenerv3.Listener
}

type backendEntry struct {
	gen     uint64
	pos     int             // index in backendOrder
	ir      routing.Backend // the Table's own value, like hostEntry.ir
	cluster *clusterv3.Cluster
	cla     *endpointv3.ClusterLoadAssignment
	// activatorCLA is the activator's load assignment; nil unless the revision is scaled.
	activatorCLA *endpointv3.ClusterLoadAssignment
	// headers are the split headers of every route to this revision. Sharing them keeps
	// memory proportional to revisions rather than to routes (a revision is typically the
	// target of its service's main route, a tag route and a tag host, on two listeners).
	headers []*corev3.HeaderValueOption
	ns      *shared[string, *corev3.HeaderValueOption] // headers[1], shared by the namespace
}

type gatewayRoutes struct {
	vhosts []*routev3.VirtualHost
	rc     *routev3.RouteConfiguration
}

// NewTranslator returns a Translator for gateway listeners bound as opts says.
func NewTranslator(opts Options) *Translator {
	opts = opts.withDefaults()
	return &Translator{
		listeners: map[string]*listenerv3.Listener{
			ExternalListener: buildListener(ExternalListener, opts.ExternalAddress, opts.ExternalPort),
			InternalListener: buildListener(InternalListener, opts.InternalAddress, opts.InternalPort),
		},
		hosts:    map[hostKey]*hostEntry{},
		backends: map[string]*backendEntry{},
		pools:    newPools(),
	}
}

// gatewayIndex maps a visibility to its Envoy listener. Anything that is not cluster-local is
// external, matching routing.Visibility's String.
func gatewayIndex(v routing.Visibility) int {
	if v == routing.ClusterLocal {
		return 1
	}
	return 0
}

var (
	gatewayNames = [2]string{ExternalListener, InternalListener}
	gatewayVis   = [2]routing.Visibility{routing.External, routing.ClusterLocal}
)

// Translate returns the resources for tab. Memo entries for hosts and backends that are gone
// from tab are dropped, so memory follows the current Table. The returned maps may be shared
// with earlier and later Resources: never modify them.
//
// The Translator keeps tab's hosts and backends (not copies) to compare the next Table with:
// like every routing Table, tab must not be modified afterwards.
func (t *Translator) Translate(tab *routing.Table) *Resources {
	t.gen++
	prev := t.last
	if prev == nil {
		prev = &Resources{}
	}
	res := &Resources{Listeners: t.listeners}

	// Backends first: routes take their split headers from them.
	var changedBackends []string
	backendOrder := make([]*backendEntry, len(tab.Backends))
	next := 0
	for i := range tab.Backends {
		b := &tab.Backends[i]
		var old *backendEntry
		if next < len(t.backendOrder) && t.backendOrder[next].ir.Cluster == b.Cluster {
			old = t.backendOrder[next]
		} else {
			old = t.backends[b.Cluster]
		}
		e := old
		if old == nil || !equalBackend(&old.ir, b) {
			e = t.buildBackend(old, b)
			t.backends[b.Cluster] = e
			changedBackends = append(changedBackends, b.Cluster)
		}
		if old != nil {
			next = old.pos + 1
		}
		e.gen, e.pos = t.gen, i
		backendOrder[i] = e
	}
	t.backendOrder = backendOrder
	// Every entry still in the Table is stamped now; any extra one is gone from it. (Names are
	// unique in a Table, so the counts tell without walking the whole memo.)
	if len(t.backends) != len(tab.Backends) {
		changedBackends = append(changedBackends, t.sweepBackends()...)
	}
	res.Clusters, res.Endpoints, res.ActivatorEndpoints = prev.Clusters, prev.Endpoints, prev.ActivatorEndpoints
	if len(changedBackends) > 0 || prev.Clusters == nil {
		res.Clusters = patch(prev.Clusters, changedBackends, func(name string) *clusterv3.Cluster {
			if e := t.backends[name]; e != nil {
				return e.cluster
			}
			return nil
		})
		res.Endpoints = patch(prev.Endpoints, changedBackends, func(name string) *endpointv3.ClusterLoadAssignment {
			if e := t.backends[name]; e != nil {
				return e.cla
			}
			return nil
		})
		res.ActivatorEndpoints = patch(prev.ActivatorEndpoints, changedBackends, func(name string) *endpointv3.ClusterLoadAssignment {
			if e := t.backends[name]; e != nil {
				return e.activatorCLA
			}
			return nil
		})
	}

	var changedHosts []string
	var vhosts [2][]*routev3.VirtualHost
	var gatewayChanged [2]bool
	hostOrder := make([]*hostEntry, len(tab.Hosts))
	next = 0
	for i := range tab.Hosts {
		vh := &tab.Hosts[i]
		g := gatewayIndex(vh.Visibility)
		var old *hostEntry
		if next < len(t.hostOrder) && t.hostOrder[next].ir.Name == vh.Name &&
			gatewayIndex(t.hostOrder[next].ir.Visibility) == g {
			old = t.hostOrder[next]
		} else {
			old = t.hosts[hostKey{gatewayVis[g], vh.Name}]
		}
		e := old
		if old == nil || !equalVirtualHost(&old.ir, vh) {
			e = t.buildHost(old, vh)
			t.hosts[hostKey{gatewayVis[g], vh.Name}] = e
			changedHosts = append(changedHosts, vh.Name)
			gatewayChanged[g] = true
		}
		if old != nil {
			next = old.pos + 1
		}
		e.gen, e.pos = t.gen, i
		hostOrder[i] = e
		vhosts[g] = append(vhosts[g], e.vhost)
	}
	t.hostOrder = hostOrder
	if len(t.hosts) != len(tab.Hosts) {
		for _, k := range t.sweepHosts() {
			changedHosts = append(changedHosts, k.name)
			gatewayChanged[gatewayIndex(k.vis)] = true
		}
	}

	grpcNames := t.takeWantedChanges(changedHosts, prev.APIListeners)
	res.Routes, res.APIListeners = prev.Routes, prev.APIListeners
	if len(grpcNames) > 0 || gatewayChanged != [2]bool{} || prev.Routes == nil {
		res.APIListeners = patch(prev.APIListeners, grpcNames, func(host string) *listenerv3.Listener {
			_, l := t.grpcFor(host)
			return l
		})
		res.Routes = patch(prev.Routes, grpcNames, func(host string) *routev3.RouteConfiguration {
			rc, _ := t.grpcFor(host)
			return rc
		})
		for g, name := range gatewayNames {
			last := &t.gateway[g]
			if last.rc == nil || gatewayChanged[g] && !slices.Equal(last.vhosts, vhosts[g]) {
				last.vhosts = vhosts[g]
				last.rc = buildRouteConfiguration(name, vhosts[g])
			}
			res.Routes[name] = last.rc
		}
	}
	t.last, t.owned, t.changes = res, false, Changes{Full: true}
	return res
}

// patch returns a copy of m with the given names set to get(name), or deleted when get
// returns nil. Copying a map is much cheaper than refilling it, and m itself may still be in
// use by whoever holds the previous Resources.
func patch[V any](m map[string]*V, names []string, get func(string) *V) map[string]*V {
	c := maps.Clone(m)
	if c == nil {
		c = make(map[string]*V, len(names))
	}
	for _, n := range names {
		if v := get(n); v != nil {
			c[n] = v
		} else {
			delete(c, n)
		}
	}
	return c
}

// SetWanted says which hosts gRPC clients want (xds.Server.WantedHosts): the next Translate or
// TranslateDiff builds the API listener and per-host route configuration of those only, adds the
// ones newly wanted and removes the ones no longer wanted (LastChanges names both). nil means
// every host, which is also the default. Envoy's listeners, route configurations, clusters and
// load assignments do not depend on it. wanted is copied.
func (t *Translator) SetWanted(wanted map[string]bool) {
	if (wanted == nil) != (t.wanted == nil) {
		t.wantedAll = true
	} else if wanted != nil && !t.wantedAll {
		for name := range wanted {
			if !t.wanted[name] {
				t.wantedChanged = append(t.wantedChanged, name)
			}
		}
		for name := range t.wanted {
			if !wanted[name] {
				t.wantedChanged = append(t.wantedChanged, name)
			}
		}
	}
	if wanted == nil {
		t.wanted = nil
		return
	}
	t.wanted = make(map[string]bool, len(wanted))
	for name, ok := range wanted {
		if ok {
			t.wanted[name] = true
		}
	}
}

// takeWantedChanges returns changed plus the host names whose wantedness changed since the
// last translation: the names whose gRPC resources must be looked at again. After a switch from
// or to "every host" that is every host, and every name held now (held).
func (t *Translator) takeWantedChanges(changed []string, held map[string]*listenerv3.Listener) []string {
	if t.wantedAll {
		changed = slices.Clone(changed)
		for k := range t.hosts {
			changed = append(changed, k.name)
		}
		for name := range held {
			changed = append(changed, name)
		}
		changed = dedup(changed)
	} else if len(t.wantedChanged) > 0 {
		changed = dedup(append(slices.Clone(changed), t.wantedChanged...))
	}
	t.wantedChanged, t.wantedAll = nil, false
	return changed
}

// grpcFor returns what gRPC clients get for a host name, building it on the first ask, or nils
// when the name is no host or is not wanted (whatever the host held for it is dropped then).
func (t *Translator) grpcFor(name string) (*routev3.RouteConfiguration, *listenerv3.Listener) {
	e := t.grpcHost(name)
	if e == nil {
		return nil, nil
	}
	if t.wanted != nil && !t.wanted[name] {
		for _, v := range gatewayVis {
			if e := t.hosts[hostKey{v, name}]; e != nil {
				e.grpcRC, e.listener = nil, nil
			}
		}
		return nil, nil
	}
	if e.grpcRC == nil {
		e.grpcRC = buildRouteConfiguration(name, []*routev3.VirtualHost{e.vhost})
	}
	if e.listener == nil {
		e.listener = buildAPIListener(name)
	}
	return e.grpcRC, e.listener
}

// grpcHost is the entry gRPC clients get for a host name. A name can only repeat across
// visibilities (the Table keeps names unique within one), and gRPC clients have no listener
// to choose by, so the external host wins.
func (t *Translator) grpcHost(name string) *hostEntry {
	if e := t.hosts[hostKey{routing.External, name}]; e != nil {
		return e
	}
	return t.hosts[hostKey{routing.ClusterLocal, name}]
}

func (t *Translator) sweepBackends() []string {
	var gone []string
	for name, e := range t.backends {
		if e.gen != t.gen {
			delete(t.backends, name)
			t.dropBackend(e)
			gone = append(gone, name)
		}
	}
	return gone
}

func (t *Translator) sweepHosts() []hostKey {
	var gone []hostKey
	for k, e := range t.hosts {
		if e.gen != t.gen {
			delete(t.hosts, k)
			t.dropHost(e)
			gone = append(gone, k)
		}
	}
	return gone
}

func (t *Translator) buildBackend(old *backendEntry, b *routing.Backend) *backendEntry {
	e := &backendEntry{ir: *b}
	// The cluster and its load assignment change independently: endpoints move on every
	// scale event, the protocol practically never.
	if old != nil && old.ir.Protocol == b.Protocol && (old.ir.Scaled == nil) == (b.Scaled == nil) {
		e.cluster = old.cluster
	} else {
		e.cluster = buildCluster(b.Cluster, b.Protocol, b.Scaled != nil)
	}
	if old != nil && slices.Equal(old.ir.Endpoints, b.Endpoints) {
		e.cla = old.cla
	} else {
		e.cla = buildLoadAssignment(b.Cluster, b.Endpoints)
	}
	switch {
	case b.Scaled == nil:
	case old != nil && old.ir.Protocol == b.Protocol && equalScaled(old.ir.Scaled, b.Scaled):
		e.activatorCLA = old.activatorCLA
	default:
		e.activatorCLA = buildActivatorLoadAssignment(b)
	}
	if old != nil && old.ir.Namespace == b.Namespace && old.ir.Revision == b.Revision {
		e.headers, e.ns = old.headers, old.ns // e takes over old's reference
	} else {
		e.ns = t.pools.namespaces.acquire(&b.Namespace, func() *corev3.HeaderValueOption {
			return overwriteHeader(wire.HeaderNamespace, b.Namespace)
		})
		// splitHeaders' list, with the namespace's header shared.
		e.headers = []*corev3.HeaderValueOption{overwriteHeader(wire.HeaderRevision, b.Revision), e.ns.val}
		if old != nil {
			t.dropBackend(old)
		}
	}
	return e
}

// dropBackend gives back what a backend entry that is gone or replaced holds in the pools.
func (t *Translator) dropBackend(e *backendEntry) {
	if e.ns != nil {
		t.pools.namespaces.release(e.ns)
		e.ns = nil // a second drop must not count twice
	}
}

// dropHost is dropBackend for a host entry.
func (t *Translator) dropHost(e *hostEntry) {
	if e.routes != nil {
		t.releaseRoutes(e.routes)
		e.routes = nil
	}
}

// headers returns a split's request headers, shared with its backend's when they agree (they
// always do for a Table from routing.BuildTable).
func (t *Translator) headers(s *routing.Split) []*corev3.HeaderValueOption {
	if e := t.backends[s.Cluster]; e != nil && e.ir.Namespace == s.Namespace && e.ir.Revision == s.Revision {
		return e.headers
	}
	return splitHeaders(s.Namespace, s.Revision)
}

func (t *Translator) buildHost(old *hostEntry, vh *routing.VirtualHost) *hostEntry {
	// Acquired before old is dropped, so that routes they share are not rebuilt.
	e := &hostEntry{ir: *vh, routes: t.routes(vh.Routes)}
	e.vhost = buildVirtualHost(vh.Name, e.routes.val.protos)
	// The API listener depends on the host name alone, which is part of the key, so it is
	// kept; the route configuration is built by grpcFor when gRPC clients want the host.
	if old != nil {
		e.listener = old.listener
	}
	if old != nil {
		t.dropHost(old)
	}
	return e
}
