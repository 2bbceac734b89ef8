// Package xdsclient learns revisions' ready instances from the control plane: a wildcard delta
// ADS subscription to ClusterLoadAssignments, one per revision, named "namespace/revision".
package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluice-dev/sluice/activator/instances"
)

// TypeURL is the one resource type the activator subscribes to.
const TypeURL = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

// MetadataKey is the filter_metadata key of a revision's LocalityLbEndpoints.
const MetadataKey = "sluice.dev"

// Options configure a Client.
type Options struct {
	Conn   grpc.ClientConnInterface
	Node   *corev3.Node
	Sink   instances.Sink
	Logger *slog.Logger
	// Backoff bounds between reconnection attempts; defaults 100 ms and 5 s.
	MinBackoff, MaxBackoff time.Duration
}

// Client keeps a delta ADS stream open and feeds its Sink.
type Client struct {
	opts   Options
	client discoveryv3.AggregatedDiscoveryServiceClient
	// versions are the resources held now, with their versions: sent as initial_resource_versions
	// on reconnect so the server sends only what changed and what is gone. Only Run's goroutine
	// touches it.
	versions map[string]string
}

// New builds a Client; Run starts it.
func New(opts Options) *Client {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	return &Client{opts: opts, client: discoveryv3.NewAggregatedDiscoveryServiceClient(opts.Conn), versions: map[string]string{}}
}

// Run subscribes until ctx ends, reconnecting with backoff. It returns ctx's error.
func (c *Client) Run(ctx context.Context) error {
	backoff := c.opts.MinBackoff
	for {
		healthy, err := c.stream(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if healthy {
			backoff = c.opts.MinBackoff
		}
		c.opts.Logger.Debug("xds: stream broke, reconnecting", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, c.opts.MaxBackoff)
	}
}

// stream runs one ADS stream; healthy says whether the server sent anything.
func (c *Client) stream(ctx context.Context) (healthy bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
	for {
		resp, err := st.Recv()
		if err != nil {
			return healthy, fmt.Errorf("xds: receive: %w", err)
		}
		healthy = true
		ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: TypeURL, ResponseNonce: resp.GetNonce()}
		if err := c.apply(resp); err != nil {
			c.opts.Logger.Warn("xds: rejecting an update, keeping the previous state", "err", err)
			ack.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		}
		if err := st.Send(ack); err != nil {
			return true, fmt.Errorf("xds: ack: %w", err)
		}
	}
}

// apply hands a response's changes to the Sink, or none of them if any resource is unusable.
func (c *Client) apply(resp *discoveryv3.DeltaDiscoveryResponse) error {
	if resp.GetTypeUrl() != "" && resp.GetTypeUrl() != TypeURL {
		return fmt.Errorf("unexpected type %s", resp.GetTypeUrl())
	}
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

// Revision reads a revision from its ClusterLoadAssignment, as the control plane writes it.
func Revision(cla *endpointv3.ClusterLoadAssignment) (instances.Revision, error) {
	name := cla.GetClusterName()
	rev := instances.Revision{Name: name}
	if len(cla.GetEndpoints()) != 1 {
		return rev, fmt.Errorf("ClusterLoadAssignment %q: want exactly one locality, got %d", name, len(cla.GetEndpoints()))
	}
	loc := cla.GetEndpoints()[0]
	md := loc.GetMetadata().GetFilterMetadata()[MetadataKey]
	if md == nil {
		return rev, fmt.Errorf("ClusterLoadAssignment %q: no %q metadata", name, MetadataKey)
	}
	f := md.GetFields()
	cc, err := wholeNumber(f, "containerConcurrency")
	if err != nil {
		return rev, fmt.Errorf("ClusterLoadAssignment %q: %w", name, err)
	}
	timeout, err := wholeNumber(f, "timeoutSeconds")
	if err != nil {
		return rev, fmt.Errorf("ClusterLoadAssignment %q: %w", name, err)
	}
	rev.ContainerConcurrency = int(cc)
	rev.Timeout = time.Duration(timeout) * time.Second
	switch p := instances.Protocol(f["protocol"].GetStringValue()); p {
	case instances.HTTP1, instances.H2C:
		rev.Protocol = p
	default:
		return rev, fmt.Errorf("ClusterLoadAssignment %q: protocol %q: want %q or %q", name, p, instances.HTTP1, instances.H2C)
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
