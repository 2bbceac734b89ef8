// Package xdsclient learns from the control plane, over one delta ADS stream, revisions' ready
// instances (a wildcard subscription to ClusterLoadAssignments, one per revision, named
// "namespace/revision") and, on demand, hosts' routes (RouteConfigurations subscribed by host
// name), which tell the revision of a request that does not name one.
package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluice-dev/sluice/activator/instances"
	"github.com/sluice-dev/sluice/activator/routes"

	"github.com/sluice-dev/sluice/activator/reconnect"
	"github.com/sluice-dev/sluice/wire"
)

// Type URLs the activator subscribes to.
const (
	TypeURL      = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	RouteTypeURL = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

// RouteSink takes the routes of the hosts subscribed to, as they change. A host removed by the
// control plane stays subscribed: it may come back. UpdateRoutes must be safe to call from any
// goroutine.
type RouteSink interface {
	UpdateRoutes(put []routes.Host, removed []string)
}

// Options configure a Client.
type Options struct {
	Conn grpc.ClientConnInterface
	Node *corev3.Node
	Sink instances.Sink
	// Routes takes the routes of hosts subscribed with SubscribeRoutes; nil if none ever are.
	Routes RouteSink
	Logger *slog.Logger
	// Backoff bounds between reconnection attempts; defaults 100 ms and 5 s.
	MinBackoff, MaxBackoff time.Duration
}

// Client keeps a delta ADS stream open and feeds its Sink and RouteSink.
type Client struct {
	opts   Options
	client discoveryv3.AggregatedDiscoveryServiceClient
	// versions are the resources held now, per type, with their versions: sent as
	// initial_resource_versions on reconnect so the server sends only what changed and what is
	// gone. Only Run's goroutine touches them.
	versions      map[string]string
	routeVersions map[string]string

	// wantedHosts are the hosts whose routes the owner asked for; Run's goroutine subscribes
	// the stream to them when kicked.
	mu          sync.Mutex
	wantedHosts map[string]struct{}
	kick        chan struct{} // buffered 1: a pending kick covers every change since
}

// New builds a Client; Run starts it.
func New(opts Options) *Client {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{
		opts:          opts,
		client:        discoveryv3.NewAggregatedDiscoveryServiceClient(opts.Conn),
		versions:      map[string]string{},
		routeVersions: map[string]string{},
		wantedHosts:   map[string]struct{}{},
		kick:          make(chan struct{}, 1),
	}
}

// SubscribeRoutes asks the control plane for the routes of hosts, on the running stream and on
// every one after it, until UnsubscribeRoutes. Safe from any goroutine; it does not block.
func (c *Client) SubscribeRoutes(hosts ...string) {
	c.mu.Lock()
	for _, h := range hosts {
		c.wantedHosts[h] = struct{}{}
	}
	c.mu.Unlock()
	c.wake()
}

// UnsubscribeRoutes stops asking for the routes of hosts. Safe from any goroutine; it does not block.
func (c *Client) UnsubscribeRoutes(hosts ...string) {
	c.mu.Lock()
	for _, h := range hosts {
		delete(c.wantedHosts, h)
	}
	c.mu.Unlock()
	c.wake()
}

func (c *Client) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run subscribes until ctx ends, reconnecting with backoff. It returns ctx's error.
func (c *Client) Run(ctx context.Context) error {
	return reconnect.Loop(ctx, reconnect.Backoff{Min: c.opts.MinBackoff, Max: c.opts.MaxBackoff}, c.opts.Logger, "xds", c.stream)
}

type received struct {
	resp *discoveryv3.DeltaDiscoveryResponse
	err  error
}

// stream runs one ADS stream; healthy says whether the server sent anything. Everything sent
// on the stream is sent from here; a goroutine of its own receives.
func (c *Client) stream(ctx context.Context) (healthy bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	var recvDone sync.WaitGroup
	defer func() {
		cancel()
		recvDone.Wait()
	}()
	st, err := c.client.DeltaAggregatedResources(ctx)
	if err != nil {
		return false, fmt.Errorf("xds: open stream: %w", err)
	}
	req := &discoveryv3.DeltaDiscoveryRequest{Node: c.opts.Node, TypeUrl: TypeURL}
	if len(c.versions) > 0 {
		req.InitialResourceVersions = c.versions
	}
	if err := st.Send(req); err != nil {
		return false, fmt.Errorf("xds: subscribe: %w", err)
	}
	hosts := &hostSub{hosts: map[string]struct{}{}}
	if err := c.syncHosts(st, hosts); err != nil {
		return false, err
	}

	recv := make(chan received)
	recvDone.Go(func() {
		for {
			resp, err := st.Recv()
			select {
			case recv <- received{resp, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	for {
		select {
		case <-ctx.Done():
			return healthy, ctx.Err()
		case <-c.kick:
			if err := c.syncHosts(st, hosts); err != nil {
				return healthy, err
			}
		case r := <-recv:
			if r.err != nil {
				return healthy, fmt.Errorf("xds: receive: %w", r.err)
			}
			healthy = true
			resp := r.resp
			ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
			if err := c.apply(resp, hosts); err != nil {
				c.opts.Logger.Warn("xds: rejecting an update, keeping the previous state", "type", resp.GetTypeUrl(), "err", err)
				ack.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
			}
			if err := st.Send(ack); err != nil {
				return true, fmt.Errorf("xds: ack: %w", err)
			}
		}
	}
}

// hostSub is one stream's subscription to route configurations.
type hostSub struct {
	started bool // a route request was sent on the stream
	hosts   map[string]struct{}
}

// syncHosts brings the stream's route subscription in line with what is wanted. The stream's
// first route request never names nothing: in delta xDS that subscribes to every route
// configuration there is.
func (c *Client) syncHosts(st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, sub *hostSub) error {
	c.mu.Lock()
	var add, drop []string
	for h := range c.wantedHosts {
		if _, ok := sub.hosts[h]; !ok {
			add = append(add, h)
		}
	}
	for h := range sub.hosts {
		if _, ok := c.wantedHosts[h]; !ok {
			drop = append(drop, h)
		}
	}
	c.mu.Unlock()
	if len(add) == 0 && len(drop) == 0 {
		return nil
	}
	slices.Sort(add)
	slices.Sort(drop)
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: RouteTypeURL, ResourceNamesSubscribe: add, ResourceNamesUnsubscribe: drop}
	if !sub.started {
		// What a previous stream left held, if still wanted, so the server sends only changes.
		for h, v := range c.routeVersions {
			if !slices.Contains(add, h) {
				delete(c.routeVersions, h)
				continue
			}
			if req.InitialResourceVersions == nil {
				req.InitialResourceVersions = map[string]string{}
			}
			req.InitialResourceVersions[h] = v
		}
	}
	if err := st.Send(req); err != nil {
		return fmt.Errorf("xds: subscribe to routes: %w", err)
	}
	sub.started = true
	for _, h := range drop {
		delete(sub.hosts, h)
		delete(c.routeVersions, h)
	}
	for _, h := range add {
		sub.hosts[h] = struct{}{}
	}
	return nil
}

// apply hands a response's changes to the sink of its type, or none of them if any resource is
// unusable.
func (c *Client) apply(resp *discoveryv3.DeltaDiscoveryResponse, hosts *hostSub) error {
	switch resp.GetTypeUrl() {
	case TypeURL, "":
		return c.applyEndpoints(resp)
	case RouteTypeURL:
		return c.applyRoutes(resp, hosts)
	}
	return fmt.Errorf("unexpected type %s", resp.GetTypeUrl())
}

func (c *Client) applyEndpoints(resp *discoveryv3.DeltaDiscoveryResponse) error {
	put := make([]instances.Revision, 0, len(resp.GetResources()))
	var errs []error
	for _, res := range resp.GetResources() {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := res.GetResource().UnmarshalTo(cla); err != nil {
			errs = append(errs, fmt.Errorf("resource %q: %w", res.GetName(), err))
			continue
		}
		rev, err := Revision(cla)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if res.GetName() != "" && res.GetName() != rev.Name {
			errs = append(errs, fmt.Errorf("resource %q holds ClusterLoadAssignment %q", res.GetName(), rev.Name))
			continue
		}
		put = append(put, rev)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	removed := resp.GetRemovedResources()
	c.opts.Sink.Update(put, removed)
	for i, res := range resp.GetResources() {
		c.versions[put[i].Name] = res.GetVersion()
	}
	for _, name := range removed {
		delete(c.versions, name)
	}
	return nil
}

func (c *Client) applyRoutes(resp *discoveryv3.DeltaDiscoveryResponse, hosts *hostSub) error {
	if c.opts.Routes == nil {
		return errors.New("no route configurations were asked for")
	}
	put := make([]routes.Host, 0, len(resp.GetResources()))
	var errs []error
	for _, res := range resp.GetResources() {
		rc := &routev3.RouteConfiguration{}
		if err := res.GetResource().UnmarshalTo(rc); err != nil {
			errs = append(errs, fmt.Errorf("resource %q: %w", res.GetName(), err))
			continue
		}
		h, err := Host(rc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if res.GetName() != "" && res.GetName() != h.Name {
			errs = append(errs, fmt.Errorf("resource %q holds RouteConfiguration %q", res.GetName(), h.Name))
			continue
		}
		put = append(put, h)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// What arrives for a host unsubscribed meanwhile is acknowledged and dropped.
	var kept []routes.Host
	for i, res := range resp.GetResources() {
		if _, ok := hosts.hosts[put[i].Name]; ok {
			kept = append(kept, put[i])
			c.routeVersions[put[i].Name] = res.GetVersion()
		}
	}
	removed := resp.GetRemovedResources()
	for _, name := range removed {
		delete(c.routeVersions, name)
	}
	if len(kept) > 0 || len(removed) > 0 {
		c.opts.Routes.UpdateRoutes(kept, removed)
	}
	return nil
}

// Revision reads a revision from its ClusterLoadAssignment, as the control plane writes it.
func Revision(cla *endpointv3.ClusterLoadAssignment) (instances.Revision, error) {
	name := cla.GetClusterName()
	rev := instances.Revision{Name: name}
	if len(cla.GetEndpoints()) != 1 {
		return rev, fmt.Errorf("ClusterLoadAssignment %q: want exactly one locality, got %d", name, len(cla.GetEndpoints()))
	}
	loc := cla.GetEndpoints()[0]
	md := loc.GetMetadata().GetFilterMetadata()[wire.MetadataKey]
	if md == nil {
		return rev, fmt.Errorf("ClusterLoadAssignment %q: no %q metadata", name, wire.MetadataKey)
	}
	f := md.GetFields()
	cc, err := wholeNumber(f, wire.MetadataContainerConcurrency)
	if err != nil {
		return rev, fmt.Errorf("ClusterLoadAssignment %q: %w", name, err)
	}
	timeout, err := wholeNumber(f, wire.MetadataTimeoutSeconds)
	if err != nil {
		return rev, fmt.Errorf("ClusterLoadAssignment %q: %w", name, err)
	}
	rev.ContainerConcurrency = int(cc)
	rev.Timeout = time.Duration(timeout) * time.Second
	switch p := instances.Protocol(f[wire.MetadataProtocol].GetStringValue()); p {
	case instances.HTTP1, instances.H2C:
		rev.Protocol = p
	default:
		return rev, fmt.Errorf("ClusterLoadAssignment %q: protocol %q: want %q or %q", name, p, instances.HTTP1, instances.H2C)
	}
	switch v := f[wire.MetadataProxied].GetKind().(type) {
	case nil: // a control plane from before the field: nothing is known to be proxied
	case *structpb.Value_BoolValue:
		rev.Proxied = v.BoolValue
	default:
		return rev, fmt.Errorf("ClusterLoadAssignment %q: metadata field %q: want a bool, got %v", name, wire.MetadataProxied, f[wire.MetadataProxied])
	}
	for _, lbe := range loc.GetLbEndpoints() {
		if hs := lbe.GetHealthStatus(); hs != corev3.HealthStatus_HEALTHY && hs != corev3.HealthStatus_UNKNOWN {
			continue
		}
		sa := lbe.GetEndpoint().GetAddress().GetSocketAddress()
		if sa == nil || sa.GetAddress() == "" {
			return rev, fmt.Errorf("ClusterLoadAssignment %q: an endpoint without a socket address", name)
		}
		rev.Addrs = append(rev.Addrs, joinHostPort(sa.GetAddress(), sa.GetPortValue()))
	}
	slices.Sort(rev.Addrs)
	return rev, nil
}

func wholeNumber(f map[string]*structpb.Value, key string) (int64, error) {
	v, ok := f[key]
	if !ok {
		return 0, fmt.Errorf("metadata field %q missing", key)
	}
	n := v.GetNumberValue()
	if n < 0 || n != float64(int64(n)) {
		return 0, fmt.Errorf("metadata field %q: want a whole number ≥ 0, got %v", key, n)
	}
	return int64(n), nil
}

func joinHostPort(host string, port uint32) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.FormatUint(uint64(port), 10)
	}
	return host + ":" + strconv.FormatUint(uint64(port), 10)
}
