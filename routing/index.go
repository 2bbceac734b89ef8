package routing

import (
	"hash/maphash"
	"slices"

	v1 "github.com/sluice-dev/sluice/routing/v1"
	"github.com/sluice-dev/sluice/traffic"
)

// The indexes answer ReconcileScoped's (and Delete's) questions "which revisions does this
// configuration have" and "which routes refer to this configuration or revision" without
// scanning every Revision and Route: at 10,000 services those scans were ~25 ms per change,
// the lookups are microseconds.
//
// A State's index is immutable, like the State: State.With derives the next one by copying
// only what its Change touches. Each index is split into indexShards maps by a hash of the key,
// and With copies only the shards it writes (a few dozen entries each at 10,000 services)
// rather than a 10,000-entry map per With; within a shard the lists are copied on write too,
// since the old State's index still reads them.

// indexShards is how many maps each index is split into. 256 keeps a shard at ~40 entries at
// 10,000 services, so copying one costs a microsecond or two.
const indexShards = 256

// multiIndex maps a key to a sorted set of keys (no duplicates, ordered by compareKeys). Keys
// with no values are absent, so an index maintained incrementally equals one built afresh.
type multiIndex struct {
	shards [indexShards]map[Key][]Key
}

var shardSeed = maphash.MakeSeed()

func shardOf(k Key) int {
	return int((maphash.String(shardSeed, k.Name) ^ maphash.String(shardSeed, k.Namespace)*31) % indexShards)
}

// get returns the values of k, which the caller must not modify.
func (m *multiIndex) get(k Key) []Key { return m.shards[shardOf(k)][k] }

// stateIndex is every index of a State.
type stateIndex struct {
	// revsByCfg: configuration → its revisions (by their serving.knative.dev/configuration
	// label, in the revision's namespace; revisions without the label are not indexed).
	revsByCfg multiIndex
	// routesByCfg: configuration → routes whose spec traffic follows its latest revision (a
	// target without revisionName, naming configurationName or, for a Service's route, the
	// route's own name).
	routesByCfg multiIndex
	// routesByRev: revision → routes whose spec traffic (revisionName) or status traffic (what
	// they serve) names it.
	routesByRev multiIndex
	// cfgsByLatest: revision → configurations whose status names it as latest created or ready
	// (a deleted revision's labels are gone with it; these are the configurations it mattered
	// to). An empty name is indexed too, as ReconcileScoped's matching has always done.
	cfgsByLatest multiIndex
}

const (
	ixRevsByCfg = iota
	ixRoutesByCfg
	ixRoutesByRev
	ixCfgsByLatest
	numIndexes
)

func (ix *stateIndex) at(which int) *multiIndex {
	switch which {
	case ixRevsByCfg:
		return &ix.revsByCfg
	case ixRoutesByCfg:
		return &ix.routesByCfg
	case ixRoutesByRev:
		return &ix.routesByRev
	default:
		return &ix.cfgsByLatest
	}
}

// index returns s's index, building it on first use for a State that was not derived by With
// from an indexed one (NewState, Clone, a literal). Concurrent first uses may both build it;
// the results are equal and one of them is kept.
func (s *State) index() *stateIndex {
	if ix := s.idx.Load(); ix != nil {
		return ix
	}
	ix := buildIndex(s)
	if s.idx.CompareAndSwap(nil, ix) {
		return ix
	}
	return s.idx.Load()
}

// buildIndex indexes every object of s from scratch.
func buildIndex(s *State) *stateIndex {
	ix := &stateIndex{}
	// Each index has about as many keys as there are configurations or revisions; sizing the
	// shards for that up front saves growing 1,024 maps step by step.
	hints := [numIndexes]int{
		ixRevsByCfg:   len(s.Configurations),
		ixRoutesByCfg: len(s.Configurations),
		ixRoutesByRev: len(s.Revisions),
		// Keys are the latest created and ready revisions of each configuration: mostly one
		// per configuration (they are the same revision once it is ready), not one per revision.
		ixCfgsByLatest: len(s.Configurations),
	}
	for which, n := range hints {
		if n == 0 {
			continue
		}
		m := ix.at(which)
		for i := range m.shards {
			m.shards[i] = make(map[Key][]Key, n/indexShards+n/(4*indexShards)+1)
		}
	}
	put := func(which int, k, v Key) {
		m := &ix.at(which).shards[shardOf(k)]
		if *m == nil {
			*m = map[Key][]Key{}
		}
		(*m)[k] = append((*m)[k], v)
	}
	for k, rev := range s.Revisions {
		if ck, ok := revisionConfiguration(k, rev); ok {
			put(ixRevsByCfg, ck, k)
		}
	}
	for k, c := range s.Configurations {
		created, ready := configurationLatest(k, c)
		put(ixCfgsByLatest, created, k)
		if ready != created {
			put(ixCfgsByLatest, ready, k)
		}
	}
	for k, rt := range s.Routes {
		routeRefs(k, rt, func(which int, ref Key) { put(which, ref, k) })
	}
	for which := range numIndexes {
		for _, m := range ix.at(which).shards {
			for k, vs := range m {
				if len(vs) > 1 {
					m[k] = sortKeys(vs)
				}
			}
		}
	}
	return ix
}

func revisionConfiguration(k Key, rev *v1.Revision) (Key, bool) {
	c := rev.Labels[v1.LabelConfiguration]
	return Key{Namespace: k.Namespace, Name: c}, c != ""
}

func configurationLatest(k Key, c *v1.Configuration) (created, ready Key) {
	return Key{Namespace: k.Namespace, Name: c.Status.LatestCreatedRevisionName},
		Key{Namespace: k.Namespace, Name: c.Status.LatestReadyRevisionName}
}

// routeRefs calls f with every configuration (ixRoutesByCfg) and revision (ixRoutesByRev) the
// route refers to, possibly more than once each: a spec target naming a revision refers to it,
// one without follows the latest of its configuration (traffic.Follows), and every served
// (status) target refers to its revision.
func routeRefs(k Key, rt *v1.Route, f func(which int, ref Key)) {
	for _, t := range rt.Spec.Traffic {
		if c := traffic.Follows(t, rt.Name); c != "" {
			f(ixRoutesByCfg, Key{Namespace: k.Namespace, Name: c})
		} else {
			f(ixRoutesByRev, Key{Namespace: k.Namespace, Name: t.RevisionName})
		}
	}
	for _, t := range rt.Status.Traffic {
		f(ixRoutesByRev, Key{Namespace: k.Namespace, Name: t.RevisionName})
	}
}

// sameRouteRefs reports whether two versions of a route refer to the same things, as routeRefs
// sees them: a status update that serves the same revisions leaves the index alone.
func sameRouteRefs(a, b *v1.Route) bool {
	if a.Name != b.Name || len(a.Spec.Traffic) != len(b.Spec.Traffic) || len(a.Status.Traffic) != len(b.Status.Traffic) {
		return false
	}
	for i, t := range a.Spec.Traffic {
		if u := b.Spec.Traffic[i]; t.RevisionName != u.RevisionName || t.ConfigurationName != u.ConfigurationName {
			return false
		}
	}
	for i, t := range a.Status.Traffic {
		if t.RevisionName != b.Status.Traffic[i].RevisionName {
			return false
		}
	}
	return true
}

// indexEditor derives a new index from an immutable one, copying each shard and each list the
// first time it writes to it.
type indexEditor struct {
	ix    *stateIndex
	owned [numIndexes][indexShards / 64]uint64
	// fresh are the lists this editor allocated, which it may change in place.
	fresh map[freshKey]bool
}

type freshKey struct {
	which int
	k     Key
}

func newIndexEditor(base *stateIndex) *indexEditor {
	ix := *base
	return &indexEditor{ix: &ix}
}

// shard returns the shard of k in index which, owned by the editor.
func (e *indexEditor) shard(which int, k Key) map[Key][]Key {
	i := shardOf(k)
	m := &e.ix.at(which).shards[i]
	if e.owned[which][i/64]&(1<<(i%64)) == 0 {
		e.owned[which][i/64] |= 1 << (i % 64)
		if *m == nil {
			*m = map[Key][]Key{}
		} else {
			*m = cloneMap(*m)
		}
	}
	return *m
}

func (e *indexEditor) add(which int, k, v Key) {
	cur := e.ix.at(which).shards[shardOf(k)][k]
	i, found := slices.BinarySearchFunc(cur, v, compareKeys)
	if found {
		return
	}
	m := e.shard(which, k)
	fk := freshKey{which, k}
	if e.fresh[fk] {
		m[k] = slices.Insert(cur, i, v)
		return
	}
	next := make([]Key, 0, len(cur)+1)
	next = append(append(append(next, cur[:i]...), v), cur[i:]...)
	m[k] = next
	if e.fresh == nil {
		e.fresh = map[freshKey]bool{}
	}
	e.fresh[fk] = true
}

func (e *indexEditor) remove(which int, k, v Key) {
	cur := e.ix.at(which).shards[shardOf(k)][k]
	i, found := slices.BinarySearchFunc(cur, v, compareKeys)
	if !found {
		return
	}
	m := e.shard(which, k)
	fk := freshKey{which, k}
	switch {
	case len(cur) == 1:
		delete(m, k)
		delete(e.fresh, fk)
	case e.fresh[fk]:
		m[k] = slices.Delete(cur, i, i+1)
	default:
		next := make([]Key, 0, len(cur)-1)
		m[k] = append(append(next, cur[:i]...), cur[i+1:]...)
		if e.fresh == nil {
			e.fresh = map[freshKey]bool{}
		}
		e.fresh[fk] = true
	}
}

// replace updates the index for old becoming o, both stored under k and of the same kind; old
// is nil when there was none, o when it is deleted.
func (e *indexEditor) replace(k Key, old, o v1.Object) {
	either := o
	if either == nil {
		either = old
	}
	switch either.(type) {
	case *v1.Revision:
		oldRev, _ := old.(*v1.Revision)
		rev, _ := o.(*v1.Revision)
		var was, is Key
		var had, has bool
		if oldRev != nil {
			was, had = revisionConfiguration(k, oldRev)
		}
		if rev != nil {
			is, has = revisionConfiguration(k, rev)
		}
		if had == has && was == is {
			return
		}
		if had {
			e.remove(ixRevsByCfg, was, k)
		}
		if has {
			e.add(ixRevsByCfg, is, k)
		}
	case *v1.Configuration:
		oldCfg, _ := old.(*v1.Configuration)
		c, _ := o.(*v1.Configuration)
		if oldCfg != nil && c != nil && oldCfg.Status.LatestCreatedRevisionName == c.Status.LatestCreatedRevisionName &&
			oldCfg.Status.LatestReadyRevisionName == c.Status.LatestReadyRevisionName {
			return
		}
		if oldCfg != nil {
			created, ready := configurationLatest(k, oldCfg)
			e.remove(ixCfgsByLatest, created, k)
			e.remove(ixCfgsByLatest, ready, k)
		}
		if c != nil {
			created, ready := configurationLatest(k, c)
			e.add(ixCfgsByLatest, created, k)
			e.add(ixCfgsByLatest, ready, k)
		}
	case *v1.Route:
		oldRt, _ := old.(*v1.Route)
		rt, _ := o.(*v1.Route)
		if oldRt != nil && rt != nil && sameRouteRefs(oldRt, rt) {
			return
		}
		if oldRt != nil {
			routeRefs(k, oldRt, func(which int, ref Key) { e.remove(which, ref, k) })
		}
		if rt != nil {
			routeRefs(k, rt, func(which int, ref Key) { e.add(which, ref, k) })
		}
	}
}
