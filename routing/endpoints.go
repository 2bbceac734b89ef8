package routing

import (
	"sort"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Instances is where a revision can be served now.
type Instances struct {
	Endpoints []Endpoint
	Ready     bool
	// Reason and Message say why the revision is not ready; they become its Ready condition.
	Reason, Message string
}

// EndpointSource finds a revision's instances. It is the seam for where instances come from:
// static addresses now, local processes and Kubernetes endpoints (and the activator standing in
// for a revision at zero) later. Implementations must be deterministic for a given revision and
// moment, because Reconcile and BuildTable call them separately.
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

// Instances implements EndpointSource.
func (StaticEndpoints) Instances(rev *v1.Revision) Instances {
	v, ok := rev.Annotations[v1.AnnotationEndpoints]
	if !ok || v == "" {
		return Instances{
			Reason: ReasonNoEndpoints,
			Message: "no instances: in standalone mode a revision needs the " + v1.AnnotationEndpoints +
				" annotation on its template (IP:port,...); local processes come with the autoscaler",
		}
	}
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

func sortEndpoints(eps []Endpoint) {
	sort.Slice(eps, func(i, j int) bool {
		if eps[i].Host != eps[j].Host {
			return eps[i].Host < eps[j].Host
		}
		return eps[i].Port < eps[j].Port
	})
}
