package routing

import (
	"cmp"
	"slices"
	"sync"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Instances is where a revision can be served now.
type Instances struct {
	Endpoints []Endpoint
	Ready     bool
	// Reason and Message say why the revision is not ready; they become its Ready condition.
	Reason, Message string
	// Scaled says sluice scales the revision. Backends are then its ready instances, which
	// Endpoints may replace with the activator (at zero, or when the autoscaler keeps the
	// activator in the path).
	Scaled   bool
	Backends []Endpoint
}

// EndpointSource finds a revision's instances. It is the seam for where instances come from:
// static addresses now, local processes and Kubernetes endpoints (and the activator standing in
// for a revision at zero) later. Implementations must be deterministic for a given revision and
// moment, because Reconcile and BuildTable call them separately. Callers treat the returned
// Endpoints as read-only and copy them before keeping them, so an implementation may return a
// slice it shares between calls.
type EndpointSource interface {
	Instances(rev *v1.Revision) Instances
}

// Reasons a revision is not ready.
const (
	ReasonNoEndpoints      = "NoEndpoints"
	ReasonInvalidEndpoints = "InvalidEndpoints"
)

// StaticEndpoints reads a revision's instances from its sluice.dev/endpoints annotation, for
// backends that run anyway (VMs, processes started elsewhere).
type StaticEndpoints struct{}

// Instances implements EndpointSource. The annotation is parsed once per distinct value (see
// staticCache): Reconcile and BuildTable ask for every revision, at 10,000 services that is
// 20,000 parses per call otherwise. The returned Endpoints are shared: do not modify them.
func (StaticEndpoints) Instances(rev *v1.Revision) Instances {
	v, ok := rev.Annotations[v1.AnnotationEndpoints]
	if !ok || v == "" {
		return Instances{
			Reason: ReasonNoEndpoints,
			Message: "no instances: in standalone mode a revision needs the " + v1.AnnotationEndpoints +
				" annotation on its template (IP:port,...); local processes come with the autoscaler",
		}
	}
	return staticCache.get(v)
}

// parseStatic turns an annotation value into instances.
func parseStatic(v string) Instances {
	addrs, err := v1.ParseEndpoints(v)
	if err != nil {
		// Admission rejects this, so only a store written by something else gets here.
		return Instances{Reason: ReasonInvalidEndpoints, Message: v1.AnnotationEndpoints + ": " + err.Error()}
	}
	if len(addrs) == 0 {
		return Instances{Reason: ReasonNoEndpoints, Message: v1.AnnotationEndpoints + " lists no address"}
	}
	eps := make([]Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = Endpoint{Host: a.Addr().String(), Port: uint32(a.Port())}
	}
	sortEndpoints(eps)
	return Instances{Endpoints: eps, Ready: true}
}

// staticCache memoises parseStatic by annotation value. Keying by the value rather than by the
// revision pointer keeps hits across the copies a status update makes of a revision, and needs
// no invalidation: the same text always parses the same.
var staticCache = &parseCache{limit: 1 << 16}

// parseCache is a two-generation cache: when the current generation reaches limit entries it
// becomes the previous one and the one before is dropped, so memory stays bounded (2×limit)
// while whatever is still in use migrates to the current generation on its next lookup.
type parseCache struct {
	mu        sync.Mutex
	limit     int
	cur, prev map[string]parsed
}

// parsed is a cached parseStatic result, smaller than Instances for the common case (one per
// revision, so 20,000 at 10,000 services): ready instances are their endpoints alone; anything
// else is kept whole behind a pointer.
type parsed struct {
	eps      []Endpoint
	notReady *Instances
}

func toParsed(in Instances) parsed {
	if in.Ready && in.Reason == "" && in.Message == "" {
		return parsed{eps: in.Endpoints}
	}
	return parsed{notReady: &in}
}

func (p parsed) instances() Instances {
	if p.notReady != nil {
		return *p.notReady
	}
	return Instances{Endpoints: p.eps, Ready: true}
}

func (c *parseCache) get(v string) Instances {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.cur[v]; ok {
		return p.instances()
	}
	p, ok := c.prev[v]
	if !ok {
		p = toParsed(parseStatic(v))
	}
	if len(c.cur) >= c.limit || c.cur == nil {
		c.prev, c.cur = c.cur, make(map[string]parsed, min(c.limit, 1024))
	}
	c.cur[v] = p
	return p.instances()
}

func sortEndpoints(eps []Endpoint) {
	slices.SortFunc(eps, compareEndpoints)
}

func compareEndpoints(a, b Endpoint) int {
	if c := cmp.Compare(a.Host, b.Host); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}
