package envoy

import (
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/wire"
)

// What gRPC-Go's xDS client (internal/xds/xdsclient/xdsresource, v1.85) does with what we emit.
// Everything below is accepted by its validation; these parts are ignored, so they only matter
// to Envoy:
//   - LDS: in the API listener's HttpConnectionManager only rds (config source must be ADS or
//     self, name non-empty), http_filters (router must be last and is the only terminal one) and
//     common_http_protocol_options.max_stream_duration are read; stat_prefix, codec_type,
//     upgrade_configs and use_remote_address are Envoy-only and left out of API listeners.
//   - RDS: request_headers_to_add (route and weighted cluster level) is ignored, so gRPC
//     backends do not receive Knative-Serving-Revision/Namespace; RouteAction.timeout is ignored
//     (gRPC reads max_stream_duration, which is why we set both); header matcher names are
//     lowercased by gRPC and we emit them lowercase anyway.
//   - CDS: connect_timeout and typed_extension_protocol_options are ignored (gRPC always speaks
//     HTTP/2); lb_policy must be ROUND_ROBIN, RING_HASH or LEAST_REQUEST, eds_config ADS or self.
//   - EDS: a locality needs a non-nil Locality and a non-zero load_balancing_weight or it is
//     dropped; a duplicate endpoint address NACKs the whole assignment, so we de-duplicate.

const (
	hcmFilterName    = "envoy.filters.network.http_connection_manager"
	routerFilterName = "envoy.filters.http.router"
	// httpProtocolOptionsKey is the extension name Envoy looks up in a cluster's
	// typed_extension_protocol_options for upstream HTTP settings.
	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	// connectTimeout bounds a TCP connect to a revision instance; a dead instance must fail over
	// quickly, and local instances connect in microseconds.
	connectTimeout = 5 * time.Second
)

// Shared immutable pieces. Reusing one pointer across every resource is safe because nothing
// mutates a proto after it is built, and it saves marshalling the same Any thousands of times.
var (
	adsConfigSource = &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
	routerFilter = &hcmv3.HttpFilter{
		Name:       routerFilterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
	}
	websocketUpgrade = []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}}
	// The parts every cluster and load assignment has in common. Held by pointer, they cost
	// nothing per revision; built per revision they were about a sixth of a cluster's memory.
	edsClusterType   = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
	edsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource}
	// lrsSelf asks gRPC clients to report the cluster's load to the server they get xDS from.
	lrsSelf = &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Self{Self: &corev3.SelfConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
	clusterConnect = durationpb.New(connectTimeout)
	// h2cOptions is a cluster's typed_extension_protocol_options for an h2c revision: a map,
	// shared like the rest (nothing ever writes to a built proto).
	h2cOptions     = map[string]*anypb.Any{httpProtocolOptionsKey: h2cProtocolOptions}
	singleLocality = &corev3.Locality{}
	localityWeight = wrapperspb.UInt32(1)
	// matchAll is the match of every route without a tag header.
	matchAll = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	// hcmTypeURL is the type URL of an HttpConnectionManager Any. anypb.New builds this string
	// anew for every Any, which per gRPC API listener is 90 bytes for nothing.
	hcmTypeURL         = "type.googleapis.com/" + string((&hcmv3.HttpConnectionManager{}).ProtoReflect().Descriptor().FullName())
	h2cProtocolOptions = mustAny(&upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	})
)

// mustAny wraps m in an Any. Marshalling fails only on invalid UTF-8 in a string field; every
// string we put in an Any is a DNS name or a constant, validated long before translation, so a
// failure is a bug in admission and not something to carry on from.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("envoy: marshal %T: %v", m, err))
	}
	return a
}

// buildCluster depends only on the name and protocol, never on endpoints, so a scale event
// leaves the cluster (and Envoy's connection pools) untouched.
//
// A scaled revision's cluster names the load reporting server: gRPC clients then report its
// requests in flight to sluice (LRS), which is what the autoscaler scales on. Envoy ignores the
// field and reports what its bootstrap's load_stats_config and the server's LRS response ask.
func buildCluster(name string, p routing.Protocol, scaled bool) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: edsClusterType,
		EdsClusterConfig:     edsClusterConfig,
		ConnectTimeout:       clusterConnect,
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
	if p == routing.H2C {
		c.TypedExtensionProtocolOptions = h2cOptions
	}
	if scaled {
		c.LrsServer = lrsSelf
	}
	return c
}

// buildActivatorLoadAssignment is what activators are told of a scaled revision: its ready
// instances (never the activator itself) and what the activator needs to forward to them, in
// the metadata of its one locality (wire.MetadataKey).
func buildActivatorLoadAssignment(b *routing.Backend) *endpointv3.ClusterLoadAssignment {
	s := b.Scaled
	cla := buildLoadAssignment(b.Cluster, s.Instances)
	loc := &endpointv3.LocalityLbEndpoints{Locality: singleLocality, LoadBalancingWeight: localityWeight}
	if len(cla.Endpoints) == 1 {
		loc = cla.Endpoints[0]
	}
	for _, lb := range loc.LbEndpoints {
		lb.HealthStatus = corev3.HealthStatus_HEALTHY
	}
	loc.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		wire.MetadataKey: {Fields: map[string]*structpb.Value{
			wire.MetadataContainerConcurrency: structpb.NewNumberValue(float64(s.ContainerConcurrency)),
			wire.MetadataTimeoutSeconds:       structpb.NewNumberValue(float64(s.TimeoutSeconds)),
			wire.MetadataProtocol:             structpb.NewStringValue(b.Protocol.String()),
			wire.MetadataProxied:              structpb.NewBoolValue(s.Proxied),
		}},
	}}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{loc}
	return cla
}

func buildLoadAssignment(name string, eps []routing.Endpoint) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	if len(eps) == 0 {
		return cla
	}
	lbs := make([]*endpointv3.LbEndpoint, 0, len(eps))
	seen := make(map[routing.Endpoint]bool, len(eps))
	for _, ep := range eps {
		if seen[ep] {
			continue
		}
		seen[ep] = true
		lbs = append(lbs, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(ep.Host, ep.Port),
			}},
		})
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{
		// gRPC-Go rejects a locality without an ID and silently drops one whose weight is
		// zero or missing; Envoy ignores locality weights unless locality-weighted LB is on.
		Locality:            singleLocality,
		LoadBalancingWeight: localityWeight,
		LbEndpoints:         lbs,
	}}
	return cla
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// buildVirtualHost serves both Envoy's listener route configurations and gRPC's per-host one,
// so it uses only what both understand (see the notes at the top of this file). The routes are
// shared with every other host whose routes are equal (see Translator.routes).
func buildVirtualHost(name string, routes []*routev3.Route) *routev3.VirtualHost {
	return &routev3.VirtualHost{
		Name: name,
		// host:* lets clients that put the port in the Host header (curl -H Host does not, but
		// browsers and HTTP/1.1 clients on a non-default port do) reach the same host.
		Domains: []string{name, name + ":*"},
		Routes:  routes,
	}
}

type headersFunc func(*routing.Split) []*corev3.HeaderValueOption

// buildRoute puts a match and an action together; for one target the split's headers go on
// the route itself (a weighted cluster carries its own).
func buildRoute(hr *routing.HTTPRoute, match *routev3.RouteMatch, action *routev3.Route_Route, headers headersFunc) *routev3.Route {
	r := &routev3.Route{Match: match, Action: action}
	if len(hr.Splits) == 1 {
		r.RequestHeadersToAdd = headers(&hr.Splits[0])
	}
	return r
}

// tagMatch matches requests whose Knative-Serving-Tag header is tag.
func tagMatch(tag string) *routev3.RouteMatch {
	return &routev3.RouteMatch{
		PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
		Headers: []*routev3.HeaderMatcher{{
			Name: wire.HeaderTagLower,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Exact{Exact: tag},
			}},
		}},
	}
}

// weights are the wrappers of every percent a split can have, shared by all routes.
var weights = func() (w [101]*wrapperspb.UInt32Value) {
	for i := range w {
		w[i] = wrapperspb.UInt32(uint32(i))
	}
	return w
}()

func weight(percent uint32) *wrapperspb.UInt32Value {
	if int(percent) < len(weights) {
		return weights[percent]
	}
	return wrapperspb.UInt32(percent) // not a percent: never from routing, but still correct
}

// buildAction is where a route sends requests: its splits and timeout, nothing of its match,
// so a tag's route on the main host and the tag's own host share one. The weights are the
// splits' percents as they are; what they are is decided in package traffic (Group).
func buildAction(hr *routing.HTTPRoute, headers headersFunc) *routev3.Route_Route {
	action := &routev3.RouteAction{}
	if hr.Timeout > 0 {
		d := durationpb.New(hr.Timeout)
		action.Timeout = d
		action.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: d}
	}
	if len(hr.Splits) == 1 {
		// One target needs no weights (buildRoute puts its headers on the route).
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: hr.Splits[0].Cluster}
		return &routev3.Route_Route{Route: action}
	}
	wcs := make([]*routev3.WeightedCluster_ClusterWeight, len(hr.Splits))
	for i := range hr.Splits {
		s := &hr.Splits[i]
		wcs[i] = &routev3.WeightedCluster_ClusterWeight{
			Name:                s.Cluster,
			Weight:              weight(s.Percent),
			RequestHeadersToAdd: headers(s),
		}
	}
	action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{
		WeightedClusters: &routev3.WeightedCluster{Clusters: wcs},
	}
	return &routev3.Route_Route{Route: action}
}

// splitHeaders tell the activator which revision a request is for. They overwrite what the
// client sent, or a client could steer its request to any revision.
func splitHeaders(namespace, revision string) []*corev3.HeaderValueOption {
	return []*corev3.HeaderValueOption{
		overwriteHeader(wire.HeaderRevision, revision),
		overwriteHeader(wire.HeaderNamespace, namespace),
	}
}

func overwriteHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func buildRouteConfiguration(name string, vhs []*routev3.VirtualHost) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: vhs}
}

// buildListener is an Envoy gateway listener whose routes come over RDS from the route
// configuration of the same name.
func buildListener(name, addr string, port uint32) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		// AUTO sniffs HTTP/1.1 versus h2c (prior knowledge), so gRPC clients can go through
		// Envoy in cleartext too.
		CodecType: hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource,
			RouteConfigName: name,
		}},
		HttpFilters: []*hcmv3.HttpFilter{routerFilter},
		// Enabled here once rather than on every route: it keeps the RDS payload smaller and
		// every Knative route allows websockets anyway.
		UpgradeConfigs: websocketUpgrade,
		// The gateway is the edge: trust the peer address, not a client's X-Forwarded-For.
		UseRemoteAddress: wrapperspb.Bool(true),
	}
	return &listenerv3.Listener{
		Name:    name,
		Address: socketAddress(addr, port),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       hcmFilterName,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
			}},
		}},
	}
}

// buildAPIListener is what a gRPC client dialing xds:///host asks for: a listener named by the
// host whose route configuration, also named by the host, comes over ADS.
func buildAPIListener(host string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		// Required by Envoy's validation, ignored by gRPC.
		StatPrefix: "grpc",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource,
			RouteConfigName: host,
		}},
		HttpFilters: []*hcmv3.HttpFilter{routerFilter},
	}
	// The Any by hand, with the shared type URL; the bytes are anypb.New's.
	b, err := proto.Marshal(hcm)
	if err != nil {
		panic(fmt.Sprintf("envoy: marshal %T: %v", hcm, err)) // see mustAny
	}
	return &listenerv3.Listener{
		Name:        host,
		ApiListener: &listenerv3.ApiListener{ApiListener: &anypb.Any{TypeUrl: hcmTypeURL, Value: b}},
	}
}
