package routing

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Reasons a Route is not ready.
const (
	ReasonRevisionMissing  = "RevisionMissing"
	ReasonRevisionNotReady = "RevisionNotReady"
)

// Reconcile computes every object's status from st and the endpoint source and returns fresh
// copies of the objects whose status changed, in a stable order (revisions, configurations,
// routes, services, each sorted by key); the rest of each object is shared with st, which must
// not be mutated anyway. A condition's LastTransitionTime moves only when its status does, so
// applying the result and reconciling again returns nothing.
//
// A Route whose desired traffic cannot be served (a revision missing or not ready) keeps the
// traffic it served in status.traffic, which is what BuildTable routes by, and says why in its
// conditions.
func Reconcile(st *State, src EndpointSource, cfg Config, now time.Time) []v1.Object {
	r := reconciler{st: st, cfg: cfg, now: metav1.NewTime(stamp(now)),
		revs:  make(map[Key]*v1.Revision, len(st.Revisions)),
		cfgs:  make(map[Key]*v1.Configuration, len(st.Configurations)),
		route: make(map[Key]*v1.Route, len(st.Routes)),
	}
	r.revisions(src)
	r.configurations()
	r.routes()
	r.services()
	return r.out
}

type reconciler struct {
	st  *State
	cfg Config
	now metav1.Time
	out []v1.Object
	// The objects with their new status, changed or not.
	revs  map[Key]*v1.Revision
	cfgs  map[Key]*v1.Configuration
	route map[Key]*v1.Route
}

func (r *reconciler) revisions(src EndpointSource) {
	for _, k := range sortedKeys(r.st.Revisions) {
		rev := r.st.Revisions[k]
		inst := src.Instances(rev)
		ready := cond(v1.ConditionReady, inst.Ready, inst.Reason, inst.Message)
		status := rev.Status
		status.ObservedGeneration = rev.Generation
		status.Conditions = conditions(rev.Status.Conditions, r.now, ready)
		if equality.Semantic.DeepEqual(status, rev.Status) {
			r.revs[k] = rev
			continue
		}
		c := *rev
		c.Status = status
		r.revs[k] = &c
		r.out = append(r.out, &c)
	}
}

func (r *reconciler) configurations() {
	byConfig := map[Key][]*v1.Revision{}
	for k, rev := range r.revs {
		if c := rev.Labels[v1.LabelConfiguration]; c != "" {
			ck := Key{Namespace: k.Namespace, Name: c}
			byConfig[ck] = append(byConfig[ck], rev)
		}
	}
	for _, k := range sortedKeys(r.st.Configurations) {
		c := r.st.Configurations[k]
		var created, ready *v1.Revision
		for _, rev := range byConfig[k] {
			if newer(rev, created) {
				created = rev
			}
			if isReady(rev.Status.Conditions) && newer(rev, ready) {
				ready = rev
			}
		}
		status := c.Status
		status.ObservedGeneration = c.Generation
		status.LatestCreatedRevisionName, status.LatestReadyRevisionName = "", ""
		var readyCond v1.Condition
		switch {
		case created == nil:
			readyCond = cond(v1.ConditionReady, false, ReasonRevisionMissing, "Configuration has no revision")
		case isReady(created.Status.Conditions):
			readyCond = cond(v1.ConditionReady, true, "", "")
		default:
			rc := readyCondition(created.Status.Conditions)
			readyCond = cond(v1.ConditionReady, false, rc.Reason,
				fmt.Sprintf("Revision %q is not ready: %s", created.Name, rc.Message))
		}
		if created != nil {
			status.LatestCreatedRevisionName = created.Name
		}
		if ready != nil {
			status.LatestReadyRevisionName = ready.Name
		}
		status.Conditions = conditions(c.Status.Conditions, r.now, readyCond)
		if equality.Semantic.DeepEqual(status, c.Status) {
			r.cfgs[k] = c
			continue
		}
		nc := *c
		nc.Status = status
		r.cfgs[k] = &nc
		r.out = append(r.out, &nc)
	}
}

// newer reports whether a was created by a later configuration generation than b.
func newer(a, b *v1.Revision) bool {
	if b == nil {
		return true
	}
	ga, gb := generationOf(a), generationOf(b)
	if ga != gb {
		return ga > gb
	}
	return a.Name > b.Name
}

func generationOf(rev *v1.Revision) int64 {
	g, _ := strconv.ParseInt(rev.Labels[v1.LabelConfigurationGeneration], 10, 64)
	return g
}

func (r *reconciler) routes() {
	for _, k := range sortedKeys(r.st.Routes) {
		rt := r.st.Routes[k]
		status := rt.Status
		status.ObservedGeneration = rt.Generation
		if clusterLocal(rt) {
			status.URL = "http://" + ClusterLocalHost(k.Namespace, k.Name, "")
		} else {
			status.URL = "http://" + r.cfg.ExternalHost(k.Namespace, k.Name, "")
		}
		status.Address = &v1.Addressable{URL: "http://" + ClusterLocalHost(k.Namespace, k.Name, "")}
		resolved, reason, msg := r.resolve(rt)
		var ready v1.Condition
		if reason == "" {
			status.Traffic = resolved
			ready = cond(v1.ConditionReady, true, "", "")
		} else {
			ready = cond(v1.ConditionReady, false, reason, msg)
		}
		assigned := ready
		assigned.Type = v1.ConditionAllTrafficAssigned
		status.Conditions = conditions(rt.Status.Conditions, r.now, ready, assigned)
		if equality.Semantic.DeepEqual(status, rt.Status) {
			r.route[k] = rt
			continue
		}
		nr := *rt
		nr.Status = status
		r.route[k] = &nr
		r.out = append(r.out, &nr)
	}
}

// resolve turns a route's desired traffic into concrete revisions, or says why it cannot be
// served yet.
func (r *reconciler) resolve(rt *v1.Route) (resolved []v1.TrafficTarget, reason, msg string) {
	ns := rt.Namespace
	for _, t := range rt.Spec.Traffic {
		name := t.RevisionName
		if name == "" {
			cfgName := t.ConfigurationName
			if cfgName == "" {
				// latestRevision in a Service's route follows the Service's configuration.
				cfgName = rt.Name
			}
			c := r.cfgs[Key{Namespace: ns, Name: cfgName}]
			if c == nil {
				return nil, ReasonRevisionMissing, fmt.Sprintf("Configuration %q not found", cfgName)
			}
			name = c.Status.LatestReadyRevisionName
			if name == "" {
				return nil, ReasonRevisionMissing, fmt.Sprintf("Configuration %q does not have any ready Revision", cfgName)
			}
		}
		rev := r.revs[Key{Namespace: ns, Name: name}]
		if rev == nil {
			return nil, ReasonRevisionMissing, fmt.Sprintf("Revision %q referenced in traffic not found", name)
		}
		if !isReady(rev.Status.Conditions) {
			rc := readyCondition(rev.Status.Conditions)
			return nil, ReasonRevisionNotReady, fmt.Sprintf("Revision %q referenced in traffic is not ready: %s", name, rc.Message)
		}
		out := v1.TrafficTarget{Tag: t.Tag, RevisionName: name, LatestRevision: t.LatestRevision, Percent: t.Percent}
		if t.Tag != "" {
			if clusterLocal(rt) {
				out.URL = "http://" + ClusterLocalHost(ns, rt.Name, t.Tag)
			} else {
				out.URL = "http://" + r.cfg.ExternalHost(ns, rt.Name, t.Tag)
			}
		}
		resolved = append(resolved, out)
	}
	return resolved, "", ""
}

func (r *reconciler) services() {
	for _, k := range sortedKeys(r.st.Services) {
		svc := r.st.Services[k]
		status := svc.Status
		status.ObservedGeneration = svc.Generation
		cfgReady := cond(v1.ConditionConfigurationsReady, false, ReasonRevisionMissing, "Configuration not found")
		routeReady := cond(v1.ConditionRoutesReady, false, ReasonRevisionMissing, "Route not found")
		status.ConfigurationStatusFields = v1.ConfigurationStatusFields{}
		status.RouteStatusFields = v1.RouteStatusFields{}
		if c := r.cfgs[k]; c != nil {
			status.ConfigurationStatusFields = c.Status.ConfigurationStatusFields
			cfgReady = readyCondition(c.Status.Conditions)
			cfgReady.Type = v1.ConditionConfigurationsReady
		}
		if rt := r.route[k]; rt != nil {
			status.RouteStatusFields = rt.Status.RouteStatusFields
			routeReady = readyCondition(rt.Status.Conditions)
			routeReady.Type = v1.ConditionRoutesReady
		}
		ready := cond(v1.ConditionReady, true, "", "")
		for _, c := range []v1.Condition{cfgReady, routeReady} {
			if c.Status != corev1.ConditionTrue {
				ready = cond(v1.ConditionReady, false, c.Reason, c.Message)
				break
			}
		}
		status.Conditions = conditions(svc.Status.Conditions, r.now, cfgReady, routeReady, ready)
		if equality.Semantic.DeepEqual(status, svc.Status) {
			continue
		}
		ns := *svc
		ns.Status = status
		r.out = append(r.out, &ns)
	}
}

func cond(t v1.ConditionType, ok bool, reason, msg string) v1.Condition {
	if ok {
		return v1.Condition{Type: t, Status: corev1.ConditionTrue}
	}
	return v1.Condition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: msg}
}

// conditions returns want sorted by type, each keeping its LastTransitionTime from old when its
// status did not change, so that an unchanged world gives an unchanged status.
func conditions(old []v1.Condition, now metav1.Time, want ...v1.Condition) []v1.Condition {
	out := make([]v1.Condition, len(want))
	for i, c := range want {
		c.LastTransitionTime = now
		for _, o := range old {
			if o.Type == c.Type && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		out[i] = c
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

func readyCondition(cs []v1.Condition) v1.Condition {
	for _, c := range cs {
		if c.Type == v1.ConditionReady {
			return c
		}
	}
	return v1.Condition{Type: v1.ConditionReady, Status: corev1.ConditionUnknown}
}

func isReady(cs []v1.Condition) bool {
	return readyCondition(cs).Status == corev1.ConditionTrue
}
