package routing

import (
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkRetainedHeapBuilder is the live heap a TableBuilder holds after a full build (its
// Table and memos) and the live heap of a State's index built from scratch (runtime.ReadMemStats
// after GC), on top of the State itself.
//
//	go test -run '^$' -bench 'BenchmarkRetainedHeapBuilder' -benchtime 1x ./routing/
func BenchmarkRetainedHeapBuilder(b *testing.B) {
	for _, n := range []int{10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st, src := benchState(b, n)
			var builder, index uint64
			for b.Loop() {
				fresh := &State{Services: st.Services, Configurations: st.Configurations, Routes: st.Routes, Revisions: st.Revisions}
				base := retainedLiveHeap()
				ix := fresh.index()
				afterIx := retainedLiveHeap()
				tb := NewTableBuilder(Config{})
				tab := tb.Build(fresh, src, nil)
				afterTB := retainedLiveHeap()
				if len(tab.Backends) != 2*n {
					b.Fatalf("%d backends", len(tab.Backends))
				}
				runtime.KeepAlive(ix)
				runtime.KeepAlive(tb)
				runtime.KeepAlive(fresh)
				index, builder = afterIx-min(base, afterIx), afterTB-min(afterIx, afterTB)
			}
			b.ReportMetric(float64(index)/(1<<20), "index-MB")
			b.ReportMetric(float64(builder)/(1<<20), "builder-MB")
		})
	}
}

func retainedLiveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkRetainedHeapStaticCache is the live heap of StaticEndpoints' parse cache holding
// one annotation value per revision of 10,000 services.
//
//	go test -run '^$' -bench 'BenchmarkRetainedHeapStaticCache' -benchtime 1x ./routing/
func BenchmarkRetainedHeapStaticCache(b *testing.B) {
	const n = 20000
	vals := make([]string, n)
	for i := range vals {
		vals[i] = fmt.Sprintf("10.%d.%d.%d:8080", i>>16&255, i>>8&255, i&255)
	}
	var size uint64
	for b.Loop() {
		c := &parseCache{limit: 1 << 16}
		base := retainedLiveHeap()
		for _, v := range vals {
			if !c.get(v).Ready {
				b.Fatal(v)
			}
		}
		after := retainedLiveHeap()
		runtime.KeepAlive(c)
		size = after - min(base, after)
	}
	b.ReportMetric(float64(size)/(1<<20), "cache-MB")
}
