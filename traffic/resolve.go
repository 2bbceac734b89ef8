package traffic

import (
	"fmt"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Follows is the configuration whose latest ready revision a spec entry of route stands for, or
// "" when the entry names its revision. An entry without revisionName follows its
// configurationName; in a Service's route, which has none, it follows the Service's own
// Configuration, which has the route's name.
func Follows(t v1.TrafficTarget, route string) (configuration string) {
	switch {
	case t.RevisionName != "":
		return ""
	case t.ConfigurationName != "":
		return t.ConfigurationName
	}
	return route
}

// Lookup is what Resolve needs to know of the configurations and revisions in a route's
// namespace.
type Lookup interface {
	// LatestReadyRevision is the configuration's status.latestReadyRevisionName ("" when it has
	// none); found is false when there is no such configuration.
	LatestReadyRevision(configuration string) (revision string, found bool)
	// RevisionReady reports whether the revision exists and whether it is Ready; when it exists
	// but is not, message is its Ready condition's message.
	RevisionReady(revision string) (found, ready bool, message string)
}

// Reason says why a traffic block cannot be served, as Knative's Route conditions do; routing
// turns it into the condition's reason.
type Reason uint8

const (
	// Servable: every entry resolved to a ready revision.
	Servable Reason = iota
	// RevisionMissing: a configuration or revision an entry names does not exist, or a
	// configuration has no ready revision yet (Knative's RevisionMissing).
	RevisionMissing
	// RevisionNotReady: a revision an entry resolves to exists but is not Ready.
	RevisionNotReady
)

// Resolve turns a route's spec.traffic into the traffic it serves (its status.traffic): every
// entry with its revision named, latestRevision and configurationName entries resolved through l
// to the latest ready revision of their configuration (see Follows). Entries keep their order,
// tag, percent and latestRevision (pointers shared with spec); configurationName and url are left
// empty (the url of a tagged entry is its host's, which routing knows). The entries are appended
// to dst[:0], so a caller may reuse one buffer.
//
// A block is served only as a whole: when an entry cannot be resolved to a Ready revision,
// Resolve stops there and says why (reason and message), and the route keeps serving what it
// served before. Knative's BuildTrafficConfiguration (pkg/reconciler/route/traffic) resolves the
// same way, but looks at every entry before it reports one problem.
func Resolve(dst, spec []v1.TrafficTarget, route string, l Lookup) (resolved []v1.TrafficTarget, reason Reason, message string) {
	resolved = dst[:0]
	for _, t := range spec {
		name := t.RevisionName
		if cfg := Follows(t, route); cfg != "" {
			latest, found := l.LatestReadyRevision(cfg)
			if !found {
				return resolved, RevisionMissing, fmt.Sprintf("Configuration %q not found", cfg)
			}
			if latest == "" {
				return resolved, RevisionMissing, fmt.Sprintf("Configuration %q does not have any ready Revision", cfg)
			}
			name = latest
		}
		found, ready, why := l.RevisionReady(name)
		if !found {
			return resolved, RevisionMissing, fmt.Sprintf("Revision %q referenced in traffic not found", name)
		}
		if !ready {
			return resolved, RevisionNotReady, fmt.Sprintf("Revision %q referenced in traffic is not ready: %s", name, why)
		}
		resolved = append(resolved, v1.TrafficTarget{Tag: t.Tag, RevisionName: name, LatestRevision: t.LatestRevision, Percent: t.Percent})
	}
	return resolved, Servable, ""
}
