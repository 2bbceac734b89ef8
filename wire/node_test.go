package wire

import (
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestClassifyNode(t *testing.T) {
	override := func(ua, kind string) *core.Node {
		return &core.Node{UserAgentName: ua, Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			NodeKindMetadataKey: structpb.NewStringValue(kind),
		}}}
	}
	for _, tc := range []struct {
		node *core.Node
		want NodeKind
	}{
		{&core.Node{UserAgentName: "envoy"}, NodeEnvoy},
		{&core.Node{UserAgentName: "gRPC Go"}, NodeGRPC},
		{&core.Node{UserAgentName: "gRPC Java"}, NodeGRPC},
		{&core.Node{}, NodeEnvoy},
		{nil, NodeEnvoy},
		{&core.Node{UserAgentName: "curl"}, NodeEnvoy},
		{override("gRPC Go", "envoy"), NodeEnvoy},
		{override("envoy", "GRPC"), NodeGRPC},
		{override("gRPC Go", "bogus"), NodeGRPC},
		{override(ActivatorUserAgent, "activator"), NodeActivator},
	} {
		if got := ClassifyNode(tc.node); got != tc.want {
			t.Errorf("ClassifyNode(%v) = %s, want %s", tc.node, got, tc.want)
		}
	}
}
