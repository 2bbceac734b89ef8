package activator

import (
	"testing"
	"time"
)

func TestConcurrencyAverage(t *testing.T) {
	t0 := time.Unix(100, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tests := []struct {
		name   string
		events []struct{ ms, d int } // a change of d requests at ms
		take   int                   // ms of the report
		want   uint64
	}{
		{"idle", nil, 1000, 0},
		{"one request all along", []struct{ ms, d int }{{0, 1}}, 1000, 1},
		// 200 requests held for 300 ms of the second: 60 on average, where a snapshot at
		// either end sees none.
		{"a burst between reports", []struct{ ms, d int }{{0, 0}, {100, 200}, {400, -200}}, 1000, 60},
		{"half the time", []struct{ ms, d int }{{0, 0}, {500, 2}}, 1000, 1},
		{"rounds up", []struct{ ms, d int }{{0, 0}, {990, 1}}, 1000, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c concurrency
			c.take(at(0))
			for _, e := range tt.events {
				c.add(int64(e.d), at(e.ms))
			}
			if got := c.take(at(tt.take)); got != tt.want {
				t.Errorf("take = %d, want %d", got, tt.want)
			}
		})
	}
	// The next interval starts at the take: a request still held counts fully in it.
	var c concurrency
	c.take(at(0))
	c.add(3, at(500))
	c.take(at(1000))
	if got := c.take(at(2000)); got != 3 {
		t.Errorf("second interval = %d, want 3", got)
	}
}
