package routing

import (
	"fmt"
	"sort"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Delete removes the object ref names and what it owns: a Service its Configuration, Route
// and Revisions; a Configuration its Revisions. Objects owned by a Service are deleted through
// the Service. A revision that some remaining Route still sends traffic to, or still names in
// its spec, cannot be deleted: its traffic must move first, or requests would fail.
func Delete(st *State, ref Ref) (Change, error) {
	obj := st.Get(ref)
	if isNil(obj) {
		return Change{}, fmt.Errorf("%s not found", ref)
	}
	if ref.Kind != v1.KindService && ref.Kind != v1.KindRevision {
		if owner := ownerOf(obj); owner != "" {
			return Change{}, fmt.Errorf("%s is owned by Service %s/%s: delete the Service instead", ref, ref.Namespace, owner)
		}
	}
	gone := map[Ref]bool{ref: true}
	switch ref.Kind {
	case v1.KindService:
		gone[Ref{Kind: v1.KindConfiguration, Key: ref.Key}] = true
		gone[Ref{Kind: v1.KindRoute, Key: ref.Key}] = true
		revisionsOf(st, ref.Key, gone)
	case v1.KindConfiguration:
		revisionsOf(st, ref.Key, gone)
	}
	if err := checkUnreferenced(st, gone); err != nil {
		return Change{}, fmt.Errorf("cannot delete %s: %w", ref, err)
	}
	var c Change
	for r := range gone {
		if !isNil(st.Get(r)) {
			c.Delete = append(c.Delete, r)
		}
	}
	sort.Slice(c.Delete, func(i, j int) bool { return refLess(c.Delete[i], c.Delete[j]) })
	return c, nil
}

func refLess(a, b Ref) bool {
	if a.Kind != b.Kind {
		return a.Kind < b.Kind
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// revisionsOf adds the revisions of configuration k to gone.
func revisionsOf(st *State, k Key, gone map[Ref]bool) {
	for rk, rev := range st.Revisions {
		if rk.Namespace == k.Namespace && rev.Labels[v1.LabelConfiguration] == k.Name {
			gone[Ref{Kind: v1.KindRevision, Key: rk}] = true
		}
	}
}

// checkUnreferenced fails if a Route that stays references a revision or configuration that goes.
func checkUnreferenced(st *State, gone map[Ref]bool) error {
	for _, rk := range sortedKeys(st.Routes) {
		if gone[Ref{Kind: v1.KindRoute, Key: rk}] {
			continue
		}
		r := st.Routes[rk]
		check := func(field string, tt []v1.TrafficTarget) error {
			for i, t := range tt {
				if t.RevisionName != "" && gone[Ref{Kind: v1.KindRevision, Key: Key{rk.Namespace, t.RevisionName}}] {
					return fmt.Errorf("revision %q is still referenced by %s (%s[%d]): move its traffic first",
						t.RevisionName, describeRoute(r), field, i)
				}
				if t.ConfigurationName != "" && gone[Ref{Kind: v1.KindConfiguration, Key: Key{rk.Namespace, t.ConfigurationName}}] {
					return fmt.Errorf("configuration %q is still referenced by %s (%s[%d])",
						t.ConfigurationName, describeRoute(r), field, i)
				}
			}
			return nil
		}
		if err := check("spec.traffic", r.Spec.Traffic); err != nil {
			return err
		}
		if err := check("status.traffic", r.Status.Traffic); err != nil {
			return err
		}
	}
	return nil
}

// describeRoute names a route by what the user manages: its Service when it has one.
func describeRoute(r *v1.Route) string {
	if owner := ownerOf(r); owner != "" {
		return "Service " + r.Namespace + "/" + owner
	}
	return v1.Describe(r)
}
