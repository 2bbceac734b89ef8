package envoy

import (
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

func TestBootstrap(t *testing.T) {
	js, err := yaml.YAMLToJSON(BootstrapYAML)
	if err != nil {
		t.Fatalf("bootstrap.yaml: %v", err)
	}
	b := &bootstrapv3.Bootstrap{}
	// Strict: an unknown field is a typo Envoy would reject at start-up.
	if err := protojson.Unmarshal(js, b); err != nil {
		t.Fatalf("bootstrap.yaml: %v", err)
	}
	if err := validateDeep(b); err != nil {
		t.Fatalf("bootstrap.yaml: %v", err)
	}

	if b.GetNode().GetId() == "" || b.GetNode().GetCluster() == "" {
		t.Errorf("node id/cluster unset: %v", b.GetNode())
	}
	if sa := b.GetAdmin().GetAddress().GetSocketAddress(); sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 9901 {
		t.Errorf("admin on %v, want 127.0.0.1:9901", sa)
	}
	dr := b.GetDynamicResources()
	ads := dr.GetAdsConfig()
	if ads.GetApiType() != corev3.ApiConfigSource_DELTA_GRPC || ads.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("ads_config %v, want DELTA_GRPC v3", ads)
	}
	if gs := ads.GetGrpcServices(); len(gs) != 1 || gs[0].GetEnvoyGrpc().GetClusterName() != "sluice_xds" {
		t.Errorf("ads grpc services %v, want the sluice_xds cluster", gs)
	}
	if dr.GetLdsConfig().GetAds() == nil || dr.GetCdsConfig().GetAds() == nil {
		t.Errorf("lds/cds not over ADS: %v", dr)
	}

	cs := b.GetStaticResources().GetClusters()
	if len(cs) != 1 || cs[0].GetName() != "sluice_xds" {
		t.Fatalf("static clusters %v, want sluice_xds", cs)
	}
	lbs := cs[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()
	if sa := lbs[0].GetEndpoint().GetAddress().GetSocketAddress(); sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 18000 {
		t.Errorf("sluice_xds points at %v, want 127.0.0.1:18000", sa)
	}
	opts := &upstreamhttpv3.HttpProtocolOptions{}
	if err := cs[0].GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey].UnmarshalTo(opts); err != nil {
		t.Fatalf("sluice_xds protocol options: %v", err)
	}
	if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("sluice_xds does not speak HTTP/2, which gRPC needs")
	}
}
