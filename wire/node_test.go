package wire

import "testing"

func TestClassifyNode(t *testing.T) {
	for _, tc := range []struct {
		stated, userAgent string
		want              NodeKind
	}{
		{"", "envoy", NodeEnvoy},
		{"", "gRPC Go", NodeGRPC},
		{"", "gRPC Java", NodeGRPC},
		{"", "", NodeEnvoy},
		{"", "curl", NodeEnvoy},
		{"envoy", "gRPC Go", NodeEnvoy},
		{"GRPC", "envoy", NodeGRPC},
		{"bogus", "gRPC Go", NodeGRPC},
		{"activator", ActivatorUserAgent, NodeActivator},
	} {
		if got := ClassifyNode(tc.stated, tc.userAgent); got != tc.want {
			t.Errorf("ClassifyNode(%q, %q) = %s, want %s", tc.stated, tc.userAgent, got, tc.want)
		}
	}
}
