package xds

import (
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/sluice-dev/sluice/wire"
)

// nodeKind tells the kind of an xDS client by wire's rule, from its node.
func nodeKind(node *core.Node) wire.NodeKind {
	return wire.ClassifyNode(node.GetMetadata().GetFields()[wire.NodeKindMetadataKey].GetStringValue(), node.GetUserAgentName())
}
