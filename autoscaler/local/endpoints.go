//go:build unix

package local

import (
	"github.com/sluice-dev/sluice/routing"
	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Reasons a local revision is not ready, for its Ready condition.
const (
	// ReasonInstanceCrashed: an instance exited on its own; the message is how.
	ReasonInstanceCrashed = "InstanceCrashed"
	// ReasonInstancesStarting: instances run but none has passed its readiness probe yet.
	ReasonInstancesStarting = "InstancesStarting"
)

// Instances implements routing.EndpointSource for local revisions: the ready instances, or why
// there are none.
func (s *Supervisor) Instances(rev *v1.Revision) routing.Instances {
	st, ok := s.Revision(routing.Key{Namespace: rev.Namespace, Name: rev.Name})
	if eps := st.Endpoints(); len(eps) > 0 {
		return routing.Instances{Endpoints: eps, Ready: true}
	}
	if !ok || st.Desired == 0 {
		return routing.Instances{Reason: routing.ReasonNoEndpoints, Message: "no local instances: the revision is scaled to zero"}
	}
	for _, in := range st.Instances {
		if in.State == StateCrashed {
			return routing.Instances{Reason: ReasonInstanceCrashed, Message: "instance " + in.Name + " " + in.LastExit}
		}
	}
	return routing.Instances{Reason: ReasonInstancesStarting, Message: "waiting for an instance to pass its readiness probe"}
}
