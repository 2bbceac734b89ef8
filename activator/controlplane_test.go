package activator

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluice-dev/sluice/activator/xdsclient"
	"github.com/sluice-dev/sluice/wire"
)

// pokeWatcher is an LRS server that hands the test each cluster reported with requests in progress.
type pokeWatcher struct {
	lrsv3.UnimplementedLoadReportingServiceServer
	nodes chan *corev3.Node
	held  chan string
}

func (p *pokeWatcher) StreamLoadStats(st lrsv3.LoadReportingService_StreamLoadStatsServer) error {
	first, err := st.Recv()
	if err != nil {
		return err
	}
	p.nodes <- first.GetNode()
	// An hour's interval: what arrives is a poke.
	if err := st.Send(&lrsv3.LoadStatsResponse{SendAllClusters: true, LoadReportingInterval: durationpb.New(time.Hour)}); err != nil {
		return err
	}
	for {
		r, err := st.Recv()
		if err != nil {
			return err
		}
		for _, cs := range r.GetClusterStats() {
			if cs.GetUpstreamLocalityStats()[0].GetTotalRequestsInProgress() > 0 {
				select {
				case p.held <- cs.GetClusterName():
				default:
				}
			}
		}
	}
}

func revisionCLA(name string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	md, _ := structpb.NewStruct(map[string]any{wire.MetadataContainerConcurrency: 1.0, wire.MetadataTimeoutSeconds: 300.0, wire.MetadataProtocol: wire.ProtocolHTTP1})
	loc := &endpointv3.LocalityLbEndpoints{Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{wire.MetadataKey: md}}}
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.ParseUint(port, 10, 32)
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HealthStatus: corev3.HealthStatus_HEALTHY,
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
				Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}},
			}}},
		})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{loc}}
}

// The whole loop with a real control plane: a request for a revision at zero pokes the autoscaler
// over LRS, the control plane answers with an instance over delta ADS, and the request goes through.
func TestScaleFromZeroThroughTheControlPlane(t *testing.T) {
	lc := cache.NewLinearCache(xdsclient.TypeURL)
	lc.UpdateResource("default/cold-00001", revisionCLA("default/cold-00001"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(ctx, lc, nil))
	pw := &pokeWatcher{nodes: make(chan *corev3.Node, 1), held: make(chan string, 1)}
	lrsv3.RegisterLoadReportingServiceServer(g, pw)
	go g.Serve(ln)
	defer g.Stop()

	s := serve(t, Options{ControlPlane: ln.Addr().String(), NodeID: "activator-test"})
	node := <-pw.nodes
	if node.GetId() != "activator-test" || node.GetUserAgentName() != wire.ActivatorUserAgent ||
		node.GetMetadata().GetFields()[wire.NodeKindMetadataKey].GetStringValue() != string(wire.NodeActivator) {
		t.Fatalf("node = %v", node)
	}

	addr := backendAddr(t, hello)
	go func() {
		select {
		case name := <-pw.held:
			// The autoscaler scales it up.
			lc.UpdateResource(name, revisionCLA(name, addr))
		case <-time.After(30 * time.Second):
			t.Error("no poke in 30s")
		}
	}()
	resp, body := get(t, s.url, "default", "cold-00001")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}
