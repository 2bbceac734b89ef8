// Package envoy translates the routing Table into Envoy v3 resources: clusters and load
// assignments per revision, route configurations for Envoy's listeners and for each gRPC
// client's host, the Envoy listeners and the gRPC API listeners. It is pure: no I/O, and the
// same Table always gives equal resources.
package envoy

import (
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/sluice-dev/sluice/routing"
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
}

// Translator turns Tables into Resources, remembering what it built last time so that an
// unchanged virtual host or backend gives the very same proto pointers: the xds layer compares
// pointers to skip unchanged resources without marshalling them.
//
// A Translator is not safe for concurrent use; it has one owner (the control-plane loop).
type Translator struct {
	listeners map[string]*listenerv3.Listener
	hosts     map[hostKey]*hostEntry
	backends  map[string]*backendEntry
	// Last route configuration per Envoy listener and the virtual hosts it was built from.
	gateway [2]gatewayRoutes
}

type hostKey struct {
	vis  routing.Visibility
	name string
}

type hostEntry struct {
	ir       routing.VirtualHost // a private deep copy: the caller may reuse its Table
	vhost    *routev3.VirtualHost
	grpcRC   *routev3.RouteConfiguration
	listener *listenerv3.Listener
}

type backendEntry struct {
	ir      routing.Backend // a private deep copy
	cluster *clusterv3.Cluster
	cla     *endpointv3.ClusterLoadAssignment
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

var gatewayNames = [2]string{ExternalListener, InternalListener}

// Translate returns the resources for tab. Memo entries for hosts and backends that are gone
// from tab are dropped, so memory follows the current Table.
func (t *Translator) Translate(tab *routing.Table) *Resources {
	res := &Resources{
		Clusters:     make(map[string]*clusterv3.Cluster, len(tab.Backends)),
		Endpoints:    make(map[string]*endpointv3.ClusterLoadAssignment, len(tab.Backends)),
		Routes:       make(map[string]*routev3.RouteConfiguration, len(tab.Hosts)+2),
		Listeners:    t.listeners,
		APIListeners: make(map[string]*listenerv3.Listener, len(tab.Hosts)),
	}

	backends := make(map[string]*backendEntry, len(tab.Backends))
	for i := range tab.Backends {
		b := &tab.Backends[i]
		e := t.backend(b)
		backends[b.Cluster] = e
		res.Clusters[b.Cluster] = e.cluster
		res.Endpoints[b.Cluster] = e.cla
	}
	t.backends = backends

	hosts := make(map[hostKey]*hostEntry, len(tab.Hosts))
	var vhosts [2][]*routev3.VirtualHost
	for i := range tab.Hosts {
		vh := &tab.Hosts[i]
		k := hostKey{vh.Visibility, vh.Name}
		e := t.host(k, vh)
		hosts[k] = e
		g := gatewayIndex(vh.Visibility)
		vhosts[g] = append(vhosts[g], e.vhost)
		// A name can only repeat across visibilities (the Table keeps names unique within
		// one); gRPC clients have no listener to choose by, so the external host wins.
		if _, taken := res.APIListeners[vh.Name]; !taken || vh.Visibility != routing.ClusterLocal {
			res.APIListeners[vh.Name] = e.listener
			res.Routes[vh.Name] = e.grpcRC
		}
	}
	t.hosts = hosts

	for g, name := range gatewayNames {
		last := &t.gateway[g]
		if last.rc == nil || !slices.Equal(last.vhosts, vhosts[g]) {
			last.vhosts = vhosts[g]
			last.rc = buildRouteConfiguration(name, vhosts[g])
		}
		res.Routes[name] = last.rc
	}
	return res
}

func (t *Translator) backend(b *routing.Backend) *backendEntry {
	old := t.backends[b.Cluster]
	if old != nil && equalBackend(&old.ir, b) {
		return old
	}
	e := &backendEntry{ir: cloneBackend(b)}
	// The cluster and its load assignment change independently: endpoints move on every
	// scale event, the protocol practically never.
	if old != nil && old.ir.Protocol == b.Protocol {
		e.cluster = old.cluster
	} else {
		e.cluster = buildCluster(b.Cluster, b.Protocol)
	}
	if old != nil && slices.Equal(old.ir.Endpoints, b.Endpoints) {
		e.cla = old.cla
	} else {
		e.cla = buildLoadAssignment(b.Cluster, b.Endpoints)
	}
	return e
}

func (t *Translator) host(k hostKey, vh *routing.VirtualHost) *hostEntry {
	old := t.hosts[k]
	if old != nil && equalVirtualHost(&old.ir, vh) {
		return old
	}
	e := &hostEntry{ir: cloneVirtualHost(vh), vhost: buildVirtualHost(vh)}
	e.grpcRC = buildRouteConfiguration(vh.Name, []*routev3.VirtualHost{e.vhost})
	// The API listener depends on the host name alone, which is part of the key.
	if old != nil {
		e.listener = old.listener
	} else {
		e.listener = buildAPIListener(vh.Name)
	}
	return e
}
