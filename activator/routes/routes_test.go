package routes

import (
	"fmt"
	"testing"
)

// hello is the shape the control plane serves: a tag route per tag, then the default route.
var hello = Host{Name: "hello.default.example.com", Routes: []Route{
	{Tag: "v1", Targets: []Target{{"default/hello-00001", 100}}},
	{Tag: "next", Targets: []Target{{"default/hello-00002", 100}}},
	{Targets: []Target{{"default/hello-00001", 80}, {"default/hello-00002", 20}}},
}}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		host Host
		tag  string
		want int // index of the route; -1 for none
	}{
		{hello, "", 2},
		{hello, "v1", 0},
		{hello, "next", 1},
		{hello, "nope", 2},
		{hello, "V1", 2}, // exact match, as the route's header matcher
		{Host{Routes: []Route{{Tag: "v1"}}}, "", -1},
		{Host{Routes: []Route{{Tag: "v1"}}}, "v1", 0},
		{Host{}, "", -1},
		// Order decides, not specificity: a default route before a tag route shadows it.
		{Host{Routes: []Route{{}, {Tag: "v1"}}}, "v1", 0},
	} {
		r, ok := c.host.Match(c.tag)
		got := -1
		if ok {
			for i := range c.host.Routes {
				if &c.host.Routes[i] == r {
					got = i
				}
			}
		}
		if got != c.want {
			t.Errorf("%v.Match(%q) = route %d, want %d", c.host.Routes, c.tag, got, c.want)
		}
	}
}

func standings(m map[string]Standing) func(string) Standing {
	return func(c string) Standing { return m[c] }
}

func TestPick(t *testing.T) {
	ab := []Target{{"a", 80}, {"b", 20}}
	for _, c := range []struct {
		name    string
		targets []Target
		known   map[string]Standing
		rnd     uint64
		want    string // "" for none
	}{
		{"all proxied, low draw", ab, map[string]Standing{"a": Proxied, "b": Proxied}, 0, "a"},
		{"all proxied, last of a", ab, map[string]Standing{"a": Proxied, "b": Proxied}, 79, "a"},
		{"all proxied, first of b", ab, map[string]Standing{"a": Proxied, "b": Proxied}, 80, "b"},
		{"all proxied, draw wraps", ab, map[string]Standing{"a": Proxied, "b": Proxied}, 100 + 85, "b"},
		{"only b proxied", ab, map[string]Standing{"a": Direct, "b": Proxied}, 0, "b"},
		{"only a proxied", ab, map[string]Standing{"a": Proxied, "b": Direct}, 99, "a"},
		{"proxied but unknown other", ab, map[string]Standing{"b": Proxied}, 3, "b"},
		{"none proxied: by weight among known", ab, map[string]Standing{"a": Direct, "b": Direct}, 90, "b"},
		{"none proxied, one known", ab, map[string]Standing{"b": Direct}, 0, "b"},
		{"none known: by weight among all", ab, nil, 80, "b"},
		{"none known: by weight among all, a", ab, nil, 10, "a"},
		{"proxied with no weight is passed over", []Target{{"a", 0}, {"b", 100}}, map[string]Standing{"a": Proxied, "b": Direct}, 0, "b"},
		{"zero weights never picked", []Target{{"a", 0}, {"b", 5}, {"c", 0}}, map[string]Standing{"a": Proxied, "b": Proxied, "c": Proxied}, 4, "b"},
		{"no weight at all", []Target{{"a", 0}}, map[string]Standing{"a": Proxied}, 0, ""},
		{"no targets", nil, nil, 0, ""},
		{"single cluster", []Target{{"a", 1}}, nil, 12345, "a"},
	} {
		got, ok := Pick(c.targets, standings(c.known), c.rnd)
		if ok != (c.want != "") || got != c.want {
			t.Errorf("%s: Pick = %q, %v, want %q", c.name, got, ok, c.want)
		}
	}
}

// Over every draw in a cycle of the total weight, each proxied target is picked exactly its
// weight's share of times: the re-choice keeps the split exact.
func TestPickKeepsTheSplit(t *testing.T) {
	targets := []Target{{"a", 50}, {"b", 30}, {"c", 20}, {"d", 7}}
	known := standings(map[string]Standing{"a": Proxied, "b": Proxied, "c": Direct, "d": Proxied})
	counts := map[string]int{}
	for rnd := range uint64(87) {
		got, ok := Pick(targets, known, rnd)
		if !ok {
			t.Fatalf("Pick(rnd=%d) found nothing", rnd)
		}
		counts[got]++
	}
	if want := map[string]int{"a": 50, "b": 30, "d": 7}; fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("counts over a cycle = %v, want %v", counts, want)
	}
}

func TestPickManyTargets(t *testing.T) {
	var targets []Target
	known := map[string]Standing{}
	for i := range 20 {
		name := fmt.Sprintf("r%02d", i)
		targets = append(targets, Target{name, 5})
		if i == 17 {
			known[name] = Proxied
		}
	}
	if got, ok := Pick(targets, standings(known), 3); !ok || got != "r17" {
		t.Fatalf("Pick = %q, %v, want r17", got, ok)
	}
}
