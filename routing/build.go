package routing

import (
	"sort"
	"time"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// BuildTable resolves st into the routing Table. It routes by each Route's status.traffic (what
// Reconcile last found servable), not its spec, so traffic only moves to revisions that are
// ready; a Route that has served nothing yet gets no virtual host. Every revision gets a
// backend, referenced or not.
func BuildTable(st *State, src EndpointSource, cfg Config) *Table {
	t := &Table{}
	for _, k := range sortedKeys(st.Routes) {
		rt := st.Routes[k]
		if len(rt.Status.Traffic) == 0 {
			continue
		}
		if !clusterLocal(rt) {
			t.Hosts = appendHosts(t.Hosts, st, rt, External, func(tag string) string {
				return cfg.ExternalHost(k.Namespace, k.Name, tag)
			})
		}
		t.Hosts = appendHosts(t.Hosts, st, rt, ClusterLocal, func(tag string) string {
			return ClusterLocalHost(k.Namespace, k.Name, tag)
		})
	}
	sort.Slice(t.Hosts, func(i, j int) bool {
		if t.Hosts[i].Name != t.Hosts[j].Name {
			return t.Hosts[i].Name < t.Hosts[j].Name
		}
		return t.Hosts[i].Visibility < t.Hosts[j].Visibility
	})

	t.Backends = make([]Backend, 0, len(st.Revisions))
	for _, k := range sortedKeys(st.Revisions) {
		rev := st.Revisions[k]
		eps := append([]Endpoint(nil), src.Instances(rev).Endpoints...)
		sortEndpoints(eps)
		t.Backends = append(t.Backends, Backend{
			Cluster:   ClusterName(k.Namespace, k.Name),
			Namespace: k.Namespace,
			Revision:  k.Name,
			Protocol:  protocolOf(rev),
			Endpoints: eps,
		})
	}
	sort.Slice(t.Backends, func(i, j int) bool { return t.Backends[i].Cluster < t.Backends[j].Cluster })
	return t
}

// appendHosts adds a route's main host and its tag hosts on one listener.
func appendHosts(hosts []VirtualHost, st *State, rt *v1.Route, vis Visibility, host func(tag string) string) []VirtualHost {
	ns := rt.Namespace
	var main []HTTPRoute
	tagged := map[string]string{}
	var tags []string
	for _, tt := range rt.Status.Traffic {
		if tt.Tag != "" {
			if _, dup := tagged[tt.Tag]; !dup {
				tags = append(tags, tt.Tag)
			}
			tagged[tt.Tag] = tt.RevisionName
		}
	}
	sort.Strings(tags)
	for _, tag := range tags {
		main = append(main, route(st, ns, []Split{split(ns, tagged[tag], 100)}, tag))
		hosts = append(hosts, VirtualHost{
			Name: host(tag), Namespace: ns, Route: rt.Name, Tag: tag, Visibility: vis,
			Routes: []HTTPRoute{route(st, ns, []Split{split(ns, tagged[tag], 100)}, "")},
		})
	}
	// Entries naming the same revision (say, a tag at 0% and the latest at 100%) share a split.
	percent := map[string]uint32{}
	var revs []string
	for _, tt := range rt.Status.Traffic {
		if tt.Percent == nil || *tt.Percent <= 0 {
			continue
		}
		if _, seen := percent[tt.RevisionName]; !seen {
			revs = append(revs, tt.RevisionName)
		}
		percent[tt.RevisionName] += uint32(*tt.Percent)
	}
	var splits []Split
	for _, rev := range revs {
		splits = append(splits, split(ns, rev, percent[rev]))
	}
	if len(splits) > 0 {
		main = append(main, route(st, ns, splits, ""))
	}
	return append(hosts, VirtualHost{Name: host(""), Namespace: ns, Route: rt.Name, Visibility: vis, Routes: main})
}

func split(ns, rev string, percent uint32) Split {
	return Split{Cluster: ClusterName(ns, rev), Namespace: ns, Revision: rev, Percent: percent}
}

// route sorts splits and takes the longest timeout among their revisions, so no revision's
// requests are cut shorter than it allows.
func route(st *State, ns string, splits []Split, tag string) HTTPRoute {
	sort.Slice(splits, func(i, j int) bool { return splits[i].Cluster < splits[j].Cluster })
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

func protocolOf(rev *v1.Revision) Protocol {
	for _, c := range rev.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == "h2c" || p.Name == "http2" {
				return H2C
			}
		}
	}
	return HTTP1
}
