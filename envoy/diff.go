package envoy

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/sluice-dev/sluice/routing"
)

// Changes name the resources one translation added, changed or removed, per type, so that the
// xds layer diffs only those (xds.Server.UpdateChanged) instead of every resource.
type Changes struct {
	// Full means anything may have changed: the xds layer must diff everything (Update).
	Full bool
	// Names added, changed or removed, per resource type; a name absent from the Resources is
	// a removal. Unordered, each name once.
	Clusters           []string
	Endpoints          []string
	Routes             []string
	Listeners          []string
	APIListeners       []string
	ActivatorEndpoints []string
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return !c.Full && len(c.Clusters)+len(c.Endpoints)+len(c.Routes)+len(c.Listeners)+len(c.APIListeners)+
		len(c.ActivatorEndpoints) == 0
}

// LastChanges is what the last Translate or TranslateDiff changed relative to the Resources of
// the call before it. Translate always reports Full.
func (t *Translator) LastChanges() Changes { return t.changes }

// TranslateDiff returns the resources for tab, looking only at the hosts and backends d names:
// d must name every host and backend that differs from the Table of the previous call (which
// routing.TableBuilder's LastDiff does). d.Full, or no previous translation, is Translate.
// LastChanges then names the resources that changed.
//
// Ownership: unlike Translate's, the maps of the Resources it returns are owned by the
// Translator and patched in place by the next TranslateDiff, so a change costs map writes, not
// copies of 20k–60k-entry maps. They are valid until the next call on the Translator and must
// be read only by the caller's goroutine: the xds server reads them within UpdateChanged (or
// Update) and keeps only the resource pointers, which are immutable and may be kept forever.
// The first TranslateDiff after a Translate copies the maps once, since Translate's results
// are promised never to change.
func (t *Translator) TranslateDiff(tab *routing.Table, d routing.TableDiff) *Resources {
	if d.Full || t.last == nil {
		return t.Translate(tab)
	}
	res := t.own()
	ch := Changes{}
	t.changes = ch
	if len(d.Hosts) == 0 && len(d.Backends) == 0 && len(t.wantedChanged) == 0 && !t.wantedAll {
		return res
	}
	// Positions in the last Table no longer hold after a patch: Translate falls back to its
	// maps (see Translate's walk).
	t.hostOrder, t.backendOrder = nil, nil

	// Backends first: routes take their split headers from them.
	for _, name := range dedup(d.Backends) {
		old := t.backends[name]
		i, found := slices.BinarySearchFunc(tab.Backends, name, func(b routing.Backend, n string) int {
			return strings.Compare(b.Cluster, n)
		})
		if !found {
			if old != nil {
				delete(t.backends, name)
				t.dropBackend(old)
				delete(res.Clusters, name)
				delete(res.Endpoints, name)
				ch.Clusters = append(ch.Clusters, name)
				ch.Endpoints = append(ch.Endpoints, name)
				if old.activatorCLA != nil {
					delete(res.ActivatorEndpoints, name)
					ch.ActivatorEndpoints = append(ch.ActivatorEndpoints, name)
				}
			}
			continue
		}
		b := &tab.Backends[i]
		if old != nil && equalBackend(&old.ir, b) {
			continue
		}
		e := t.buildBackend(old, b)
		e.gen = t.gen
		t.backends[name] = e
		if old == nil || old.cluster != e.cluster {
			res.Clusters[name] = e.cluster
			ch.Clusters = append(ch.Clusters, name)
		}
		if old == nil || old.cla != e.cla {
			res.Endpoints[name] = e.cla
			ch.Endpoints = append(ch.Endpoints, name)
		}
		if (old == nil || old.activatorCLA != e.activatorCLA) && (old != nil && old.activatorCLA != nil || e.activatorCLA != nil) {
			if e.activatorCLA != nil {
				res.ActivatorEndpoints[name] = e.activatorCLA
			} else {
				delete(res.ActivatorEndpoints, name)
			}
			ch.ActivatorEndpoints = append(ch.ActivatorEndpoints, name)
		}
	}

	// Hosts: rebuild the named ones that differ, and collect per gateway listener which of its
	// virtual hosts are replaced (nil: removed).
	var gw [2]map[string]*routev3.VirtualHost
	var grpcNames []string
	for _, ref := range d.Hosts {
		g := gatewayIndex(ref.Visibility)
		key := hostKey{gatewayVis[g], ref.Name}
		old := t.hosts[key]
		i, found := slices.BinarySearchFunc(tab.Hosts, ref, func(h routing.VirtualHost, r routing.HostRef) int {
			if c := strings.Compare(h.Name, r.Name); c != 0 {
				return c
			}
			return cmp.Compare(h.Visibility, r.Visibility)
		})
		var vh *routev3.VirtualHost
		if found {
			h := &tab.Hosts[i]
			if old != nil && equalVirtualHost(&old.ir, h) {
				continue
			}
			e := t.buildHost(old, h)
			e.gen = t.gen
			t.hosts[key] = e
			vh = e.vhost
		} else {
			if old == nil {
				continue
			}
			delete(t.hosts, key)
			t.dropHost(old)
		}
		if gw[g] == nil {
			gw[g] = map[string]*routev3.VirtualHost{}
		}
		gw[g][ref.Name] = vh
		grpcNames = append(grpcNames, ref.Name)
	}

	// gRPC clients see one route configuration and API listener per host name (see grpcHost),
	// of the hosts they want: those that changed and those whose wantedness changed.
	for _, name := range t.takeWantedChanges(dedup(grpcNames), res.APIListeners) {
		rc, l := t.grpcFor(name)
		if rc == nil {
			if _, ok := res.Routes[name]; ok {
				delete(res.Routes, name)
				ch.Routes = append(ch.Routes, name)
			}
			if _, ok := res.APIListeners[name]; ok {
				delete(res.APIListeners, name)
				ch.APIListeners = append(ch.APIListeners, name)
			}
			continue
		}
		if res.Routes[name] != rc {
			res.Routes[name] = rc
			ch.Routes = append(ch.Routes, name)
		}
		if res.APIListeners[name] != l {
			res.APIListeners[name] = l
			ch.APIListeners = append(ch.APIListeners, name)
		}
	}

	// Envoy's listener route configurations: merge the replaced virtual hosts into the last
	// list, which is sorted by name like the Table, so the result is what Translate would list.
	for g, name := range gatewayNames {
		if gw[g] == nil {
			continue
		}
		last := &t.gateway[g]
		vhosts := mergeVirtualHosts(last.vhosts, gw[g])
		if slices.Equal(vhosts, last.vhosts) {
			continue
		}
		last.vhosts = vhosts
		last.rc = buildRouteConfiguration(name, vhosts)
		res.Routes[name] = last.rc
		ch.Routes = append(ch.Routes, name)
	}
	t.changes = ch
	return res
}

// own makes the current Resources' maps the Translator's to patch: Translate's results are
// shared with whoever holds them, so the first TranslateDiff after one copies them. It returns
// a fresh Resources over the owned maps.
func (t *Translator) own() *Resources {
	if !t.owned {
		t.last = &Resources{
			Clusters:     cloneOrMake(t.last.Clusters),
			Endpoints:    cloneOrMake(t.last.Endpoints),
			Routes:       cloneOrMake(t.last.Routes),
			Listeners:    t.last.Listeners, // never patched: the gateway listeners are fixed
			APIListeners: cloneOrMake(t.last.APIListeners),

			ActivatorEndpoints: cloneOrMake(t.last.ActivatorEndpoints),
		}
		t.owned = true
	}
	r := *t.last
	return &r
}

func cloneOrMake[V any](m map[string]*V) map[string]*V {
	if m == nil {
		return map[string]*V{}
	}
	return maps.Clone(m)
}

// mergeVirtualHosts returns a new list: old (sorted by name, unique) with the virtual hosts of
// repl replaced, inserted, or removed where nil, still sorted. old itself is left alone: the
// route configuration built from it may be being marshalled for a client right now.
func mergeVirtualHosts(old []*routev3.VirtualHost, repl map[string]*routev3.VirtualHost) []*routev3.VirtualHost {
	names := slices.Sorted(maps.Keys(repl))
	out := make([]*routev3.VirtualHost, 0, len(old)+len(names))
	i := 0
	for _, n := range names {
		j, found := slices.BinarySearchFunc(old[i:], n, func(v *routev3.VirtualHost, n string) int {
			return strings.Compare(v.GetName(), n)
		})
		out = append(out, old[i:i+j]...)
		i += j
		if found {
			i++
		}
		if v := repl[n]; v != nil {
			out = append(out, v)
		}
	}
	out = append(out, old[i:]...)
	if len(out) == 0 {
		return nil // as Translate lists no hosts
	}
	return out
}

// dedup returns names without repeats, keeping the first of each; names itself is left alone.
func dedup(names []string) []string {
	if len(names) < 2 {
		return names
	}
	seen := make(map[string]bool, len(names))
	out := make([]string, 0, len(names))
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}
