package routing

import (
	"cmp"
	"slices"
	"time"

	v1 "github.com/sluice-dev/sluice/routing/v1"
	"github.com/sluice-dev/sluice/traffic"
)

// BuildTable resolves st into the routing Table. It routes by each Route's status.traffic (what
// Reconcile last found servable), not its spec, so traffic only moves to revisions that are
// ready; a Route that has served nothing yet gets no virtual host. Every revision gets a
// backend, referenced or not.
//
// A TableBuilder gives the same Table, recomputing only what changed since its last build.
func BuildTable(st *State, src EndpointSource, cfg Config) *Table {
	t := &Table{}
	for k, rt := range st.Routes {
		t.Hosts = appendRouteHosts(t.Hosts, st, cfg, k, rt)
	}
	slices.SortFunc(t.Hosts, compareHosts)
	t.Backends = make([]Backend, 0, len(st.Revisions))
	for k, rev := range st.Revisions {
		b, _ := backendOf(k, rev, src, nil)
		t.Backends = append(t.Backends, b)
	}
	slices.SortFunc(t.Backends, compareBackends)
	return t
}

// compareHosts is the order of Table.Hosts: by name, then visibility. The rest of the key only
// breaks ties between hosts of different routes that happen to get the same name (a route
// "v1-hello" and the tag v1 of a route "hello"), so that even then the order is deterministic.
func compareHosts(a, b VirtualHost) int {
	if c := cmp.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Visibility, b.Visibility); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Route, b.Route); c != 0 {
		return c
	}
	return cmp.Compare(a.Tag, b.Tag)
}

// compareBackends is the order of Table.Backends; cluster names are unique.
func compareBackends(a, b Backend) int { return cmp.Compare(a.Cluster, b.Cluster) }

// appendRouteHosts adds a route's hosts: on the external listener unless it is cluster-local,
// and on the internal one, each its main host and a host per tag. Hosts of one route on the two
// listeners share their HTTPRoute slices (they are equal, and nothing mutates them).
func appendRouteHosts(hosts []VirtualHost, st *State, cfg Config, k Key, rt *v1.Route) []VirtualHost {
	if len(rt.Status.Traffic) == 0 {
		return hosts
	}
	ns := k.Namespace
	var tagBuf [4]traffic.Tag
	var shareBuf [4]traffic.Share
	tags, shares := traffic.Group(rt.Status.Traffic, tagBuf[:0], shareBuf[:0])
	main := make([]HTTPRoute, 0, len(tags)+1)
	tagRoutes := make([][]HTTPRoute, len(tags))
	for i, t := range tags {
		r := route(st, ns, []Split{split(ns, t.Revision, 100)}, "")
		tagRoutes[i] = []HTTPRoute{r}
		r.TagHeader = t.Name
		main = append(main, r)
	}
	if len(shares) > 0 {
		splits := make([]Split, len(shares))
		for i, s := range shares {
			splits[i] = split(ns, s.Revision, s.Percent)
		}
		main = append(main, route(st, ns, splits, ""))
	}
	if len(main) == 0 {
		main = nil
	}
	add := func(vis Visibility, host func(tag string) string) {
		for i, t := range tags {
			hosts = append(hosts, VirtualHost{
				Name: host(t.Name), Namespace: ns, Route: rt.Name, Tag: t.Name, Visibility: vis, Routes: tagRoutes[i],
			})
		}
		hosts = append(hosts, VirtualHost{Name: host(""), Namespace: ns, Route: rt.Name, Visibility: vis, Routes: main})
	}
	if !clusterLocal(rt) {
		add(External, func(tag string) string { return cfg.ExternalHost(ns, k.Name, tag) })
	}
	add(ClusterLocal, func(tag string) string { return ClusterLocalHost(ns, k.Name, tag) })
	return hosts
}

func split(ns, rev string, percent uint32) Split {
	return Split{Cluster: ClusterName(ns, rev), Namespace: ns, Revision: rev, Percent: percent}
}

// route sorts splits and takes the longest timeout among their revisions, so no revision's
// requests are cut shorter than it allows.
func route(st *State, ns string, splits []Split, tag string) HTTPRoute {
	slices.SortFunc(splits, func(a, b Split) int { return cmp.Compare(a.Cluster, b.Cluster) })
	var timeout int64
	for _, s := range splits {
		secs := int64(v1.DefaultTimeoutSeconds)
		if rev := st.Revisions[Key{Namespace: ns, Name: s.Revision}]; rev != nil && rev.Spec.TimeoutSeconds != nil {
			secs = *rev.Spec.TimeoutSeconds
		}
		timeout = max(timeout, secs)
	}
	return HTTPRoute{TagHeader: tag, Splits: splits, Timeout: time.Duration(timeout) * time.Second}
}

// backendOf is a revision's backend. When old (the revision's previous backend) equals it, old
// is returned as it is, with changed false, so its slices stay the same.
func backendOf(k Key, rev *v1.Revision, src EndpointSource, old *Backend) (b Backend, changed bool) {
	in := src.Instances(rev)
	eps := in.Endpoints
	copied := false
	if !slices.IsSortedFunc(eps, compareEndpoints) {
		eps, copied = slices.Clone(eps), true
		sortEndpoints(eps)
	}
	proto := protocolOf(rev)
	scaled := scaledOf(rev, in)
	if old != nil && old.Protocol == proto && slices.Equal(old.Endpoints, eps) && equalScaled(old.Scaled, scaled) {
		return *old, false
	}
	if len(eps) == 0 {
		eps = nil
	} else if !copied {
		// Keep a copy: the source may share its slice (StaticEndpoints does).
		eps = slices.Clone(eps)
	}
	if old != nil && equalScaled(old.Scaled, scaled) {
		scaled = old.Scaled
	}
	return Backend{
		Cluster:   ClusterName(k.Namespace, k.Name),
		Namespace: k.Namespace,
		Revision:  k.Name,
		Protocol:  proto,
		Endpoints: eps,
		Scaled:    scaled,
	}, true
}

// scaledOf is the activator's view of a scaled revision; nil when sluice does not scale it.
func scaledOf(rev *v1.Revision, in Instances) *Scaled {
	if !in.Scaled {
		return nil
	}
	s := &Scaled{TimeoutSeconds: v1.DefaultTimeoutSeconds, Proxied: !slices.Equal(in.Endpoints, in.Backends)}
	if len(in.Backends) > 0 {
		s.Instances = slices.Clone(in.Backends)
		sortEndpoints(s.Instances)
	}
	if cc := rev.Spec.ContainerConcurrency; cc != nil {
		s.ContainerConcurrency = *cc
	}
	if t := rev.Spec.TimeoutSeconds; t != nil {
		s.TimeoutSeconds = *t
	}
	return s
}

func equalScaled(a, b *Scaled) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.ContainerConcurrency == b.ContainerConcurrency && a.TimeoutSeconds == b.TimeoutSeconds &&
		a.Proxied == b.Proxied && slices.Equal(a.Instances, b.Instances)
}

func protocolOf(rev *v1.Revision) Protocol {
	if rev.Spec.PodSpec == nil {
		return HTTP1
	}
	for _, c := range rev.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == "h2c" || p.Name == "http2" {
				return H2C
			}
		}
	}
	return HTTP1
}
