package routing

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/sluice-dev/sluice/routing/v1"
	"github.com/sluice-dev/sluice/traffic"
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
	r := newReconciler(st, src, cfg, now)
	// Objects are visited in map order, which nothing computed depends on; only what changed is
	// sorted (sorting every key cost more than the rest at 10,000 services). The newest created
	// and newest ready revision of each configuration are gathered in the pass that computes the
	// revisions' new statuses.
	latest := make(map[Key]latestRevisions, len(st.Configurations))
	for k, rev := range st.Revisions {
		rev = r.revision(k, rev)
		if c := rev.Labels[v1.LabelConfiguration]; c != "" {
			ck := Key{Namespace: k.Namespace, Name: c}
			l := latest[ck]
			l.add(rev)
			latest[ck] = l
		}
	}
	r.sortOut()
	for k, c := range st.Configurations {
		r.configuration(k, c, latest[k])
	}
	r.sortOut()
	for k, rt := range st.Routes {
		r.route(k, rt)
	}
	r.sortOut()
	for k, svc := range st.Services {
		r.service(k, svc)
	}
	r.sortOut()
	return r.out
}

// ReconcileScoped is Reconcile restricted to what the changed objects can affect, for a State
// that was reconciled (applying the result of Reconcile) before the changes in changed were
// made; objects outside the affected set are taken to be up to date and are read, not
// recomputed. Its result equals Reconcile's restricted to the affected set, and in that case
// Reconcile after applying it returns nothing.
//
// changed names objects put or deleted since (a deleted one no longer being in st), and
// revisions whose instances in src changed. The affected set is:
//   - a Service: itself, its Configuration and Route, and the Configuration's Revisions;
//   - a Configuration: itself and its Revisions;
//   - a Revision: itself and its Configuration (for a deleted one: the Configurations whose
//     status names it as latest);
//   - a Route: itself;
//
// and then every Route whose spec follows the latest revision of an affected Configuration, or
// whose spec or status names an affected Revision, and the Services owning an affected
// Configuration or Route. They are found through st's indexes (see index.go), so the cost is
// that of the affected set, not of st.
func ReconcileScoped(st *State, src EndpointSource, cfg Config, now time.Time, changed []Ref) []v1.Object {
	if len(changed) == 0 {
		return nil
	}
	r := newReconciler(st, src, cfg, now)
	ix := st.index()
	var (
		revSeed    = map[Key]bool{}
		cfgs       = map[Key]bool{}
		directCfgs = map[Key]bool{} // configurations whose revisions are all reconciled
		routes     = map[Key]bool{}
		svcs       = map[Key]bool{}
	)
	for _, ref := range changed {
		switch ref.Kind {
		case v1.KindService:
			svcs[ref.Key] = true
			cfgs[ref.Key], directCfgs[ref.Key] = true, true
			routes[ref.Key] = true
		case v1.KindConfiguration:
			cfgs[ref.Key], directCfgs[ref.Key] = true, true
		case v1.KindRoute:
			routes[ref.Key] = true
		case v1.KindRevision:
			revSeed[ref.Key] = true
			if rev := st.Revisions[ref.Key]; rev != nil {
				if c := rev.Labels[v1.LabelConfiguration]; c != "" {
					cfgs[Key{Namespace: ref.Namespace, Name: c}] = true
				}
			} else {
				// A deleted revision's labels are gone with it; the configurations it mattered
				// to name it.
				for _, ck := range ix.cfgsByLatest.get(ref.Key) {
					cfgs[ck] = true
				}
			}
		}
	}

	// The affected revisions: those changed, and every revision of a configuration that
	// changed itself (all of a configuration's revisions count towards its latest created and
	// ready, read from the index when reconciling it).
	var revs []Key
	for k := range revSeed {
		if st.Revisions[k] != nil {
			revs = append(revs, k)
		}
	}
	for ck := range directCfgs {
		for _, k := range ix.revsByCfg.get(ck) {
			if !revSeed[k] {
				revs = append(revs, k)
			}
		}
	}
	revs = sortKeys(revs)
	affectedRev := revSeed
	for _, k := range revs {
		affectedRev[k] = true
		r.revision(k, st.Revisions[k])
	}

	// The routes following an affected configuration or naming an affected revision.
	for ck := range cfgs {
		for _, k := range ix.routesByCfg.get(ck) {
			routes[k] = true
		}
	}
	for rk := range affectedRev {
		for _, k := range ix.routesByRev.get(rk) {
			routes[k] = true
		}
	}

	for _, k := range sortedKeys(cfgs) {
		c := st.Configurations[k]
		if c == nil {
			continue
		}
		var l latestRevisions
		for _, rk := range ix.revsByCfg.get(k) {
			l.add(r.rev(rk))
		}
		r.configuration(k, c, l)
		svcs[k] = true
	}
	for _, k := range sortedKeys(routes) {
		if rt := st.Routes[k]; rt != nil {
			r.route(k, rt)
			svcs[k] = true
		}
	}
	for _, k := range sortedKeys(svcs) {
		if svc := st.Services[k]; svc != nil {
			r.service(k, svc)
		}
	}
	return r.out
}

type reconciler struct {
	st  *State
	src EndpointSource
	cfg Config
	now metav1.Time
	out []v1.Object
	// sorted is how much of out is in its final order.
	sorted int
	// The objects whose status changed, with their new status; the others are read from st.
	revs   map[Key]*v1.Revision
	cfgs   map[Key]*v1.Configuration
	routes map[Key]*v1.Route
	// scratch is reused to resolve each route's traffic; it is copied only when it differs from
	// what the route's status holds.
	scratch []v1.TrafficTarget
	// lookup answers traffic.Resolve for the route being resolved.
	lookup nsLookup
}

func newReconciler(st *State, src EndpointSource, cfg Config, now time.Time) *reconciler {
	r := &reconciler{st: st, src: src, cfg: cfg, now: metav1.NewTime(stamp(now)),
		revs: map[Key]*v1.Revision{}, cfgs: map[Key]*v1.Configuration{}, routes: map[Key]*v1.Route{}}
	r.lookup.r = r
	return r
}

// sortOut sorts by key what was added to out since the last call: the objects of one kind.
func (r *reconciler) sortOut() {
	slices.SortFunc(r.out[r.sorted:], func(a, b v1.Object) int { return compareKeys(KeyOf(a), KeyOf(b)) })
	r.sorted = len(r.out)
}

// rev, configurationAt and routeAt read what this pass reconciled, then the State.
func (r *reconciler) rev(k Key) *v1.Revision { return at(r.revs, r.st.Revisions, k) }
func (r *reconciler) configurationAt(k Key) *v1.Configuration {
	return at(r.cfgs, r.st.Configurations, k)
}
func (r *reconciler) routeAt(k Key) *v1.Route { return at(r.routes, r.st.Routes, k) }

// revision reconciles one revision and returns it with its new status.
func (r *reconciler) revision(k Key, rev *v1.Revision) *v1.Revision {
	inst := r.src.Instances(rev)
	conds, same := conditions(rev.Status.Conditions, r.now, cond(v1.ConditionReady, inst.Ready, inst.Reason, inst.Message))
	if same && rev.Status.ObservedGeneration == rev.Generation {
		return rev
	}
	c := *rev
	c.Status.ObservedGeneration = rev.Generation
	c.Status.Conditions = conds
	r.revs[k] = &c
	r.out = append(r.out, &c)
	return &c
}

// latestRevisions are the newest created and newest ready revision of a configuration.
type latestRevisions struct{ created, ready *v1.Revision }

func (l *latestRevisions) add(rev *v1.Revision) {
	if newer(rev, l.created) {
		l.created = rev
	}
	if isReady(rev.Status.Conditions) && newer(rev, l.ready) {
		l.ready = rev
	}
}

func (r *reconciler) configuration(k Key, c *v1.Configuration, l latestRevisions) {
	var readyCond v1.Condition
	switch {
	case l.created == nil:
		readyCond = cond(v1.ConditionReady, false, ReasonRevisionMissing, "Configuration has no revision")
	case isReady(l.created.Status.Conditions):
		readyCond = cond(v1.ConditionReady, true, "", "")
	default:
		rc := readyCondition(l.created.Status.Conditions)
		readyCond = cond(v1.ConditionReady, false, rc.Reason,
			fmt.Sprintf("Revision %q is not ready: %s", l.created.Name, rc.Message))
	}
	// The latest ready revision never moves back (as in Knative): a revision that was ready stays
	// the latest ready until a newer one becomes ready, even while it is down, so @latest traffic
	// waits for it (and the Route says why) instead of silently going to older code. Only a
	// deleted revision is replaced.
	if prev := c.Status.LatestReadyRevisionName; prev != "" {
		if pr := r.rev(Key{Namespace: k.Namespace, Name: prev}); pr != nil && (l.ready == nil || newer(pr, l.ready)) {
			l.ready = pr
		}
	}
	var fields v1.ConfigurationStatusFields
	if l.created != nil {
		fields.LatestCreatedRevisionName = l.created.Name
	}
	if l.ready != nil {
		fields.LatestReadyRevisionName = l.ready.Name
	}
	conds, same := conditions(c.Status.Conditions, r.now, readyCond)
	if same && c.Status.ObservedGeneration == c.Generation && c.Status.ConfigurationStatusFields == fields {
		return
	}
	nc := *c
	nc.Status.ObservedGeneration = c.Generation
	nc.Status.ConfigurationStatusFields = fields
	nc.Status.Conditions = conds
	r.cfgs[k] = &nc
	r.out = append(r.out, &nc)
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

func (r *reconciler) route(k Key, rt *v1.Route) {
	local := clusterLocal(rt)
	old := rt.Status
	status := old
	status.ObservedGeneration = rt.Generation
	// URLs are compared piecewise and built only when they differ: building them for every
	// route would allocate three strings per route per call.
	if !isRouteURL(old.URL, r.cfg, k.Namespace, k.Name, "", local) {
		status.URL = routeURL(r.cfg, k.Namespace, k.Name, "", local)
	}
	if old.Address == nil || !isRouteURL(old.Address.URL, r.cfg, k.Namespace, k.Name, "", true) {
		status.Address = &v1.Addressable{URL: "http://" + ClusterLocalHost(k.Namespace, k.Name, "")}
	}
	reason, msg := r.resolve(rt, local)
	var ready v1.Condition
	if reason == "" {
		if !trafficEqual(r.scratch, old.Traffic) {
			status.Traffic = append([]v1.TrafficTarget(nil), r.scratch...)
		}
		ready = cond(v1.ConditionReady, true, "", "")
	} else {
		ready = cond(v1.ConditionReady, false, reason, msg)
	}
	assigned := ready
	assigned.Type = v1.ConditionAllTrafficAssigned
	conds, same := conditions(old.Conditions, r.now, ready, assigned)
	status.Conditions = conds
	if same && status.ObservedGeneration == old.ObservedGeneration && status.URL == old.URL &&
		status.Address == old.Address && sameSlice(status.Traffic, old.Traffic) {
		return
	}
	nr := *rt
	nr.Status = status
	r.routes[k] = &nr
	r.out = append(r.out, &nr)
}

// routeURL is the URL of a route's host (or a tag's host).
func routeURL(cfg Config, ns, name, tag string, local bool) string {
	if local {
		return "http://" + ClusterLocalHost(ns, name, tag)
	}
	return "http://" + cfg.ExternalHost(ns, name, tag)
}

// isRouteURL reports whether u == routeURL(cfg, ns, name, tag, local), without building it.
func isRouteURL(u string, cfg Config, ns, name, tag string, local bool) bool {
	suffix := cfg.domain()
	if local {
		suffix = "svc.cluster.local"
	}
	if tag != "" {
		return isConcat(u, "http://", tag, "-", name, ".", ns, ".", suffix)
	}
	return isConcat(u, "http://", name, ".", ns, ".", suffix)
}

// isConcat reports whether s is the concatenation of parts.
func isConcat(s string, parts ...string) bool {
	for _, p := range parts {
		if len(s) < len(p) || s[:len(p)] != p {
			return false
		}
		s = s[len(p):]
	}
	return s == ""
}

// sameSlice reports whether a and b are the same slice (not merely equal).
func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// resolve turns a route's desired traffic into concrete revisions in r.scratch (see
// traffic.Resolve), with the URLs of tagged entries, or says why it cannot be served yet.
func (r *reconciler) resolve(rt *v1.Route, local bool) (reason, msg string) {
	ns := rt.Namespace
	r.lookup.ns = ns
	var why traffic.Reason
	r.scratch, why, msg = traffic.Resolve(r.scratch, rt.Spec.Traffic, rt.Name, &r.lookup)
	switch why {
	case traffic.RevisionMissing:
		return ReasonRevisionMissing, msg
	case traffic.RevisionNotReady:
		return ReasonRevisionNotReady, msg
	}
	for i := range r.scratch {
		tag := r.scratch[i].Tag
		if tag == "" {
			continue
		}
		// Reuse the URL the status has for this entry when it is right, rather than build it.
		if st := rt.Status.Traffic; i < len(st) && isRouteURL(st[i].URL, r.cfg, ns, rt.Name, tag, local) {
			r.scratch[i].URL = st[i].URL
		} else {
			r.scratch[i].URL = routeURL(r.cfg, ns, rt.Name, tag, local)
		}
	}
	return "", ""
}

// nsLookup is traffic.Lookup over what a reconciler reads, in one namespace.
type nsLookup struct {
	r  *reconciler
	ns string
}

func (l *nsLookup) LatestReadyRevision(configuration string) (string, bool) {
	c := l.r.configurationAt(Key{Namespace: l.ns, Name: configuration})
	if c == nil {
		return "", false
	}
	return c.Status.LatestReadyRevisionName, true
}

func (l *nsLookup) RevisionReady(name string) (found, ready bool, message string) {
	rev := l.r.rev(Key{Namespace: l.ns, Name: name})
	if rev == nil {
		return false, false, ""
	}
	if isReady(rev.Status.Conditions) {
		return true, true, ""
	}
	return true, false, readyCondition(rev.Status.Conditions).Message
}

func (r *reconciler) service(k Key, svc *v1.Service) {
	old := svc.Status
	cfgReady := cond(v1.ConditionConfigurationsReady, false, ReasonRevisionMissing, "Configuration not found")
	routeReady := cond(v1.ConditionRoutesReady, false, ReasonRevisionMissing, "Route not found")
	var cfgFields v1.ConfigurationStatusFields
	var routeFields v1.RouteStatusFields
	if c := r.configurationAt(k); c != nil {
		cfgFields = c.Status.ConfigurationStatusFields
		cfgReady = readyCondition(c.Status.Conditions)
		cfgReady.Type = v1.ConditionConfigurationsReady
	}
	if rt := r.routeAt(k); rt != nil {
		routeFields = rt.Status.RouteStatusFields
		routeReady = readyCondition(rt.Status.Conditions)
		routeReady.Type = v1.ConditionRoutesReady
	}
	ready := cond(v1.ConditionReady, true, "", "")
	for _, c := range [...]v1.Condition{cfgReady, routeReady} {
		if c.Status != corev1.ConditionTrue {
			ready = cond(v1.ConditionReady, false, c.Reason, c.Message)
			break
		}
	}
	conds, same := conditions(old.Conditions, r.now, cfgReady, routeReady, ready)
	if same && old.ObservedGeneration == svc.Generation && old.ConfigurationStatusFields == cfgFields &&
		routeFieldsEqual(old.RouteStatusFields, routeFields) {
		return
	}
	ns := *svc
	ns.Status.ObservedGeneration = svc.Generation
	ns.Status.Conditions = conds
	ns.Status.ConfigurationStatusFields = cfgFields
	ns.Status.RouteStatusFields = routeFields
	r.out = append(r.out, &ns)
}

func cond(t v1.ConditionType, ok bool, reason, msg string) v1.Condition {
	if ok {
		return v1.Condition{Type: t, Status: corev1.ConditionTrue}
	}
	return v1.Condition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: msg}
}

// maxConditions is the most conditions any kind has (a Service's three).
const maxConditions = 3

// conditions returns want sorted by type, each keeping its LastTransitionTime from old when its
// status did not change, so that an unchanged world gives an unchanged status. same reports
// that the result equals old, in which case old itself is returned and nothing is allocated.
func conditions(old []v1.Condition, now metav1.Time, want ...v1.Condition) (out []v1.Condition, same bool) {
	var buf [maxConditions]v1.Condition
	cs := buf[:0]
	if len(want) > maxConditions {
		cs = make([]v1.Condition, 0, len(want))
	}
	for _, c := range want {
		c.LastTransitionTime = now
		for _, o := range old {
			if o.Type == c.Type && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		// Insertion sort by type: there are at most a handful.
		i := len(cs)
		cs = append(cs, c)
		for ; i > 0 && cs[i-1].Type > c.Type; i-- {
			cs[i] = cs[i-1]
		}
		cs[i] = c
	}
	if len(cs) == len(old) {
		same = true
		for i := range cs {
			if !conditionEqual(cs[i], old[i]) {
				same = false
				break
			}
		}
		if same {
			return old, true
		}
	}
	return append([]v1.Condition(nil), cs...), false
}

// conditionEqual is field-by-field equality, times compared as instants (as the apimachinery
// semantic equality does).
func conditionEqual(a, b v1.Condition) bool {
	return a.Type == b.Type && a.Status == b.Status && a.Severity == b.Severity && a.Reason == b.Reason &&
		a.Message == b.Message && a.LastTransitionTime.Equal(&b.LastTransitionTime)
}

func routeFieldsEqual(a, b v1.RouteStatusFields) bool {
	if a.URL != b.URL || (a.Address == nil) != (b.Address == nil) || !trafficEqual(a.Traffic, b.Traffic) {
		return false
	}
	return a.Address == nil || *a.Address == *b.Address
}

// trafficEqual compares traffic targets by value (pointers by what they point to); nil and
// empty are equal, as they are once stored.
func trafficEqual(a, b []v1.TrafficTarget) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Tag != y.Tag || x.RevisionName != y.RevisionName || x.ConfigurationName != y.ConfigurationName ||
			x.URL != y.URL || !ptrEqual(x.LatestRevision, y.LatestRevision) || !ptrEqual(x.Percent, y.Percent) {
			return false
		}
	}
	return true
}

func ptrEqual[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
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

// RevisionReady reports whether rev's status says it is Ready.
func RevisionReady(rev *v1.Revision) bool { return isReady(rev.Status.Conditions) }

// RevisionStatusCurrent reports whether rev's stored status already says what inst says, so
// reconciling rev would change nothing. A revision that scales without becoming ready or unready
// is the common case by far: its new endpoints then only need a new table, not a reconcile.
func RevisionStatusCurrent(rev *v1.Revision, inst Instances) bool {
	_, same := conditions(rev.Status.Conditions, metav1.Time{}, cond(v1.ConditionReady, inst.Ready, inst.Reason, inst.Message))
	return same && rev.Status.ObservedGeneration == rev.Generation
}
