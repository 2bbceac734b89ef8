// Package routes finds the revision of a request that does not name one. Envoy gateways set
// Knative-Serving-Namespace/Revision on what they send the activator; proxyless gRPC clients
// ignore header rewrites, so their requests carry only an authority. The host's route (the
// per-host route configuration gRPC clients are served) says which revisions the request may be
// for; the activator re-chooses among those whose traffic it receives.
package routes

import "github.com/sluice-dev/sluice/traffic"

// Target is one weighted cluster of a route: a revision's cluster, "namespace/revision".
type Target struct {
	Cluster string
	Weight  uint32
}

// Route is one route of a host. A route with a Tag matches only requests whose
// Knative-Serving-Tag header is that tag; one without matches every request.
type Route struct {
	Tag     string
	Targets []Target
}

// Host is a host's routes, in the order clients try them.
type Host struct {
	Name   string
	Routes []Route
}

// Match is the route a request with the given Knative-Serving-Tag value ("" if none) takes: the
// first that matches it, as Envoy and gRPC try routes in order. ok is false when none does.
func (h *Host) Match(tag string) (r *Route, ok bool) {
	for i := range h.Routes {
		if rt := &h.Routes[i]; rt.Tag == "" || (tag != "" && rt.Tag == tag) {
			return rt, true
		}
	}
	return nil, false
}

// Standing is what the activator knows of a revision. Standings are ordered: Pick prefers the
// higher.
type Standing uint8

const (
	// Unknown: the control plane has not named the revision to the activator (yet).
	Unknown Standing = iota
	// Direct: known, and gateways send its requests straight to its instances.
	Direct
	// Proxied: known, and gateways send its requests to the activator (at zero, or the
	// autoscaler keeps the activator in its path).
	Proxied
)

// Pick chooses a request's revision among a route's targets, by weight, using rnd as the random
// draw. A client that sent the request to the activator already chose a target by weight, and
// only proxied targets send to the activator; re-choosing by weight among the proxied ones keeps
// the split exact when all of them are (the common idle case: everything at zero) and never
// picks a revision the client could not have sent this request to. Without a proxied target (a
// client acting on a stale assignment) it chooses among the known ones, and without those among
// all, so the caller can wait for the control plane to name it. ok is false when no target has
// weight. The weighted choice itself is traffic.Pick, with the standing as the rank.
func Pick(targets []Target, standing func(cluster string) Standing, rnd uint64) (cluster string, ok bool) {
	// One standing lookup per target, kept on the stack for the usual handful of targets.
	var buf [8]Standing
	st := buf[:0]
	if len(targets) > len(buf) {
		st = make([]Standing, 0, len(targets))
	}
	for _, t := range targets {
		st = append(st, standing(t.Cluster))
	}
	i, ok := traffic.Pick(len(targets),
		func(i int) uint32 { return targets[i].Weight },
		func(i int) int { return int(st[i]) }, rnd)
	if !ok {
		return "", false
	}
	return targets[i].Cluster, true
}
