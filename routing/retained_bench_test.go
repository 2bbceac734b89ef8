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
