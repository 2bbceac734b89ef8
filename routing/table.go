package routing

import (
	"slices"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/wire"
)

// Table is the resolved routing state: what every gateway and xDS client must do, with no
// reference left to resolve (no "latest", no configuration names, no tags to look up). It is the
// only thing the envoy translator reads, so it must be deterministic: the same state gives an
// equal Table, with every slice sorted.
type Table struct {
	// Hosts are the virtual hosts of every Route, sorted by Name.
	Hosts []VirtualHost
	// Backends are one per revision, sorted by Cluster. Every revision has one, referenced or not,
	// so that moving traffic onto a revision never waits for its cluster to appear.
	Backends []Backend
}

// Visibility says which listener serves a virtual host.
type Visibility int

const (
	// External hosts are served on the external listener ({name}.{namespace}.{domain}).
	External Visibility = iota
	// ClusterLocal hosts are served on the internal listener ({name}.{namespace}.svc.cluster.local).
	ClusterLocal
)

func (v Visibility) String() string {
	if v == ClusterLocal {
		return "cluster-local"
	}
	return "external"
}

// VirtualHost is one host name of a Route (its main host or a tag's host) on one listener.
type VirtualHost struct {
	// Name is the host itself ("hello.default.example.com"); unique within a Visibility.
	Name string
	// Namespace and Route name the Route this host belongs to.
	Namespace string
	Route     string
	// Tag is set on a tag's own host ("v1" for v1-hello.default.example.com).
	Tag        string
	Visibility Visibility
	// Routes are matched in order; the last one has no tag header match.
	Routes []HTTPRoute
}

// HTTPRoute is one route of a virtual host.
type HTTPRoute struct {
	// TagHeader, when set, makes the route match only requests whose Knative-Serving-Tag
	// header equals it.
	TagHeader string
	// Splits carry positive percents summing to 100, sorted by Cluster.
	Splits []Split
	// Timeout is the largest timeoutSeconds among the split revisions.
	Timeout time.Duration
}

// Split sends Percent of a route's requests to one revision.
type Split struct {
	Cluster   string
	Namespace string
	Revision  string
	Percent   uint32
}

// Protocol is what a revision's instances speak.
type Protocol int

const (
	HTTP1 Protocol = iota
	// H2C is cleartext HTTP/2, for ports named h2c or http2 (gRPC backends).
	H2C
)

// String is the protocol as the activator's metadata names it (wire.MetadataProtocol).
func (p Protocol) String() string {
	if p == H2C {
		return wire.ProtocolH2C
	}
	return wire.ProtocolHTTP1
}

// Backend is a revision's upstream: one Envoy cluster and its load assignment.
type Backend struct {
	// Cluster is the stable cluster name, ClusterName(namespace, revision).
	Cluster   string
	Namespace string
	Revision  string
	Protocol  Protocol
	// Endpoints are where requests go now. An empty list means nothing can serve the revision.
	Endpoints []Endpoint
	// Scaled is set for a revision sluice scales (local processes): its cluster reports load to
	// the autoscaler, and the activator is told its instances. nil for static endpoints, which
	// never go through the activator.
	Scaled *Scaled
}

// Scaled is what the activator needs to know of a revision it may stand in for.
type Scaled struct {
	// Instances are the revision's ready instances. They are Endpoints, unless the revision is
	// at zero or the autoscaler keeps the activator in its path: then Endpoints is the activator
	// and these are where the activator forwards.
	Instances []Endpoint
	// ContainerConcurrency caps in-flight requests per instance; 0 is unlimited.
	ContainerConcurrency int64
	TimeoutSeconds       int64
	// Proxied says gateways send the revision's requests to the activator (Endpoints are not the
	// instances). An activator that cannot tell a request's revision from its headers (gRPC
	// clients do not set them) picks among the proxied revisions of the request's route.
	Proxied bool
}

// Endpoint is one address requests can be sent to.
type Endpoint struct {
	// Host is an IP address or a DNS name.
	Host string
	Port uint32
}

// ClusterName is the name of a revision's cluster. It never changes while the revision exists,
// whatever its endpoints, so a scale event touches only the load assignment.
func ClusterName(namespace, revision string) string {
	return namespace + "/" + revision
}

// Backend returns the backend of cluster, found by binary search.
func (t *Table) Backend(cluster string) (Backend, bool) {
	i, ok := slices.BinarySearchFunc(t.Backends, cluster, func(b Backend, c string) int { return strings.Compare(b.Cluster, c) })
	if !ok {
		return Backend{}, false
	}
	return t.Backends[i], true
}
