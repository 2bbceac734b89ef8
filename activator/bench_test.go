package activator

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/activator/instances"
	"github.com/sluice-dev/sluice/wire"
)

// BenchmarkProxy compares a small request sent straight to an instance with the same request
// through the activator, and through the activator without its fast path ("reverseproxy"), in
// the same run: "serial" reports latency (p50-µs), "parallel" throughput (ns/op over all
// goroutines).
func BenchmarkProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	defer backend.Close()
	a, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	a.Update([]instances.Revision{{Name: "default/hello-00001", Addrs: []string{backend.Listener.Addr().String()}}}, nil)
	front := httptest.NewServer(a)
	defer front.Close()
	// The same activator with its HTTP/1.1 fast path off: ReverseProxy for everything.
	slow, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	slow.proxy.fastHTTP1 = false
	slow.Update([]instances.Revision{{Name: "default/hello-00001", Addrs: []string{backend.Listener.Addr().String()}}}, nil)
	slowFront := httptest.NewServer(slow)
	defer slowFront.Close()

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 1000, MaxIdleConnsPerHost: 1000}}
	targets := []struct{ name, url string }{{"direct", backend.URL}, {"activator", front.URL}, {"reverseproxy", slowFront.URL}}
	send := func(b *testing.B, url string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set(wire.HeaderNamespace, "default")
		req.Header.Set(wire.HeaderRevision, "hello-00001")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	for _, tg := range targets {
		b.Run("serial/"+tg.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				send(b, tg.url)
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
		})
	}
	for _, tg := range targets {
		b.Run("parallel/"+tg.name, func(b *testing.B) {
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					send(b, tg.url)
				}
			})
		})
	}
}
