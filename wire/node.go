package wire

import "strings"

// NodeKind says what an xDS client is served: Envoy gateways get the real
// listeners, proxyless gRPC clients get API listeners named by host; clusters,
// endpoints and route configurations are the same for both. Activators get load
// assignments of their own (a scaled revision's ready instances, even while the
// gateways' assignment for it points at the activator) and the per-host route
// configurations, to find the revision of a request from a gRPC client.
type NodeKind string

const (
	NodeEnvoy     NodeKind = "envoy"
	NodeGRPC      NodeKind = "grpc"
	NodeActivator NodeKind = "activator"
)

// NodeKinds lists every kind, in a stable order.
var NodeKinds = []NodeKind{NodeEnvoy, NodeGRPC, NodeActivator}

// NodeKindMetadataKey lets a client state its kind in node metadata when its
// user agent is misleading (e.g. a gRPC client that wants Envoy's listeners).
// The activator always states it.
const NodeKindMetadataKey = "sluice.dev/node-kind"

// ActivatorUserAgent is the user_agent_name the activator sends. It is for people reading
// logs and debug pages: ClassifyNode goes by the NodeKindMetadataKey the activator sends too.
const ActivatorUserAgent = "sluice-activator"

// grpcUserAgentPrefix starts the user_agent_name of every gRPC xDS client, case aside.
const grpcUserAgentPrefix = "grpc"

// ClassifyNode tells the kind of an xDS client from its node: stated is the value of its
// metadata field NodeKindMetadataKey ("" if it has none), userAgent its user_agent_name. A
// stated kind wins, in any case; else gRPC, which sets user_agent_name to "gRPC Go",
// "gRPC Java", "gRPC C-core"…; anything else, including a node that sends no user agent,
// is treated as Envoy because Envoy is what a bare bootstrap most likely is.
//
// It takes strings rather than the node's proto so that wire needs nothing but the standard
// library: reading them is node.GetMetadata().GetFields()[NodeKindMetadataKey].GetStringValue()
// and node.GetUserAgentName().
func ClassifyNode(stated, userAgent string) NodeKind {
	if stated != "" {
		switch NodeKind(strings.ToLower(stated)) {
		case NodeEnvoy:
			return NodeEnvoy
		case NodeGRPC:
			return NodeGRPC
		case NodeActivator:
			return NodeActivator
		}
	}
	if strings.HasPrefix(strings.ToLower(userAgent), grpcUserAgentPrefix) {
		return NodeGRPC
	}
	return NodeEnvoy
}
