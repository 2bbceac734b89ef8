package xds

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/wire"
)

// DebugState is what DebugHandler serves.
type DebugState struct {
	Caches []CacheStatus `json:"caches"`
	Nodes  []NodeStatus  `json:"nodes"`
}

// CacheStatus lists the resources of one cache and their versions.
type CacheStatus struct {
	TypeURL   string            `json:"type_url"`
	NodeKinds []wire.NodeKind   `json:"node_kinds"` // the kinds of node served from this cache
	Resources map[string]string `json:"resources"`  // name → version
}

// NodeStatus is one connected stream.
type NodeStatus struct {
	ID        string                `json:"id"`
	Kind      wire.NodeKind         `json:"kind"`
	UserAgent string                `json:"user_agent"`
	Protocol  string                `json:"protocol"` // sotw or delta
	Stream    int64                 `json:"stream"`
	Connected time.Time             `json:"connected"`
	Types     map[string]TypeStatus `json:"types"` // by type URL
	LastNACK  *NACK                 `json:"last_nack,omitempty"`
}

// TypeStatus is a stream's subscription to one type.
type TypeStatus struct {
	Wildcard   bool              `json:"wildcard"`
	Subscribed []string          `json:"subscribed,omitempty"`
	Acked      map[string]string `json:"acked"` // name → version
}

// Debug returns the current resources and connected nodes. Resources whose
// type URL does not contain typeFilter are left out ("" keeps all), since the
// full list can run to tens of thousands.
func (s *Server) Debug(typeFilter string) DebugState {
	var out DebugState
	s.mu.RLock()
	for _, key := range []cacheKey{keyClusters, keyEndpoints, keyRoutes, keyEnvoyListener, keyGRPCListener, keyActivatorEDS} {
		cs := s.caches[key]
		if !strings.Contains(cs.typeURL, typeFilter) {
			continue
		}
		c := CacheStatus{TypeURL: cs.typeURL, NodeKinds: cs.kinds, Resources: make(map[string]string, len(cs.entries))}
		for name, e := range cs.entries {
			c.Resources[name] = hexVersion(e.version)
		}
		out.Caches = append(out.Caches, c)
	}
	s.mu.RUnlock()
	out.Nodes = s.ConnectedNodes()
	return out
}

// ConnectedNodes describes every stream whose node has identified itself,
// ordered by node id.
func (s *Server) ConnectedNodes() []NodeStatus {
	t := s.nodes
	t.mu.Lock()
	defer t.mu.Unlock()
	nodes := make([]NodeStatus, 0, len(t.streams))
	for _, st := range t.streams {
		if st.node == nil {
			continue
		}
		n := NodeStatus{
			ID: st.node.GetId(), Kind: st.kind, UserAgent: st.node.GetUserAgentName(),
			Protocol: st.key.protocol(), Stream: st.key.id, Connected: st.opened,
			Types: make(map[string]TypeStatus, len(st.types)),
		}
		if st.lastNACK != nil {
			nack := *st.lastNACK
			n.LastNACK = &nack
		}
		for typeURL, ts := range st.types {
			if !ts.started {
				continue
			}
			tst := TypeStatus{Wildcard: ts.sub.IsWildcard(), Subscribed: sortedKeys(ts.sub.SubscribedResources()), Acked: make(map[string]string, len(ts.acked))}
			for name, a := range ts.acked {
				tst.Acked[name] = a.String()
			}
			n.Types[typeURL] = tst
		}
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, func(a, b NodeStatus) int {
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return int(a.Stream - b.Stream)
	})
	return nodes
}

// DebugHandler serves Debug as JSON; the query parameter "type" filters the
// resources by type URL substring (e.g. ?type=cluster.v3.Cluster).
func (s *Server) DebugHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s.Debug(r.URL.Query().Get("type"))); err != nil {
			s.log.Debug("xds debug: writing response", "error", err)
		}
	})
}
