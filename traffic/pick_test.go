package traffic

import (
	"fmt"
	"testing"
)

func TestPick(t *testing.T) {
	for _, c := range []struct {
		name    string
		weights []uint32
		ranks   []int
		rnd     uint64
		want    int // -1 for none
	}{
		{"by weight, low draw", []uint32{80, 20}, []int{0, 0}, 0, 0},
		{"by weight, last of the first", []uint32{80, 20}, []int{0, 0}, 79, 0},
		{"by weight, first of the second", []uint32{80, 20}, []int{0, 0}, 80, 1},
		{"the draw wraps at the total", []uint32{80, 20}, []int{0, 0}, 100 + 85, 1},
		{"the higher rank only", []uint32{80, 20}, []int{0, 1}, 0, 1},
		{"the higher rank only, whatever the draw", []uint32{80, 20}, []int{1, 0}, 99, 0},
		{"a rank without weight falls back", []uint32{0, 100}, []int{2, 1}, 0, 1},
		{"weightless candidates never picked", []uint32{0, 5, 0}, []int{0, 0, 0}, 4, 1},
		{"negative ranks", []uint32{10, 10}, []int{-2, -1}, 3, 1},
		{"no weight at all", []uint32{0}, []int{0}, 0, -1},
		{"no candidates", nil, nil, 0, -1},
	} {
		got, ok := Pick(len(c.weights), func(i int) uint32 { return c.weights[i] }, func(i int) int { return c.ranks[i] }, c.rnd)
		if !ok {
			got = -1
		}
		if got != c.want || ok != (c.want >= 0) {
			t.Errorf("%s: Pick = %d, %v, want %d", c.name, got, ok, c.want)
		}
	}
}

// Over every draw in a cycle of the total weight of the best rank, each of its candidates is
// picked exactly its weight's share of times.
func TestPickKeepsTheShares(t *testing.T) {
	weights := []uint32{50, 30, 20, 7}
	ranks := []int{1, 1, 0, 1}
	counts := map[int]int{}
	for rnd := range uint64(87) {
		i, ok := Pick(len(weights), func(i int) uint32 { return weights[i] }, func(i int) int { return ranks[i] }, rnd)
		if !ok {
			t.Fatalf("Pick(rnd=%d) found nothing", rnd)
		}
		counts[i]++
	}
	if want := map[int]int{0: 50, 1: 30, 3: 7}; fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("counts over a cycle = %v, want %v", counts, want)
	}
}
