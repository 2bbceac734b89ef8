package envoy

import (
	"slices"

	"github.com/sluice-dev/sluice/routing"
)

// These run for every host and backend on every translation, so they compare field by field
// instead of going through reflect.DeepEqual. A field added to the IR must be added here too;
// TestEqualCoversEveryField fails until it is.

func equalVirtualHost(a, b *routing.VirtualHost) bool {
	return a.Name == b.Name && a.Namespace == b.Namespace && a.Route == b.Route &&
		a.Tag == b.Tag && a.Visibility == b.Visibility &&
		slices.EqualFunc(a.Routes, b.Routes, equalHTTPRoute)
}

func equalHTTPRoute(a, b routing.HTTPRoute) bool {
	// Split is a struct of comparable fields, so == compares it whole.
	return a.TagHeader == b.TagHeader && a.Timeout == b.Timeout && slices.Equal(a.Splits, b.Splits)
}

func equalBackend(a, b *routing.Backend) bool {
	return a.Cluster == b.Cluster && a.Namespace == b.Namespace && a.Revision == b.Revision &&
		a.Protocol == b.Protocol && slices.Equal(a.Endpoints, b.Endpoints) && equalScaled(a.Scaled, b.Scaled)
}

func equalScaled(a, b *routing.Scaled) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.ContainerConcurrency == b.ContainerConcurrency && a.TimeoutSeconds == b.TimeoutSeconds &&
		a.Proxied == b.Proxied && slices.Equal(a.Instances, b.Instances)
}
