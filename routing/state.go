// Package routing is sluice's pure model of Knative serving: admission of objects (Apply,
// Delete), their statuses (Reconcile) and the resolved routing Table (BuildTable). Nothing here
// does I/O; callers own persistence and time.
package routing

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Key names a namespaced object.
type Key struct{ Namespace, Name string }

func (k Key) String() string { return k.Namespace + "/" + k.Name }

// KeyOf is the key of an object.
func KeyOf(o v1.Object) Key { return Key{Namespace: o.GetNamespace(), Name: o.GetName()} }

// Ref names an object of a kind (v1.KindService etc.).
type Ref struct {
	Kind string
	Key
}

func (r Ref) String() string { return r.Kind + " " + r.Key.String() }

// RefOf is the reference to an object.
func RefOf(o v1.Object) Ref { return Ref{Kind: v1.KindOf(o), Key: KeyOf(o)} }

// State is every object sluice knows. Objects are never mutated once in a State: a change
// replaces them, so a State can be shared with readers without locks.
//
// A State's maps may be filled in directly until it is first used (With and ReconcileScoped
// read indexes of them, built on first use, see index.go), and are never written after.
type State struct {
	Services       map[Key]*v1.Service
	Configurations map[Key]*v1.Configuration
	Routes         map[Key]*v1.Route
	Revisions      map[Key]*v1.Revision

	// idx indexes the maps. With always sets it; a State made otherwise (NewState, Clone, a
	// literal) builds it when first needed.
	idx atomic.Pointer[stateIndex]
}

// NewState returns an empty State.
func NewState() *State {
	return &State{
		Services:       map[Key]*v1.Service{},
		Configurations: map[Key]*v1.Configuration{},
		Routes:         map[Key]*v1.Route{},
		Revisions:      map[Key]*v1.Revision{},
	}
}

// Clone copies the maps (not the objects, which are immutable). The copy may be written to
// before it is used, so its index is built afresh when first needed.
func (s *State) Clone() *State {
	return &State{
		Services:       cloneMap(s.Services),
		Configurations: cloneMap(s.Configurations),
		Routes:         cloneMap(s.Routes),
		Revisions:      cloneMap(s.Revisions),
	}
}

// cloneMap copies m; maps.Clone copies the table wholesale, much faster than re-inserting. A
// nil map becomes an empty one so the copy can be written to.
func cloneMap[V any](m map[Key]V) map[Key]V {
	if m == nil {
		return map[Key]V{}
	}
	return maps.Clone(m)
}

// Change is what Apply, Delete and Reconcile decide: objects to write and objects to remove.
// The store writes it atomically.
type Change struct {
	Put    []v1.Object
	Delete []Ref
}

// Empty reports whether the change does nothing.
func (c Change) Empty() bool { return len(c.Put) == 0 && len(c.Delete) == 0 }

// With returns a new State with c applied; s is untouched. Deletes are applied before puts.
// Only the maps of the kinds c touches are copied; the others are shared with s, which is safe
// because a State's maps are never written once it is built. The new State's index is s's with
// only what c touches copied and updated, so With costs in proportion to c, not to s.
func (s *State) With(c Change) *State {
	out := &State{Services: s.Services, Configurations: s.Configurations, Routes: s.Routes, Revisions: s.Revisions}
	// The result is always indexed, so that a published State is never indexed by its readers.
	// A bulk change (loading a store, a first reconcile) is indexed from scratch afterwards:
	// cheaper than step by step, and than indexing s first if it is not (one filled in directly).
	var ed *indexEditor
	if n := len(c.Put) + len(c.Delete); n <= bulkChange ||
		(s.idx.Load() != nil && 2*n < len(s.Services)+len(s.Configurations)+len(s.Routes)+len(s.Revisions)) {
		ed = newIndexEditor(s.index())
	}
	var copied [4]bool
	own := func(kind string) {
		switch kind {
		case v1.KindService:
			if !copied[0] {
				out.Services, copied[0] = cloneMap(s.Services), true
			}
		case v1.KindConfiguration:
			if !copied[1] {
				out.Configurations, copied[1] = cloneMap(s.Configurations), true
			}
		case v1.KindRoute:
			if !copied[2] {
				out.Routes, copied[2] = cloneMap(s.Routes), true
			}
		case v1.KindRevision:
			if !copied[3] {
				out.Revisions, copied[3] = cloneMap(s.Revisions), true
			}
		}
	}
	for _, r := range c.Delete {
		own(r.Kind)
		if ed != nil {
			ed.replace(r.Key, out.Get(r), nil)
		}
		out.remove(r)
	}
	for _, o := range c.Put {
		own(v1.KindOf(o))
		if ed != nil {
			ed.replace(KeyOf(o), out.Get(RefOf(o)), o)
		}
		out.put(o)
	}
	// A State built as a literal may lack maps; readers expect them all.
	if out.Services == nil {
		out.Services = map[Key]*v1.Service{}
	}
	if out.Configurations == nil {
		out.Configurations = map[Key]*v1.Configuration{}
	}
	if out.Routes == nil {
		out.Routes = map[Key]*v1.Route{}
	}
	if out.Revisions == nil {
		out.Revisions = map[Key]*v1.Revision{}
	}
	if ed != nil {
		out.idx.Store(ed.ix)
	} else {
		out.idx.Store(buildIndex(out))
	}
	return out
}

// bulkChange is the size of a Change past which With may index its result from scratch.
const bulkChange = 256

// Get returns the object a Ref names, or nil.
func (s *State) Get(r Ref) v1.Object {
	var o v1.Object
	var ok bool
	switch r.Kind {
	case v1.KindService:
		o, ok = lookup(s.Services, r.Key)
	case v1.KindConfiguration:
		o, ok = lookup(s.Configurations, r.Key)
	case v1.KindRoute:
		o, ok = lookup(s.Routes, r.Key)
	case v1.KindRevision:
		o, ok = lookup(s.Revisions, r.Key)
	}
	if !ok {
		return nil
	}
	return o
}

func lookup[T v1.Object](m map[Key]T, k Key) (v1.Object, bool) {
	v, ok := m[k]
	return v, ok
}

func (s *State) put(o v1.Object) {
	k := KeyOf(o)
	switch o := o.(type) {
	case *v1.Service:
		s.Services[k] = o
	case *v1.Configuration:
		s.Configurations[k] = o
	case *v1.Route:
		s.Routes[k] = o
	case *v1.Revision:
		s.Revisions[k] = o
	default:
		panic(fmt.Sprintf("routing: cannot store %T", o))
	}
}

func (s *State) remove(r Ref) {
	switch r.Kind {
	case v1.KindService:
		delete(s.Services, r.Key)
	case v1.KindConfiguration:
		delete(s.Configurations, r.Key)
	case v1.KindRoute:
		delete(s.Routes, r.Key)
	case v1.KindRevision:
		delete(s.Revisions, r.Key)
	}
}

func sortedKeys[V any](m map[Key]V) []Key {
	keys := make([]Key, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	return keys
}

// compareKeys orders keys by namespace, then name.
func compareKeys(a, b Key) int {
	if c := cmp.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

// sortKeys sorts keys in place and drops duplicates.
func sortKeys(keys []Key) []Key {
	slices.SortFunc(keys, compareKeys)
	return slices.Compact(keys)
}

// Config is how hosts are named.
type Config struct {
	// Domain is the suffix of external hosts; "example.com" when empty.
	Domain string
}

// DefaultDomain is Knative's default domain.
const DefaultDomain = "example.com"

func (c Config) domain() string {
	if c.Domain == "" {
		return DefaultDomain
	}
	return c.Domain
}

// ExternalHost is a route's (or, with tag set, a tag's) host on the external listener.
func (c Config) ExternalHost(namespace, name, tag string) string {
	return hostLabel(name, tag) + "." + namespace + "." + c.domain()
}

// ClusterLocalHost is a route's (or a tag's) host on the internal listener.
func ClusterLocalHost(namespace, name, tag string) string {
	return hostLabel(name, tag) + "." + namespace + ".svc.cluster.local"
}

func hostLabel(name, tag string) string {
	if tag == "" {
		return name
	}
	return tag + "-" + name
}

// clusterLocal reports whether a route is kept off the external listener.
func clusterLocal(r *v1.Route) bool {
	return r.Labels[v1.LabelVisibility] == v1.VisibilityClusterLocal
}

// stamp is how times are stored: whole seconds in UTC, what survives a JSON round trip, so a
// status read back from the store equals the one computed.
func stamp(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

// Reachable reports whether some Route serves revision k or names it with a tag: its status
// traffic lists it, at any percent. A revision nobody can reach may scale to zero at once.
// It looks only at the routes the index says refer to k, not at every Route.
func (s *State) Reachable(k Key) bool {
	for _, rk := range s.index().routesByRev.get(k) {
		if rk.Namespace != k.Namespace {
			continue
		}
		rt := s.Routes[rk]
		if rt == nil {
			continue
		}
		for _, t := range rt.Status.Traffic {
			if t.RevisionName == k.Name {
				return true
			}
		}
	}
	return false
}

// ServedRevisions are the revisions route k's status traffic names (what it serves or tags), in
// the route's namespace; nil for a route that is absent.
func (s *State) ServedRevisions(k Key) []Key {
	rt := s.Routes[k]
	if rt == nil {
		return nil
	}
	var out []Key
	for _, t := range rt.Status.Traffic {
		if t.RevisionName != "" {
			out = append(out, Key{Namespace: k.Namespace, Name: t.RevisionName})
		}
	}
	return out
}
