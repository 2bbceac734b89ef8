package xds

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-dev/sluice/envoy"
	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/wire"
)

// cacheVersions is every cache's name → version, and the names go-control-plane's cache holds.
func cacheVersions(s *Server) map[cacheKey]map[string]string {
	out := map[cacheKey]map[string]string{}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for key, cs := range s.caches {
		m := make(map[string]string, len(cs.entries))
		for name, e := range cs.entries {
			m[name] = e.version
		}
		out[key] = m
	}
	return out
}

func checkSameCaches(t *testing.T, where string, got, want *Server) {
	t.Helper()
	g, w := cacheVersions(got), cacheVersions(want)
	for key := range w {
		if !maps.Equal(g[key], w[key]) {
			var diff []string
			for name, v := range w[key] {
				if g[key][name] != v {
					diff = append(diff, fmt.Sprintf("%s: %q want %q", name, g[key][name], v))
				}
			}
			for name := range g[key] {
				if _, ok := w[key][name]; !ok {
					diff = append(diff, name+": should be gone")
				}
			}
			t.Fatalf("%s: cache %s differs from a full Update: %v", where, key, diff)
		}
		// What go-control-plane serves must be what we recorded.
		held := got.caches[key].cache.GetResources()
		if !slices.Equal(sortedKeys(held), sortedKeys(g[key])) {
			t.Fatalf("%s: LinearCache %s holds %d resources, entries %d", where, key, len(held), len(g[key]))
		}
	}
}

// TestUpdateChangedMatchesUpdate applies random changes to one envoy.Resources in place (as the
// translator does) and pushes them to one server with Update and to another with
// UpdateChanged naming what changed (plus names that did not, or never existed): after every
// step both caches must hold the same names at the same versions, and the stats agree.
func TestUpdateChangedMatchesUpdate(t *testing.T) {
	for seed := range uint64(10) {
		rng := rand.New(rand.NewPCG(seed, 3))
		full, inc := newHarness(t), newHarness(t)
		res := fixture(20)
		full.update(res)
		if _, err := inc.srv.UpdateChanged(context.Background(), res, envoy.Changes{Full: true}); err != nil {
			t.Fatal(err)
		}
		checkSameCaches(t, fmt.Sprintf("seed %d start", seed), inc.srv, full.srv)
		for step := range 60 {
			var ch envoy.Changes
			for range 1 + rng.IntN(3) {
				mutateResources(rng, res, &ch)
			}
			if rng.IntN(3) == 0 { // extra names are harmless
				ch.Routes = append(ch.Routes, hostA, "nowhere.example.com")
				ch.Endpoints = append(ch.Endpoints, revB)
			}
			want, err := full.srv.Update(context.Background(), res)
			if err != nil {
				t.Fatal(err)
			}
			got, err := inc.srv.UpdateChanged(context.Background(), res, ch)
			if err != nil {
				t.Fatal(err)
			}
			where := fmt.Sprintf("seed %d step %d", seed, step)
			if got != want {
				t.Fatalf("%s: UpdateChanged %+v, Update %+v", where, got, want)
			}
			checkSameCaches(t, where, inc.srv, full.srv)
		}
	}
}

// mutateResources makes one change to res in place and names it in ch.
func mutateResources(rng *rand.Rand, res *envoy.Resources, ch *envoy.Changes) {
	svc := fmt.Sprintf("svc%d", rng.IntN(25)) // some beyond fixture(20): added later
	host := svc + ".default.example.com"
	rev := "default/" + svc + "-00001"
	switch rng.IntN(7) {
	case 0: // scale event
		res.Endpoints[rev] = cla(rev, uint32(8000+rng.IntN(3)))
		ch.Endpoints = append(ch.Endpoints, rev)
	case 1: // traffic change
		res.Routes[host] = routeConfig(host, host, map[string]uint32{rev: uint32(rng.IntN(3)) * 50})
		ch.Routes = append(ch.Routes, host)
	case 2: // same content behind a new pointer
		if r := res.Routes[host]; r != nil {
			res.Routes[host] = routeConfig(host, host, map[string]uint32{rev: r.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetWeightedClusters().GetClusters()[0].GetWeight().GetValue()})
			ch.Routes = append(ch.Routes, host)
		}
	case 3: // a service goes
		delete(res.Clusters, rev)
		delete(res.Endpoints, rev)
		delete(res.Routes, host)
		delete(res.APIListeners, host)
		ch.Clusters, ch.Endpoints = append(ch.Clusters, rev), append(ch.Endpoints, rev)
		ch.Routes, ch.APIListeners = append(ch.Routes, host), append(ch.APIListeners, host)
	case 4: // a service comes
		res.Clusters[rev] = cluster(rev)
		res.Endpoints[rev] = cla(rev, 8080)
		res.Routes[host] = routeConfig(host, host, map[string]uint32{rev: 100})
		res.APIListeners[host] = apiListener(host)
		ch.Clusters, ch.Endpoints = append(ch.Clusters, rev), append(ch.Endpoints, rev)
		ch.Routes, ch.APIListeners = append(ch.Routes, host), append(ch.APIListeners, host)
	case 5: // the gateway's route configuration
		res.Routes["external"] = routeConfig("external", "*", map[string]uint32{rev: 100})
		ch.Routes = append(ch.Routes, "external")
	case 6: // an Envoy listener moves
		res.Listeners["internal"] = listener("internal", uint32(8081+rng.IntN(2)))
		ch.Listeners = append(ch.Listeners, "internal")
	}
}

// TestUpdateChangedMissesWhatIsNotNamed documents the contract: a change left out of envoy.Changes is
// not pushed (which is what the equivalence test above would catch in the translator).
func TestUpdateChangedMissesWhatIsNotNamed(t *testing.T) {
	h := newHarness(t)
	res := fixture(2)
	h.update(res)
	before, _ := h.srv.Version(resource.EndpointType, revA, wire.NodeEnvoy)
	res.Endpoints[revA] = cla(revA, 9999)
	if st, err := h.srv.UpdateChanged(context.Background(), res, envoy.Changes{Routes: []string{hostA}}); err != nil || st != (UpdateStats{}) {
		t.Fatalf("UpdateChanged naming an unchanged route: %+v, %v", st, err)
	}
	if v, _ := h.srv.Version(resource.EndpointType, revA, wire.NodeEnvoy); v != before {
		t.Fatal("a change that was not named was diffed")
	}
	if st, err := h.srv.UpdateChanged(context.Background(), res, envoy.Changes{Endpoints: []string{revA}}); err != nil || st.Changed != 1 {
		t.Fatalf("naming it: %+v, %v", st, err)
	}
}

// xdsTable is n services, each an 80/20 split on an external host and its cluster-local twin.
func xdsTable(n int, pct []uint32) *routing.Table {
	tab := &routing.Table{}
	for i := range n {
		ns, name := "default", fmt.Sprintf("svc%03d", i)
		r1, r2 := routing.ClusterName(ns, name+"-1"), routing.ClusterName(ns, name+"-2")
		splits := []routing.Split{{Cluster: r1, Namespace: ns, Revision: name + "-1", Percent: pct[i]},
			{Cluster: r2, Namespace: ns, Revision: name + "-2", Percent: 100 - pct[i]}}
		if pct[i] == 100 {
			splits = splits[:1]
		}
		for _, v := range []routing.Visibility{routing.External, routing.ClusterLocal} {
			d := map[routing.Visibility]string{routing.External: "example.com", routing.ClusterLocal: "svc.cluster.local"}[v]
			tab.Hosts = append(tab.Hosts, routing.VirtualHost{Name: name + "." + ns + "." + d, Namespace: ns, Route: name, Visibility: v,
				Routes: []routing.HTTPRoute{{Splits: splits}}})
		}
		for j, c := range []string{r1, r2} {
			tab.Backends = append(tab.Backends, routing.Backend{Cluster: c, Namespace: ns, Revision: fmt.Sprintf("%s-%d", name, j+1),
				Endpoints: []routing.Endpoint{{Host: "10.0.0.1", Port: 8080}}})
		}
	}
	// Names sort as built: svcNNN then example.com < svc.cluster.local.
	return tab
}

// TestTranslateDiffIntoUpdateChangedUnderRace is the control-plane loop's hot path with the
// ownership rule under the race detector: the translator patches its maps in place while
// clients are being served and the debug view is read; the caches must end as a full
// translation pushed with Update would leave them, and a delta client must have received
// every change.
func TestTranslateDiffIntoUpdateChangedUnderRace(t *testing.T) {
	const n = 20
	h := newHarness(t)
	tr := envoy.NewTranslator(envoy.Options{})
	pct := slices.Repeat([]uint32{80}, n)
	tab := xdsTable(n, pct)
	res := tr.TranslateDiff(tab, routing.TableDiff{Full: true})
	if _, err := h.srv.UpdateChanged(context.Background(), res, tr.LastChanges()); err != nil {
		t.Fatal(err)
	}

	c := h.delta(envoyNode("gw"))
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResourceNamesSubscribe: []string{"*"}})
	c.ack(c.recv())

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // a debug page being read throughout
		for {
			select {
			case <-stop:
				return
			default:
				h.srv.Debug("")
				time.Sleep(time.Millisecond)
			}
		}
	})
	got := map[string]string{}
	for step := range 30 {
		i := step % n
		pct = slices.Clone(pct)
		pct[i] = []uint32{100, 50, 80}[step%3]
		next := xdsTable(n, pct)
		name := fmt.Sprintf("svc%03d.default", i)
		d := routing.TableDiff{Hosts: []routing.HostRef{
			{Name: name + ".example.com", Visibility: routing.External},
			{Name: name + ".svc.cluster.local", Visibility: routing.ClusterLocal},
		}}
		res = tr.TranslateDiff(next, d)
		tab = next
		st, err := h.srv.UpdateChanged(context.Background(), res, tr.LastChanges())
		if err != nil {
			t.Fatal(err)
		}
		if st.Changed == 0 {
			continue
		}
		// The host's gRPC route configuration and both gateways' (4), unless only one moved.
		for len(got) == 0 || !deltaHas(got, name+".example.com") {
			r := c.recv()
			maps.Copy(got, deltaNames(r))
			c.ack(r)
		}
		clear(got)
	}
	close(stop)
	wg.Wait()

	ref := newHarness(t)
	ref.update(envoy.NewTranslator(envoy.Options{}).Translate(tab))
	checkSameCaches(t, "after the loop", h.srv, ref.srv)
}

func deltaHas(m map[string]string, name string) bool { _, ok := m[name]; return ok }

// TestEncodeRouteConfigurationMatchesMarshal: the encoding built from remembered virtual host
// records is byte for byte the deterministic Marshal of the configuration, through
// replacements, insertions, removals and reordering, and the resource handed to
// go-control-plane encodes to the same bytes and decodes to an equal configuration.
func TestEncodeRouteConfigurationMatchesMarshal(t *testing.T) {
	res := envoy.NewTranslator(envoy.Options{}).Translate(xdsTable(100, slices.Repeat([]uint32{80}, 100)))
	rc := res.Routes[envoy.ExternalListener]
	if len(rc.GetVirtualHosts()) < minEncodedVHosts {
		t.Fatalf("%d virtual hosts: too few to exercise the encoder", len(rc.GetVirtualHosts()))
	}
	if fd := rc.ProtoReflect().Descriptor().Fields().ByNumber(rcVirtualHostsField); fd == nil || fd.Name() != "virtual_hosts" {
		t.Fatalf("field %d is %v", rcVirtualHostsField, fd)
	}
	other := envoy.NewTranslator(envoy.Options{}).Translate(xdsTable(100, slices.Repeat([]uint32{50}, 100))).Routes[envoy.ExternalListener]
	rng := rand.New(rand.NewPCG(1, 1))
	var enc vhostEncoder
	vhs := slices.Clone(rc.VirtualHosts)
	for step := range 40 {
		vhs = slices.Clone(vhs) // the last configuration's list is never modified
		switch i := rng.IntN(len(vhs)); rng.IntN(4) {
		case 0:
			vhs[i] = other.VirtualHosts[i]
		case 1:
			vhs = slices.Delete(vhs, i, i+1)
		case 2:
			vhs = slices.Insert(vhs, i, other.VirtualHosts[rng.IntN(len(other.VirtualHosts))])
		case 3:
			j := rng.IntN(len(vhs))
			vhs[i], vhs[j] = vhs[j], vhs[i]
		}
		cur := &routev3.RouteConfiguration{Name: "external", VirtualHosts: vhs}
		b, wire, ok, err := enc.encode("external", cur)
		if err != nil || !ok {
			t.Fatalf("step %d: encode: ok %v err %v", step, ok, err)
		}
		want, err := cache.MarshalResource(cur)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want) {
			k := 0
			for k < len(b) && b[k] == want[k] {
				k++
			}
			t.Fatalf("step %d: encoding differs from Marshal (%d vs %d bytes) at %d: %q vs %q", step, len(b), len(want), k, b[max(0, k-40):k+40], want[max(0, k-40):k+40])
		}
		wb, err := cache.MarshalResource(wire)
		if err != nil || !bytes.Equal(wb, want) {
			t.Fatalf("step %d: the wire resource encodes differently (%v)", step, err)
		}
		back := &routev3.RouteConfiguration{}
		if err := proto.Unmarshal(wb, back); err != nil || !proto.Equal(back, cur) {
			t.Fatalf("step %d: decoded wire resource differs (%v)", step, err)
		}
		if cache.GetResourceName(wire) != "external" {
			t.Fatalf("step %d: wire resource named %q", step, cache.GetResourceName(wire))
		}
	}
	// Anything else set, or a small configuration: not handled, the caller marshals.
	if _, _, ok, _ := enc.encode("x", &routev3.RouteConfiguration{Name: "x", VirtualHosts: vhs, ValidateClusters: wrapperspb.Bool(true)}); ok {
		t.Error("a configuration with more than name and virtual hosts was encoded from records")
	}
	if _, _, ok, _ := enc.encode("y", &routev3.RouteConfiguration{Name: "y", VirtualHosts: vhs[:1]}); ok {
		t.Error("a one-host configuration was encoded from records")
	}
}
