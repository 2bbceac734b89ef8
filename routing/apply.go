package routing

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Apply admits objs into st, in order, and returns the change to store. It is all or nothing:
// on error nothing of objs is admitted and the error names the object and field at fault.
//
// A Service derives its Configuration and Route of the same name; a Configuration whose template
// changed gets a new generation and a new Revision (named by the template or
// "<configuration>-<generation, 5 digits>"). Re-applying an identical object changes nothing.
//
// Apply is stricter than Knative on purpose: traffic naming a revision or configuration that
// does not exist in the namespace once all of objs are admitted is rejected, instead of being
// accepted and reported later as a not-ready Route. Bad input then never half-applies, and the
// user learns of a typo at apply time. A later object of objs may reference a revision an
// earlier one creates.
func Apply(st *State, objs []v1.Object, now time.Time) (Change, error) {
	a := &admission{base: st, over: NewState(), now: metav1.NewTime(stamp(now)), index: map[Ref]int{}}
	for _, in := range objs {
		o := v1.Clone(in)
		v1.SetDefaults(o)
		if err := v1.Validate(o); err != nil {
			return Change{}, err
		}
		if err := a.checkVersion(o); err != nil {
			return Change{}, err
		}
		var err error
		switch o := o.(type) {
		case *v1.Service:
			err = a.service(o)
		case *v1.Configuration:
			err = a.configuration(o, nil)
		case *v1.Route:
			err = a.route(o, nil)
		case *v1.Revision:
			err = fmt.Errorf("%s: revisions are created from a template: apply the Service or Configuration that owns it", v1.Describe(o))
		}
		if err != nil {
			return Change{}, err
		}
	}
	for _, t := range a.routes {
		if err := a.checkReferences(t.key, t.from); err != nil {
			return Change{}, err
		}
		if err := a.checkHosts(t.key, t.from); err != nil {
			return Change{}, err
		}
	}
	return Change{Put: a.puts}, nil
}

// ConflictError is an object applied with a resourceVersion that is not the stored object's
// (v1.ContentVersion): it changed, or went away, since the client read it.
type ConflictError struct {
	Object  string // as v1.Describe names it
	Version string // what the client sent
	Current string // the stored object's; "" when there is none
}

func (e *ConflictError) Error() string {
	if e.Current == "" {
		return fmt.Sprintf("%s: applied with resourceVersion %s, but it does not exist (deleted since it was read?): leave resourceVersion out to create it", e.Object, e.Version)
	}
	return fmt.Sprintf("%s: changed since it was read (resourceVersion %s, now %s): read it again and apply the change to that, or leave resourceVersion out to overwrite", e.Object, e.Version, e.Current)
}

// checkVersion is the precondition of an object applied with a resourceVersion sluice issued:
// the object, as this call has admitted it so far, must still be the one the client read.
// Without one the object is applied as it is. A resourceVersion sluice never issues (a
// Kubernetes counter in YAML exported from a cluster) is no precondition here, as it was none
// before sluice had them.
func (a *admission) checkVersion(o v1.Object) error {
	want := o.GetResourceVersion()
	if !v1.IsContentVersion(want) {
		return nil
	}
	ref := RefOf(o)
	old := a.over.Get(ref)
	if old == nil {
		old = a.base.Get(ref)
	}
	if old == nil {
		return &ConflictError{Object: v1.Describe(o), Version: want}
	}
	if have := v1.ContentVersion(old); have != want {
		return &ConflictError{Object: v1.Describe(o), Version: want, Current: have}
	}
	return nil
}

type admission struct {
	// base is the State admitted into; over holds what this call admitted so far, read before
	// base. An overlay instead of a copy of base: copying every map costs milliseconds at 10,000
	// services, and Apply never deletes.
	base  *State
	over  *State
	now   metav1.Time
	puts  []v1.Object
	index map[Ref]int
	// routes are the routes objs touched, with the object the user applied for each (a Service
	// or the Route), so reference errors name what the user wrote.
	routes []touchedRoute
}

type touchedRoute struct {
	key  Key
	from string
}

// at reads k from what this call admitted so far, then from the State admitted into.
func at[T any](over, base map[Key]*T, k Key) *T {
	if o, ok := over[k]; ok {
		return o
	}
	return base[k]
}

func (a *admission) svcAt(k Key) *v1.Service { return at(a.over.Services, a.base.Services, k) }
func (a *admission) cfgAt(k Key) *v1.Configuration {
	return at(a.over.Configurations, a.base.Configurations, k)
}
func (a *admission) routeAt(k Key) *v1.Route  { return at(a.over.Routes, a.base.Routes, k) }
func (a *admission) revAt(k Key) *v1.Revision { return at(a.over.Revisions, a.base.Revisions, k) }

func (a *admission) put(o v1.Object) {
	r := RefOf(o)
	if i, ok := a.index[r]; ok {
		a.puts[i] = o
	} else {
		a.index[r] = len(a.puts)
		a.puts = append(a.puts, o)
	}
	a.over.put(o)
}

// ownerOf is the name of the Service controlling o, or "".
func ownerOf(o metav1.Object) string {
	for _, ref := range o.GetOwnerReferences() {
		if ref.Kind == v1.KindService && ref.Controller != nil && *ref.Controller {
			return ref.Name
		}
	}
	return ""
}

func ownerRef(kind, name string) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{APIVersion: v1.APIVersion, Kind: kind, Name: name, Controller: &t, BlockOwnerDeletion: &t}
}

func (a *admission) service(svc *v1.Service) error {
	k := KeyOf(svc)
	for _, other := range []v1.Object{a.cfgAt(k), a.routeAt(k)} {
		if isNil(other) {
			continue
		}
		if owner := ownerOf(other); owner != svc.Name {
			return fmt.Errorf("%s: %s already exists and is not owned by this Service: delete it first", v1.Describe(svc), v1.Describe(other))
		}
	}
	svc.Status = v1.ServiceStatus{}
	old := a.svcAt(k)
	changed := adoptMeta(svc, old, a.now, old != nil && !sameJSON(old.Spec, svc.Spec))
	if old != nil {
		svc.Status = old.Status
	}

	// The derived objects share svc's spec, annotations and each other's labels and owner
	// references rather than copying them: objects in a State are never mutated (a change
	// replaces them, and a map or slice that must differ is copied first), so sharing is safe,
	// and at 10,000 services the copies were most of the State's memory. svc itself is this
	// call's own copy of the input (see Apply), so nothing the caller holds is shared.
	labels := withLabels(svc.Labels, map[string]string{v1.LabelService: svc.Name})
	owners := []metav1.OwnerReference{ownerRef(v1.KindService, svc.Name)}
	cfg := &v1.Configuration{
		TypeMeta: metav1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindConfiguration},
		ObjectMeta: metav1.ObjectMeta{
			Name: svc.Name, Namespace: svc.Namespace, Labels: labels, Annotations: svc.Annotations,
			OwnerReferences: owners,
		},
		Spec: svc.Spec.ConfigurationSpec,
	}
	if err := a.configuration(cfg, svc); err != nil {
		return err
	}
	// When the Configuration is unchanged the stored one stays: the Route takes its maps and
	// owner references when equal, so the two keep sharing them.
	if c := a.cfgAt(k); c != cfg {
		if sameMap(c.Labels, labels) {
			labels = c.Labels
		}
		if sameMap(c.Annotations, svc.Annotations) {
			svc.Annotations = c.Annotations
		}
		if sameJSON(c.OwnerReferences, owners) {
			owners = c.OwnerReferences
		}
	}
	route := &v1.Route{
		TypeMeta: metav1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindRoute},
		ObjectMeta: metav1.ObjectMeta{
			Name: svc.Name, Namespace: svc.Namespace, Labels: labels, Annotations: svc.Annotations,
			OwnerReferences: owners,
		},
		Spec: svc.Spec.RouteSpec,
	}
	if err := a.route(route, svc); err != nil {
		return err
	}
	// When the Configuration or Route is unchanged, the one already stored stays, with a spec
	// equal (as stored, in JSON) to svc's: svc then takes that one, so a Service re-applied with
	// only its traffic changed still shares its template with its Configuration and Revision.
	svc.Spec.ConfigurationSpec = a.cfgAt(k).Spec
	svc.Spec.RouteSpec = a.routeAt(k).Spec
	if changed {
		a.put(svc)
	}
	return nil
}

// adoptMeta carries what the system owns (creation time, generation) from old to o, bumps the
// generation when the spec changed, and reports whether o differs from old at all.
func adoptMeta(o, old v1.Object, now metav1.Time, specChanged bool) bool {
	o.SetResourceVersion("")
	o.SetManagedFields(nil)
	if isNil(old) {
		o.SetGeneration(1)
		o.SetCreationTimestamp(now)
		return true
	}
	o.SetCreationTimestamp(old.GetCreationTimestamp())
	o.SetUID(old.GetUID())
	o.SetGeneration(old.GetGeneration())
	if specChanged {
		o.SetGeneration(old.GetGeneration() + 1)
		return true
	}
	return !sameMap(o.GetLabels(), old.GetLabels()) || !sameMap(o.GetAnnotations(), old.GetAnnotations()) ||
		!sameJSON(o.GetOwnerReferences(), old.GetOwnerReferences())
}

func isNil(o v1.Object) bool {
	switch o := o.(type) {
	case nil:
		return true
	case *v1.Service:
		return o == nil
	case *v1.Configuration:
		return o == nil
	case *v1.Route:
		return o == nil
	case *v1.Revision:
		return o == nil
	}
	return false
}

func (a *admission) configuration(cfg *v1.Configuration, svc *v1.Service) error {
	k := KeyOf(cfg)
	old := a.cfgAt(k)
	if svc == nil {
		if old != nil && ownerOf(old) != "" {
			return fmt.Errorf("%s is owned by Service %s/%s: apply the Service instead", v1.Describe(cfg), cfg.Namespace, ownerOf(old))
		}
		if s := a.svcAt(k); s != nil {
			return fmt.Errorf("%s: the name is taken by %s", v1.Describe(cfg), v1.Describe(s))
		}
	}
	cfg.Status = v1.ConfigurationStatus{}
	templateChanged := old == nil || !sameJSON(old.Spec, cfg.Spec)
	changed := adoptMeta(cfg, old, a.now, old != nil && templateChanged)
	if old != nil {
		cfg.Status = old.Status
	}
	if !changed {
		return nil
	}
	if templateChanged {
		if err := a.stampRevision(cfg, svc); err != nil {
			return err
		}
	}
	a.put(cfg)
	return nil
}

// systemLabels are the labels sluice puts on a revision, as opposed to those of its template.
var systemLabels = []string{v1.LabelService, v1.LabelConfiguration, v1.LabelConfigurationGeneration, v1.LabelRoute}

// stampRevision creates the revision of cfg's current template and generation.
func (a *admission) stampRevision(cfg *v1.Configuration, svc *v1.Service) error {
	gen := cfg.Generation
	t := cfg.Spec.Template
	name := t.Name
	if name == "" {
		name = fmt.Sprintf("%s-%05d", cfg.Name, gen)
	}
	labels := withLabels(t.Labels, map[string]string{
		v1.LabelConfiguration:           cfg.Name,
		v1.LabelConfigurationGeneration: strconv.FormatInt(gen, 10),
	})
	if svc != nil {
		labels[v1.LabelService] = svc.Name
	}
	// The revision shares its spec and annotations with the template it is made from (see
	// service: nothing in a State is mutated); only its labels are its own.
	rev := &v1.Revision{
		TypeMeta: metav1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindRevision},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: cfg.Namespace, Labels: labels, Annotations: t.Annotations,
			OwnerReferences: []metav1.OwnerReference{ownerRef(v1.KindConfiguration, cfg.Name)},
			Generation:      1, CreationTimestamp: a.now,
		},
		Spec: t.Spec,
	}
	what := v1.Describe(cfg)
	if svc != nil {
		what = v1.Describe(svc)
	}
	existing := a.revAt(KeyOf(rev))
	if existing == nil {
		a.put(rev)
		return nil
	}
	if c := existing.Labels[v1.LabelConfiguration]; c != cfg.Name {
		return fmt.Errorf("%s: spec.template.metadata.name: revision %q already belongs to Configuration %q", what, name, c)
	}
	if t.Name == "" {
		return fmt.Errorf("%s: revision %q already exists: name the template (spec.template.metadata.name)", what, name)
	}
	if diff := shortDiff(templateOf(existing), templateOf(rev)); diff != "" {
		return fmt.Errorf("%s: spec.template: Saw the following changes without a name change (-old +new): %s", what, diff)
	}
	// The template went back to an existing revision under its own name (a rollback by
	// re-applying an older file): the revision becomes the newest created again.
	// existing is in a State and so immutable: copy it, and copy its labels before changing one.
	again := *existing
	again.Labels = withLabels(existing.Labels, map[string]string{v1.LabelConfigurationGeneration: strconv.FormatInt(gen, 10)})
	a.put(&again)
	return nil
}

// templateOf is what of a revision came from its template, for comparing the two.
func templateOf(rev *v1.Revision) any {
	labels := copyMap(rev.Labels)
	for _, l := range systemLabels {
		delete(labels, l)
	}
	return map[string]any{
		"metadata": map[string]any{"labels": labels, "annotations": rev.Annotations},
		"spec":     rev.Spec,
	}
}

func (a *admission) route(r *v1.Route, svc *v1.Service) error {
	k := KeyOf(r)
	old := a.routeAt(k)
	from := v1.Describe(r)
	if svc != nil {
		from = v1.Describe(svc)
	} else {
		if old != nil && ownerOf(old) != "" {
			return fmt.Errorf("%s is owned by Service %s/%s: apply the Service instead", v1.Describe(r), r.Namespace, ownerOf(old))
		}
		if s := a.svcAt(k); s != nil {
			return fmt.Errorf("%s: the name is taken by %s", v1.Describe(r), v1.Describe(s))
		}
	}
	a.routes = append(a.routes, touchedRoute{key: k, from: from})
	r.Status = v1.RouteStatus{}
	changed := adoptMeta(r, old, a.now, old != nil && !sameJSON(old.Spec, r.Spec))
	if old != nil {
		r.Status = old.Status
	}
	if changed {
		a.put(r)
	}
	return nil
}

// checkReferences rejects traffic that names what does not exist in the namespace (sluice's
// rule, stricter than Knative's; package traffic has the rest of the traffic rules).
func (a *admission) checkReferences(k Key, from string) error {
	r := a.routeAt(k)
	for i, t := range r.Spec.Traffic {
		if t.RevisionName != "" {
			rev := a.revAt(Key{Namespace: k.Namespace, Name: t.RevisionName})
			if rev == nil {
				return fmt.Errorf("%s: spec.traffic[%d].revisionName: revision %q not found in namespace %s%s",
					from, i, t.RevisionName, k.Namespace, a.knownRevisions(k))
			}
		}
		if t.ConfigurationName != "" && a.cfgAt(Key{Namespace: k.Namespace, Name: t.ConfigurationName}) == nil {
			return fmt.Errorf("%s: spec.traffic[%d].configurationName: configuration %q not found in namespace %s",
				from, i, t.ConfigurationName, k.Namespace)
		}
	}
	return nil
}

// checkHosts rejects a Route whose hosts are another Route's: a route named "v1-hello" and tag v1
// of route "hello" would both be v1-hello.NAMESPACE.DOMAIN, and a gateway can route a host to
// only one of them. Knative leaves this to a failed Ingress; we refuse it at apply time.
//
// Hosts differ only by their first label ("{tag}-{name}" or "{name}") within a namespace, so a
// label can clash only with a route of that name, or with tag p of route s where label = p-s:
// a few lookups per label rather than a scan of the namespace.
func (a *admission) checkHosts(k Key, from string) error {
	r := a.routeAt(k)
	for _, label := range hostLabels(r) {
		if label != k.Name {
			if o := a.routeAt(Key{Namespace: k.Namespace, Name: label}); o != nil {
				return fmt.Errorf("%s: host %s.%s.… is also the main host of Route %s/%s: rename the tag or the route",
					from, label, k.Namespace, k.Namespace, label)
			}
		}
		for i := strings.IndexByte(label, '-'); i >= 0; i = nextDash(label, i) {
			tag, name := label[:i], label[i+1:]
			if name == k.Name {
				continue // our own tag's host
			}
			o := a.routeAt(Key{Namespace: k.Namespace, Name: name})
			if o != nil && slices.Contains(hostLabels(o), label) && tagged(o, tag) {
				return fmt.Errorf("%s: host %s.%s.… is also the host of tag %q of Route %s/%s: rename the tag or the route",
					from, label, k.Namespace, tag, k.Namespace, name)
			}
		}
	}
	return nil
}

func nextDash(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '-')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// hostLabels are the first labels of a route's hosts, for the tags it wants and the tags it still
// serves (the hosts of both are programmed while a change is pending).
func hostLabels(r *v1.Route) []string {
	labels := []string{r.Name}
	for _, ts := range [][]v1.TrafficTarget{r.Spec.Traffic, r.Status.Traffic} {
		for _, t := range ts {
			if t.Tag != "" {
				labels = append(labels, t.Tag+"-"+r.Name)
			}
		}
	}
	return labels
}

func tagged(r *v1.Route, tag string) bool {
	for _, ts := range [][]v1.TrafficTarget{r.Spec.Traffic, r.Status.Traffic} {
		for _, t := range ts {
			if t.Tag == tag {
				return true
			}
		}
	}
	return false
}

// knownRevisions lists the revisions of the route's own configuration, to help with a typo.
func (a *admission) knownRevisions(k Key) string {
	var names []string
	for rk := range a.base.Revisions {
		if rev := a.revAt(rk); rk.Namespace == k.Namespace && rev.Labels[v1.LabelConfiguration] == k.Name {
			names = append(names, rk.Name)
		}
	}
	for rk, rev := range a.over.Revisions {
		if _, inBase := a.base.Revisions[rk]; !inBase && rk.Namespace == k.Namespace && rev.Labels[v1.LabelConfiguration] == k.Name {
			names = append(names, rk.Name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	sort.Strings(names)
	return " (revisions of " + k.Name + ": " + strings.Join(names, ", ") + ")"
}

func withLabels(base, extra map[string]string) map[string]string {
	out := copyMap(base)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// sameJSON compares by serialised form, which is how objects are stored: nil and empty
// collections are the same thing there.
func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// maxDiffLines keeps "changes without a name change" errors to one readable line.
const maxDiffLines = 6

// shortDiff lists the leaves that differ between a and b as "-path: old +path: new".
func shortDiff(a, b any) string {
	fa, fb := flatten(a), flatten(b)
	paths := map[string]bool{}
	for p := range fa {
		paths[p] = true
	}
	for p := range fb {
		paths[p] = true
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		if fa[p] != fb[p] {
			sorted = append(sorted, p)
		}
	}
	sort.Strings(sorted)
	var parts []string
	for i, p := range sorted {
		if i == maxDiffLines {
			parts = append(parts, fmt.Sprintf("... (%d more)", len(sorted)-i))
			break
		}
		var d []string
		if v, ok := fa[p]; ok {
			d = append(d, "-"+p+": "+v)
		}
		if v, ok := fb[p]; ok {
			d = append(d, "+"+p+": "+v)
		}
		parts = append(parts, strings.Join(d, " "))
	}
	return strings.Join(parts, "; ")
}

func flatten(v any) map[string]string {
	data, err := json.Marshal(v)
	if err != nil {
		return map[string]string{"": err.Error()}
	}
	var generic any
	if err := json.Unmarshal(data, &generic); err != nil {
		return map[string]string{"": err.Error()}
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, e)
			}
		case []any:
			for i, e := range v {
				walk(prefix+"["+strconv.Itoa(i)+"]", e)
			}
		default:
			leaf, _ := json.Marshal(v)
			out[prefix] = string(leaf)
		}
	}
	walk("", generic)
	return out
}
