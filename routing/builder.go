package routing

import (
	"cmp"
	"slices"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// TableBuilder builds Tables like BuildTable, but remembers each Route's virtual hosts and each
// Revision's backend so that a build after a few changes recomputes only those and patches the
// previous Table's sorted slices instead of sorting everything again. Values that did not
// change are the very same ones as in the previous Table (same slices), which is what the envoy
// translator's memo keys on.
//
// Tables it returns share slices with each other: treat them as read-only, as every Table is.
// A TableBuilder is not safe for concurrent use.
type TableBuilder struct {
	cfg  Config
	last *Table
	// routes describes each Route's hosts in last, enough to find them there (see lastHosts)
	// without keeping a second copy of them. Routes without hosts are absent.
	//
	// Each Revision's backend is not memoised apart from last: last.Backends, sorted by cluster
	// name, is looked up instead (lastBackend). The routes whose served traffic names a revision
	// (their hosts read it, its timeout, so they are rebuilt when it changes) come from the
	// State's index (routesByRev) rather than a map of the builder's own.
	routes map[Key]routeHosts
	// diff is what the last Build changed relative to the Table before it (see LastDiff).
	diff TableDiff
}

// TableDiff names what one Build changed, so that the stages after it (the envoy translator, the
// xds server) can look at those hosts and backends only instead of comparing the whole Table.
// It may name more than changed (every host of a Route that was rebuilt, say), never less.
type TableDiff struct {
	// Hosts are the virtual hosts added, changed or removed, by name and visibility.
	Hosts []HostRef
	// Backends are the cluster names of the backends added, changed or removed.
	Backends []string
	// Full means anything may have changed (a first or full build): compare everything.
	Full bool
}

// HostRef names a virtual host: names are unique within a visibility.
type HostRef struct {
	Name       string
	Visibility Visibility
}

// Empty reports whether the diff names nothing: the Table is the previous one.
func (d TableDiff) Empty() bool { return !d.Full && len(d.Hosts) == 0 && len(d.Backends) == 0 }

// routeHosts names a Route's hosts in a Table: for each visibility it has (ClusterLocal always,
// External unless external is false), a host per tag and its main host, all with Route route.
type routeHosts struct {
	route    string
	tags     []string
	external bool
}

// routeHostsOf describes hosts, which appendRouteHosts made for one route (not empty).
func routeHostsOf(hosts []VirtualHost) routeHosts {
	m := routeHosts{route: hosts[0].Route}
	for i := range hosts {
		if hosts[i].Visibility == External {
			m.external = true
		} else if hosts[i].Tag != "" {
			m.tags = append(m.tags, hosts[i].Tag)
		}
	}
	return m
}

// lastHosts returns route k's hosts in the last Table, as its memo names them; ok is false if
// one of them is not there (the memo disagrees with the Table), so the caller can rebuild.
func (b *TableBuilder) lastHosts(k Key) (hosts []VirtualHost, ok bool) {
	m, had := b.routes[k]
	if !had {
		return nil, true
	}
	if b.last == nil {
		return nil, false
	}
	n := len(m.tags) + 1
	if m.external {
		n *= 2
	}
	hosts = make([]VirtualHost, 0, n)
	find := func(vis Visibility, name, tag string) bool {
		key := VirtualHost{Name: name, Namespace: k.Namespace, Route: m.route, Tag: tag, Visibility: vis}
		i, found := slices.BinarySearchFunc(b.last.Hosts, key, compareHosts)
		if found {
			hosts = append(hosts, b.last.Hosts[i])
		}
		return found
	}
	for _, vis := range [2]Visibility{External, ClusterLocal} {
		if vis == External && !m.external {
			continue
		}
		host := func(tag string) string { return ClusterLocalHost(k.Namespace, k.Name, tag) }
		if vis == External {
			host = func(tag string) string { return b.cfg.ExternalHost(k.Namespace, k.Name, tag) }
		}
		for _, tag := range m.tags {
			if !find(vis, host(tag), tag) {
				return nil, false
			}
		}
		if !find(vis, host(""), "") {
			return nil, false
		}
	}
	return hosts, true
}

// NewTableBuilder returns a builder with nothing built yet.
func NewTableBuilder(cfg Config) *TableBuilder {
	return &TableBuilder{cfg: cfg}
}

// Build returns the Table of st, equal to BuildTable(st, src, cfg).
//
// changed names what may differ since the previous Build: every object put or deleted (a
// Route's hosts come from its status, so a Route whose status changed is in changed), and every
// revision whose instances in src changed. A Service stands for its Route; Configurations do not
// affect the Table. changed nil rebuilds everything, as does the first Build. When nothing
// changed the previous Table itself is returned.
//
// LastDiff then says what differs from the Table the previous Build returned.
func (b *TableBuilder) Build(st *State, src EndpointSource, changed []Ref) *Table {
	tab, _ := b.BuildDiff(st, src, changed)
	return tab
}

// LastDiff is what the last Build (or BuildDiff) changed relative to the Table returned by the
// Build before it. A caller that skipped translating some Table must not chain diffs across it:
// it translates with Full instead (a diff describes one step, not an accumulation).
func (b *TableBuilder) LastDiff() TableDiff { return b.diff }

// BuildDiff is Build returning LastDiff too.
func (b *TableBuilder) BuildDiff(st *State, src EndpointSource, changed []Ref) (*Table, TableDiff) {
	if changed == nil || b.last == nil {
		b.diff = TableDiff{Full: true}
		return b.full(st, src), b.diff
	}
	b.diff = TableDiff{}
	var dirtyRoutes, dirtyRevs []Key
	for _, r := range changed {
		switch r.Kind {
		case v1.KindRoute, v1.KindService:
			dirtyRoutes = append(dirtyRoutes, r.Key)
		case v1.KindRevision:
			dirtyRevs = append(dirtyRevs, r.Key)
			// The routes that served the revision at the previous Build: a route that still
			// does is unchanged, so st's index has it; one that no longer does is in changed.
			// The index may name more (spec traffic too): rebuilding those changes nothing.
			dirtyRoutes = append(dirtyRoutes, st.index().routesByRev.get(r.Key)...)
		}
	}
	dirtyRoutes, dirtyRevs = sortKeys(dirtyRoutes), sortKeys(dirtyRevs)

	var rmBackends, addBackends []Backend
	for _, k := range dirtyRevs {
		old, had := b.lastBackend(k)
		rev := st.Revisions[k]
		if rev == nil {
			if had {
				rmBackends = append(rmBackends, old)
			}
			continue
		}
		var oldp *Backend
		if had {
			oldp = &old
		}
		nb, diff := backendOf(k, rev, src, oldp)
		if !diff {
			continue
		}
		if had {
			rmBackends = append(rmBackends, old)
		}
		addBackends = append(addBackends, nb)
	}

	var rmHosts, addHosts []VirtualHost
	for _, k := range dirtyRoutes {
		old, ok := b.lastHosts(k)
		if !ok {
			b.diff = TableDiff{Full: true}
			return b.full(st, src), b.diff
		}
		var hosts []VirtualHost
		if rt := st.Routes[k]; rt != nil {
			hosts = appendRouteHosts(nil, st, b.cfg, k, rt)
			shareClusterNames(hosts, b.lastBackends())
		}
		allSame := reuseHosts(hosts, old)
		if len(hosts) == 0 {
			delete(b.routes, k)
		} else {
			b.routes[k] = routeHostsOf(hosts)
		}
		if allSame && len(hosts) == len(old) {
			continue
		}
		rmHosts = append(rmHosts, old...)
		addHosts = append(addHosts, hosts...)
	}

	if len(rmHosts)+len(addHosts)+len(rmBackends)+len(addBackends) == 0 {
		return b.last, b.diff
	}
	t := &Table{Hosts: b.last.Hosts, Backends: b.last.Backends}
	var ok bool
	if len(rmHosts)+len(addHosts) > 0 {
		if t.Hosts, ok = patchSorted(b.last.Hosts, rmHosts, addHosts, compareHosts); !ok {
			b.diff = TableDiff{Full: true}
			return b.full(st, src), b.diff
		}
		if len(t.Hosts) == 0 {
			t.Hosts = nil // as BuildTable has it
		}
	}
	if len(rmBackends)+len(addBackends) > 0 {
		if t.Backends, ok = patchSorted(b.last.Backends, rmBackends, addBackends, compareBackends); !ok {
			b.diff = TableDiff{Full: true}
			return b.full(st, src), b.diff
		}
	}
	b.diff = diffOf(rmHosts, addHosts, rmBackends, addBackends)
	b.last = t
	return t, b.diff
}

// diffOf names the hosts and backends a patch removed or added, each once, sorted. A changed
// value is both removed (old) and added (new) under the same name.
func diffOf(rmHosts, addHosts []VirtualHost, rmBackends, addBackends []Backend) TableDiff {
	d := TableDiff{
		Hosts:    make([]HostRef, 0, len(rmHosts)+len(addHosts)),
		Backends: make([]string, 0, len(rmBackends)+len(addBackends)),
	}
	for _, hs := range [2][]VirtualHost{rmHosts, addHosts} {
		for i := range hs {
			d.Hosts = append(d.Hosts, HostRef{Name: hs[i].Name, Visibility: hs[i].Visibility})
		}
	}
	for _, bs := range [2][]Backend{rmBackends, addBackends} {
		for i := range bs {
			d.Backends = append(d.Backends, bs[i].Cluster)
		}
	}
	slices.SortFunc(d.Hosts, func(a, b HostRef) int {
		if c := cmp.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return cmp.Compare(a.Visibility, b.Visibility)
	})
	d.Hosts = slices.Compact(d.Hosts)
	slices.Sort(d.Backends)
	d.Backends = slices.Compact(d.Backends)
	return d
}

// full rebuilds every route's hosts and every backend, keeping the previous values that are
// unchanged, and sorts the lot.
func (b *TableBuilder) full(st *State, src EndpointSource) *Table {
	t := &Table{}
	// Backends first: the hosts' splits share their cluster names.
	t.Backends = make([]Backend, 0, len(st.Revisions))
	for k, rev := range st.Revisions {
		var oldp *Backend
		if old, ok := b.lastBackend(k); ok {
			oldp = &old
		}
		nb, _ := backendOf(k, rev, src, oldp)
		t.Backends = append(t.Backends, nb)
	}
	slices.SortFunc(t.Backends, compareBackends)

	routes := make(map[Key]routeHosts, len(st.Routes))
	type routeHostList struct {
		k     Key
		hosts []VirtualHost
	}
	perRoute := make([]routeHostList, 0, len(st.Routes))
	n := 0
	for k, rt := range st.Routes {
		hosts := appendRouteHosts(nil, st, b.cfg, k, rt)
		if len(hosts) == 0 {
			continue
		}
		shareClusterNames(hosts, t.Backends)
		if old, ok := b.lastHosts(k); ok {
			reuseHosts(hosts, old)
		}
		perRoute = append(perRoute, routeHostList{k, hosts})
		n += len(hosts)
	}
	if n > 0 { // else nil, as BuildTable has it
		// Exactly as long as needed: the Table is kept until the next build.
		t.Hosts = make([]VirtualHost, 0, n)
		for _, r := range perRoute {
			t.Hosts = append(t.Hosts, r.hosts...)
			routes[r.k] = routeHostsOf(r.hosts)
		}
	}
	slices.SortFunc(t.Hosts, compareHosts)
	b.routes, b.last = routes, t
	return t
}

// lastBackends are the last Table's backends, if any.
func (b *TableBuilder) lastBackends() []Backend {
	if b.last == nil {
		return nil
	}
	return b.last.Backends
}

// shareClusterNames points the Cluster of every split of hosts, which appendRouteHosts has just
// made (nothing else holds them yet), at the equal string of the backend in backends (sorted by
// cluster name), so the Table keeps each cluster name once rather than once per split. A split
// without such a backend keeps its own string; one whose backend is being replaced shares the
// old backend's, which is equal.
func shareClusterNames(hosts []VirtualHost, backends []Backend) {
	for i := range hosts {
		for _, r := range hosts[i].Routes {
			for j := range r.Splits {
				sp := &r.Splits[j]
				if k, found := slices.BinarySearchFunc(backends, sp.Cluster, func(x Backend, c string) int {
					return cmp.Compare(x.Cluster, c)
				}); found {
					sp.Cluster = backends[k].Cluster
				}
			}
		}
	}
}

// lastBackend is revision k's backend in the last Table, found by its cluster name.
func (b *TableBuilder) lastBackend(k Key) (Backend, bool) {
	if b.last == nil {
		return Backend{}, false
	}
	bs := b.last.Backends
	i, found := slices.BinarySearchFunc(bs, ClusterName(k.Namespace, k.Name), func(x Backend, c string) int {
		return cmp.Compare(x.Cluster, c)
	})
	if !found || bs[i].Namespace != k.Namespace || bs[i].Revision != k.Name {
		return Backend{}, false
	}
	return bs[i], true
}

// reuseHosts replaces each host of now that equals a host of old by that old value, so its
// slices are the old ones, and reports whether every host of now was replaced.
func reuseHosts(now, old []VirtualHost) (all bool) {
	all = true
	for i := range now {
		found := false
		for j := range old {
			if vhostEqual(now[i], old[j]) {
				now[i], found = old[j], true
				break
			}
		}
		all = all && found
	}
	return all
}

func vhostEqual(a, b VirtualHost) bool {
	if a.Name != b.Name || a.Namespace != b.Namespace || a.Route != b.Route || a.Tag != b.Tag ||
		a.Visibility != b.Visibility || len(a.Routes) != len(b.Routes) {
		return false
	}
	for i := range a.Routes {
		x, y := a.Routes[i], b.Routes[i]
		if x.TagHeader != y.TagHeader || x.Timeout != y.Timeout || !slices.Equal(x.Splits, y.Splits) {
			return false
		}
	}
	return true
}

// patchSorted returns a copy of old, which is sorted by cmp with unique keys, without the
// elements rm and with those of add in order. It costs one copy of old plus a binary search per
// element of rm and add: far less than sorting again. ok is false if an element of rm is not in
// old (the builder's memo disagrees with its last Table), so the caller can rebuild instead.
func patchSorted[T any](old, rm, add []T, cmp func(a, b T) int) (out []T, ok bool) {
	rmIdx := make([]int, 0, len(rm))
	for _, x := range rm {
		i, found := slices.BinarySearchFunc(old, x, cmp)
		if !found {
			return nil, false
		}
		rmIdx = append(rmIdx, i)
	}
	slices.Sort(rmIdx)
	add = slices.Clone(add)
	slices.SortFunc(add, cmp)
	out = make([]T, 0, len(old)-len(rm)+len(add))
	i, r := 0, 0
	// copyTo appends old[i:end] to out, skipping removed indices.
	copyTo := func(end int) {
		for ; r < len(rmIdx) && rmIdx[r] < end; r++ {
			out = append(out, old[i:rmIdx[r]]...)
			i = rmIdx[r] + 1
		}
		if i < end {
			out = append(out, old[i:end]...)
			i = end
		}
	}
	for _, x := range add {
		pos, _ := slices.BinarySearchFunc(old, x, cmp)
		copyTo(max(pos, i))
		out = append(out, x)
	}
	copyTo(len(old))
	return out, true
}
