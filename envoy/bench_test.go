package envoy

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sluice-dev/sluice/routing"
)

var benchSizes = []int{1000, 10000}

// benchTable is n services with two revisions each, Knative-style: the main host splits 80/20
// and has header routes for tags v1 and v2, each tag has its own host, and every host exists
// both externally and cluster-local (6 virtual hosts and 2 backends per service).
// canary moves service 0's split to 70/30, the one change BenchmarkTranslateOneChange makes.
func benchTable(n int, canary bool) *routing.Table {
	tab := &routing.Table{
		Hosts:    make([]routing.VirtualHost, 0, 6*n),
		Backends: make([]routing.Backend, 0, 2*n),
	}
	for i := range n {
		ns := fmt.Sprintf("team-%02d", i%50)
		name := fmt.Sprintf("svc-%05d", i)
		r1, r2 := name+"-00001", name+"-00002"
		s1, s2 := split(ns, r1, 100), split(ns, r2, 100)
		main := []routing.Split{split(ns, r1, 80), split(ns, r2, 20)}
		if canary && i == 0 {
			main[0].Percent, main[1].Percent = 70, 30
		}
		for _, vis := range []routing.Visibility{routing.External, routing.ClusterLocal} {
			domain := "example.com"
			if vis == routing.ClusterLocal {
				domain = "svc.cluster.local"
			}
			host := name + "." + ns + "." + domain
			tab.Hosts = append(tab.Hosts,
				routing.VirtualHost{Name: host, Namespace: ns, Route: name, Visibility: vis, Routes: []routing.HTTPRoute{
					{TagHeader: "v1", Splits: []routing.Split{s1}, Timeout: timeout},
					{TagHeader: "v2", Splits: []routing.Split{s2}, Timeout: timeout},
					{Splits: main, Timeout: timeout},
				}},
				routing.VirtualHost{Name: "v1-" + host, Namespace: ns, Route: name, Tag: "v1", Visibility: vis,
					Routes: []routing.HTTPRoute{{Splits: []routing.Split{s1}, Timeout: timeout}}},
				routing.VirtualHost{Name: "v2-" + host, Namespace: ns, Route: name, Tag: "v2", Visibility: vis,
					Routes: []routing.HTTPRoute{{Splits: []routing.Split{s2}, Timeout: 60 * time.Second}}},
			)
		}
		tab.Backends = append(tab.Backends,
			backend(ns, r1, routing.HTTP1, ep(fmt.Sprintf("10.%d.%d.1", i/250, i%250), 8080), ep(fmt.Sprintf("10.%d.%d.2", i/250, i%250), 8080)),
			backend(ns, r2, routing.H2C, ep(fmt.Sprintf("10.%d.%d.3", i/250, i%250), 8080)),
		)
	}
	slices.SortFunc(tab.Hosts, func(a, b routing.VirtualHost) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(tab.Backends, func(a, b routing.Backend) int { return strings.Compare(a.Cluster, b.Cluster) })
	return tab
}

func totalBytes(res *Resources) int {
	n := 0
	for _, m := range res.Clusters {
		n += proto.Size(m)
	}
	for _, m := range res.Endpoints {
		n += proto.Size(m)
	}
	for _, m := range res.Routes {
		n += proto.Size(m)
	}
	for _, m := range res.Listeners {
		n += proto.Size(m)
	}
	for _, m := range res.APIListeners {
		n += proto.Size(m)
	}
	return n
}

// changedBytes is the size of what a pointer-comparing xds layer would re-send going from a to b.
func changedBytes(a, b *Resources) int {
	n := 0
	for k, m := range b.Routes {
		if a.Routes[k] != m {
			n += proto.Size(m)
		}
	}
	for k, m := range b.Clusters {
		if a.Clusters[k] != m {
			n += proto.Size(m)
		}
	}
	for k, m := range b.Endpoints {
		if a.Endpoints[k] != m {
			n += proto.Size(m)
		}
	}
	for k, m := range b.APIListeners {
		if a.APIListeners[k] != m {
			n += proto.Size(m)
		}
	}
	return n
}

func BenchmarkTranslate(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			tab := benchTable(n, false)
			var res *Resources
			b.ReportAllocs()
			for b.Loop() {
				res = NewTranslator(Options{}).Translate(tab)
			}
			b.StopTimer()
			// gRPC's default max receive message size is 4 MiB; an RDS response over it is
			// refused by a gRPC-based client that keeps the default.
			b.ReportMetric(float64(totalBytes(res)), "total-bytes")
			b.ReportMetric(float64(proto.Size(res.Routes[ExternalListener])), "external-rds-bytes")
			b.ReportMetric(float64(retainedHeap(tab)), "retained-heap-bytes")
		})
	}
}

func BenchmarkTranslateOneChange(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			tabs := [2]*routing.Table{benchTable(n, false), benchTable(n, true)}
			tr := NewTranslator(Options{})
			before := tr.Translate(tabs[0])
			after := tr.Translate(tabs[1])
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				tr.Translate(tabs[i%2])
				i++
			}
			// After the loop: b.Loop's first call resets user metrics.
			b.ReportMetric(float64(changedBytes(before, after)), "changed-bytes")
		})
	}
}

// retainedHeap is the live heap a Translator and its Resources hold for tab: what the control
// plane keeps between updates.
func retainedHeap(tab *routing.Table) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tr := NewTranslator(Options{})
	res := tr.Translate(tab)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(tr)
	runtime.KeepAlive(res)
	if after.HeapAlloc < before.HeapAlloc {
		return 0
	}
	return after.HeapAlloc - before.HeapAlloc
}
