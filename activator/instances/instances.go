// Package instances holds what the activator knows of a revision: its ready instances and the
// limits it must respect when forwarding to them. The xDS client fills a Sink with it; tests feed
// a Sink directly.
package instances

import (
	"time"

	"github.com/sluice-dev/sluice/wire"
)

// Protocol is how a revision's instances speak HTTP, as the control plane names it
// (wire.MetadataProtocol).
type Protocol string

const (
	HTTP1 Protocol = wire.ProtocolHTTP1
	// H2C is HTTP/2 without TLS, with prior knowledge (gRPC).
	H2C Protocol = wire.ProtocolH2C
)

// Revision is one revision as the control plane describes it.
type Revision struct {
	// Name is "namespace/revision", the name of the revision's cluster.
	Name string
	// ContainerConcurrency is the most requests one instance may have in flight; 0 means no limit.
	ContainerConcurrency int
	// Timeout bounds a request from its arrival to its last response byte; 0 means none.
	Timeout  time.Duration
	Protocol Protocol
	// Proxied says gateways send the revision's requests to the activator (it is at zero, or the
	// autoscaler keeps the activator in its path); false for a revision they reach directly.
	Proxied bool
	// Addrs are the host:port of the ready instances, possibly none.
	Addrs []string
}

// Sink takes the control plane's view of revisions as it changes. A revision not put (or
// removed) is unknown. Update must be safe to call from any goroutine.
type Sink interface {
	Update(put []Revision, removed []string)
}
