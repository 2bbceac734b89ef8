package store

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// A sharer makes the objects going into a State share their equal parts instead of each holding
// its own copy. Objects in a State are never mutated (a change replaces them), so an equal
// template, map, slice or string can be one value referenced from many objects. Without this a
// State decoded from JSON holds every Service's template three times (Service, Configuration,
// latest Revision), every label map, condition list and name once per object: ~3 KB per object,
// 140 MB at 10,000 services × 2 revisions.
//
// Equal means equal as stored: parts are keyed by their JSON (or a key that determines it), so a
// shared part encodes exactly as the part it replaces and the object's stored form is unchanged.
//
// A sharer lives for one operation (a load, an Apply, a status write) and is then dropped, so it
// never keeps alive a part that no object uses any more.
//
// A sharer only ever assigns fields of the object it is given (and of the structs inline in it):
// a slice or map the object holds may be a published object's too (admission shares them), and
// those are read concurrently. Only with owned set, for objects freshly decoded that nothing
// else references (a load), does it also share the strings inside the slices it keeps.
type sharer struct {
	owned bool

	strs      map[string]string
	maps      map[string]map[string]string
	templates map[string]v1.RevisionTemplateSpec
	specs     map[string]v1.RevisionSpec
	pods      map[string]*corev1.PodSpec
	traffic   map[string][]v1.TrafficTarget
	owners    map[string][]metav1.OwnerReference
	conds     map[condsKey][]v1.Condition
	addrs     map[string]*v1.Addressable
	buf       strings.Builder
}

func newSharer(owned bool) *sharer {
	return &sharer{
		owned:     owned,
		strs:      map[string]string{},
		maps:      map[string]map[string]string{},
		templates: map[string]v1.RevisionTemplateSpec{},
		specs:     map[string]v1.RevisionSpec{},
		pods:      map[string]*corev1.PodSpec{},
		traffic:   map[string][]v1.TrafficTarget{},
		owners:    map[string][]metav1.OwnerReference{},
		conds:     map[condsKey][]v1.Condition{},
		addrs:     map[string]*v1.Addressable{},
	}
}

// object makes all of o share with what the sharer has seen. o must not be published yet.
func (s *sharer) object(o v1.Object) {
	switch o := o.(type) {
	case *v1.Service:
		s.typeMeta(&o.TypeMeta)
		s.meta(&o.ObjectMeta)
		s.template(&o.Spec.Template)
		o.Spec.Traffic = s.trafficTargets(o.Spec.Traffic)
		s.status(&o.Status.Status)
		s.configurationFields(&o.Status.ConfigurationStatusFields)
		s.routeFields(&o.Status.RouteStatusFields, o.Spec.Traffic)
	case *v1.Configuration:
		s.typeMeta(&o.TypeMeta)
		s.meta(&o.ObjectMeta)
		s.template(&o.Spec.Template)
		s.status(&o.Status.Status)
		s.configurationFields(&o.Status.ConfigurationStatusFields)
	case *v1.Route:
		s.typeMeta(&o.TypeMeta)
		s.meta(&o.ObjectMeta)
		o.Spec.Traffic = s.trafficTargets(o.Spec.Traffic)
		s.status(&o.Status.Status)
		s.routeFields(&o.Status.RouteStatusFields, o.Spec.Traffic)
	case *v1.Revision:
		s.typeMeta(&o.TypeMeta)
		s.meta(&o.ObjectMeta)
		_, _ = s.revisionSpec(&o.Spec)
		s.status(&o.Status.Status)
	}
}

// statusOf makes o's status share with what the sharer has seen, for an object whose other
// parts are already shared (a status write onto a stored object).
func (s *sharer) statusOf(o v1.Object) {
	switch o := o.(type) {
	case *v1.Service:
		s.status(&o.Status.Status)
		s.configurationFields(&o.Status.ConfigurationStatusFields)
		s.routeFields(&o.Status.RouteStatusFields, o.Spec.Traffic)
	case *v1.Configuration:
		s.status(&o.Status.Status)
		s.configurationFields(&o.Status.ConfigurationStatusFields)
	case *v1.Route:
		s.status(&o.Status.Status)
		s.routeFields(&o.Status.RouteStatusFields, o.Spec.Traffic)
	case *v1.Revision:
		s.status(&o.Status.Status)
	}
}

func (s *sharer) str(v string) string {
	if v == "" {
		return ""
	}
	if c, ok := s.strs[v]; ok {
		return c
	}
	s.strs[v] = v
	return v
}

func (s *sharer) typeMeta(t *metav1.TypeMeta) {
	t.APIVersion, t.Kind = s.str(t.APIVersion), s.str(t.Kind)
}

func (s *sharer) meta(m *metav1.ObjectMeta) {
	m.Name, m.Namespace, m.UID = s.str(m.Name), s.str(m.Namespace), types.UID(s.str(string(m.UID)))
	m.Labels = s.stringMap(m.Labels)
	m.Annotations = s.stringMap(m.Annotations)
	m.OwnerReferences = s.ownerRefs(m.OwnerReferences)
}

// stringMap returns the map seen before with m's entries, or else m (for owned objects, a copy of
// m made of shared strings). Nil and empty maps are left as they are.
func (s *sharer) stringMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s.buf.Reset()
	for _, k := range keys {
		// Lengths make the key unambiguous whatever the strings hold.
		s.buf.WriteString(strconv.Itoa(len(k)))
		s.buf.WriteByte(':')
		s.buf.WriteString(k)
		s.buf.WriteString(strconv.Itoa(len(m[k])))
		s.buf.WriteByte(':')
		s.buf.WriteString(m[k])
	}
	key := s.buf.String()
	if c, ok := s.maps[key]; ok {
		return c
	}
	if !s.owned {
		// m may be shared with a published object: keeping it keeps that sharing.
		s.maps[key] = m
		return m
	}
	c := make(map[string]string, len(m))
	for _, k := range keys {
		c[s.str(k)] = s.str(m[k])
	}
	s.maps[key] = c
	return c
}

func (s *sharer) ownerRefs(refs []metav1.OwnerReference) []metav1.OwnerReference {
	if len(refs) == 0 {
		return refs
	}
	key, ok := jsonKey(refs)
	if !ok {
		return refs
	}
	if c, ok := s.owners[key]; ok {
		return c
	}
	for i := range refs {
		if !s.owned {
			break
		}
		r := &refs[i]
		r.APIVersion, r.Kind, r.Name, r.UID = s.str(r.APIVersion), s.str(r.Kind), s.str(r.Name), types.UID(s.str(string(r.UID)))
	}
	s.owners[key] = refs
	return refs
}

// template shares a whole revision template, and its spec with revisions made from it. The
// spec is keyed (encoded) once, for both.
func (s *sharer) template(t *v1.RevisionTemplateSpec) {
	specKey, ok := s.revisionSpec(&t.Spec)
	metaKey, ok2 := jsonKey(&t.ObjectMeta)
	if !ok || !ok2 {
		return
	}
	key := metaKey + "\x00" + specKey
	if c, ok := s.templates[key]; ok {
		*t = c
		return
	}
	s.meta(&t.ObjectMeta)
	s.templates[key] = *t
}

// revisionSpec shares r and returns its key. The pod spec, most of r's size, is shared on its
// own as well, so that specs differing only in their limits (containerConcurrency, timeouts)
// still hold one pod spec.
func (s *sharer) revisionSpec(r *v1.RevisionSpec) (string, bool) {
	podKey, ok := s.podSpec(&r.PodSpec)
	if !ok {
		return "", false
	}
	s.buf.Reset()
	s.buf.WriteString(podKey)
	for _, v := range []*int64{r.ContainerConcurrency, r.TimeoutSeconds, r.ResponseStartTimeoutSeconds, r.IdleTimeoutSeconds} {
		// The pod spec's JSON ends in '}' (or is "null"): what follows cannot be confused with it.
		s.buf.WriteByte('\x00')
		if v != nil {
			s.buf.WriteString(strconv.FormatInt(*v, 10))
		}
	}
	key := s.buf.String()
	if c, ok := s.specs[key]; ok {
		*r = c
		return key, true
	}
	s.specs[key] = *r
	return key, true
}

// podSpec points *p at the pod spec seen before equal to it (as stored, in JSON) and returns
// its key. A new one is kept as it is (for owned objects, with its containers' names and
// images shared).
func (s *sharer) podSpec(p **corev1.PodSpec) (string, bool) {
	key, ok := jsonKey(*p)
	if !ok {
		return "", false
	}
	if *p == nil {
		return key, true
	}
	if c, ok := s.pods[key]; ok {
		*p = c
		return key, true
	}
	for i := range (*p).Containers {
		if !s.owned {
			break
		}
		c := &(*p).Containers[i]
		c.Name, c.Image = s.str(c.Name), s.str(c.Image)
	}
	s.pods[key] = *p
	return key, true
}

// trafficTargets returns the list seen before equal to tt, or tt with its strings shared.
func (s *sharer) trafficTargets(tt []v1.TrafficTarget) []v1.TrafficTarget {
	if len(tt) == 0 {
		return tt
	}
	key, ok := jsonKey(tt)
	if !ok {
		return tt
	}
	if c, ok := s.traffic[key]; ok {
		return c
	}
	for i := range tt {
		if !s.owned {
			break
		}
		t := &tt[i]
		t.Tag, t.RevisionName, t.ConfigurationName, t.URL = s.str(t.Tag), s.str(t.RevisionName), s.str(t.ConfigurationName), s.str(t.URL)
	}
	s.traffic[key] = tt
	return tt
}

// condsKey determines a list of up to three conditions (every kind's most) as stored: times
// are stored in whole seconds (see routing's stamp), so the second is what counts.
type condsKey struct {
	n     int
	conds [3]condKey
}

type condKey struct {
	typ, status, severity, reason, message string
	seconds                                int64
	zero                                   bool
}

func (s *sharer) status(st *v1.Status) {
	cs := st.Conditions
	if len(cs) == 0 || len(cs) > 3 {
		return
	}
	k := condsKey{n: len(cs)}
	for i, c := range cs {
		if c.LastTransitionTime.Nanosecond() != 0 {
			return // not as stored: leave it alone rather than key it wrongly
		}
		k.conds[i] = condKey{typ: string(c.Type), status: string(c.Status), severity: c.Severity,
			reason: c.Reason, message: c.Message, seconds: c.LastTransitionTime.Unix(), zero: c.LastTransitionTime.IsZero()}
	}
	if c, ok := s.conds[k]; ok {
		st.Conditions = c
		return
	}
	// A copy: st.Conditions may be the slice of an object already published (a status write
	// carries the reconciled object's), whose strings must not be touched.
	c := slices.Clone(cs)
	for i := range c {
		c[i].Reason, c[i].Message = s.str(c[i].Reason), s.str(c[i].Message)
	}
	s.conds[k] = c
	st.Conditions = c
}

func (s *sharer) configurationFields(f *v1.ConfigurationStatusFields) {
	f.LatestReadyRevisionName = s.str(f.LatestReadyRevisionName)
	f.LatestCreatedRevisionName = s.str(f.LatestCreatedRevisionName)
}

// routeFields shares a route's (or service's) status traffic with its spec traffic when they are
// equal, which they are for traffic naming revisions without tags: the common case.
func (s *sharer) routeFields(f *v1.RouteStatusFields, spec []v1.TrafficTarget) {
	f.URL = s.str(f.URL)
	if a := f.Address; a != nil {
		if c, ok := s.addrs[a.URL]; ok && *c == *a {
			f.Address = c
		} else {
			if s.owned {
				a.URL = s.str(a.URL)
			}
			s.addrs[a.URL] = a
		}
	}
	if len(f.Traffic) == 0 {
		return
	}
	if len(spec) == len(f.Traffic) && sameEncoding(spec, f.Traffic) {
		f.Traffic = spec
		return
	}
	f.Traffic = s.trafficTargets(f.Traffic)
}

func sameEncoding(a, b any) bool {
	ka, ok1 := jsonKey(a)
	kb, ok2 := jsonKey(b)
	return ok1 && ok2 && ka == kb
}

func jsonKey(v any) (string, bool) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	return string(data), true
}
