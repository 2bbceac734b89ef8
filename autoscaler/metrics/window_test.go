package metrics

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func TestWindow(t *testing.T) {
	type rec struct {
		at int
		v  float64
	}
	type query struct {
		at     int
		window time.Duration
		want   float64
		ok     bool
	}
	series := func(from, to int, v float64) []rec {
		var r []rec
		for s := from; s <= to; s++ {
			r = append(r, rec{s, v})
		}
		return r
	}
	tests := []struct {
		name    string
		records []rec
		queries []query
	}{
		{"empty has no data", nil, []query{{0, time.Minute, 0, false}}},
		{"a young window is not diluted by seconds it never saw",
			series(0, 9, 10), []query{{9, time.Minute, 10, true}, {9, 6 * time.Second, 10, true}}},
		{"stable and panic windows over a ramp",
			append(series(0, 53, 0), series(54, 59, 60)...),
			[]query{{59, time.Minute, 6, true}, {59, 6 * time.Second, 60, true}}},
		{"the current second not yet sampled does not count",
			series(0, 59, 12), []query{{60, 6 * time.Second, 12, true}}},
		{"a skipped second counts as zero",
			[]rec{{0, 10}, {2, 10}}, []query{{2, time.Minute, 20.0 / 3, true}}},
		{"two values in one second are averaged",
			[]rec{{0, 10}, {0, 20}}, []query{{0, time.Minute, 15, true}}},
		{"no data once the last write is a window behind",
			series(0, 10, 5), []query{{69, time.Minute, 5, true}, {70, time.Minute, 0, false}, {15, 6 * time.Second, 5, true}, {16, 6 * time.Second, 0, false}}},
		{"after a gap longer than the capacity the series starts afresh",
			[]rec{{0, 100}, {100, 1}}, []query{{100, time.Minute, 1, true}}},
		{"values older than the capacity are dropped",
			[]rec{{100, 1}, {40, 1000}, {41, 30}}, []query{{100, time.Minute, (30.0 + 1) / 60, true}}},
		{"windows longer than the capacity are capped",
			series(0, 119, 3), []query{{119, time.Hour, 3, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWindow(time.Minute)
			for _, r := range tt.records {
				w.Record(at(r.at), r.v)
			}
			for _, q := range tt.queries {
				got, ok := w.Average(at(q.at), q.window)
				if ok != q.ok || !near(got, q.want) {
					t.Errorf("Average(t+%d, %v) = %g, %v; want %g, %v", q.at, q.window, got, ok, q.want, q.ok)
				}
			}
			if len(w.buckets) != 60 {
				t.Errorf("%d buckets, want 60", len(w.buckets))
			}
		})
	}
}

func near(a, b float64) bool { d := a - b; return d < 1e-9 && d > -1e-9 }
