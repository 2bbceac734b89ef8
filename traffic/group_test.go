package traffic

import (
	"fmt"
	"testing"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

func TestGroup(t *testing.T) {
	for _, c := range []struct {
		name   string
		served []v1.TrafficTarget
		tags   string // "tag:rev" in order
		main   string // "rev=pct" in order
	}{
		{"nothing served", nil, "[]", "[]"},
		{"all to one revision", []v1.TrafficTarget{tt("a", 100, "")}, "[]", "[a=100]"},
		{"canary keeps the order of the block", []v1.TrafficTarget{tt("b", 20, ""), tt("a", 80, "")}, "[]", "[b=20 a=80]"},
		{
			"blue-green: a 0% tag gets a host but no share",
			[]v1.TrafficTarget{tt("a", 100, "blue"), tt("b", 0, "green")},
			"[blue:a green:b]", "[a=100]",
		},
		{
			"entries of one revision share a split",
			[]v1.TrafficTarget{tt("b", 30, "x"), tt("b", 70, "")},
			"[x:b]", "[b=100]",
		},
		{
			"tags sorted by name",
			[]v1.TrafficTarget{tt("a", 50, "zeta"), tt("b", 50, "alpha"), tt("c", 0, "mid")},
			"[alpha:b mid:c zeta:a]", "[a=50 b=50]",
		},
		{"the last entry of a tag names its revision", []v1.TrafficTarget{tt("a", 100, "v"), tt("b", 0, "v")}, "[v:b]", "[a=100]"},
		{"no percent is no share", []v1.TrafficTarget{{RevisionName: "a", Tag: "t"}}, "[t:a]", "[]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Used buffers: Group must overwrite, not append to, what they hold.
			tags, main := Group(c.served, []Tag{{"stale", "x"}}, []Share{{"stale", 1}})
			var gotTags, gotMain []string
			for _, t := range tags {
				gotTags = append(gotTags, t.Name+":"+t.Revision)
			}
			for _, s := range main {
				gotMain = append(gotMain, fmt.Sprintf("%s=%d", s.Revision, s.Percent))
			}
			if g := fmt.Sprint(gotTags); g != c.tags {
				t.Errorf("tags = %s, want %s", g, c.tags)
			}
			if g := fmt.Sprint(gotMain); g != c.main {
				t.Errorf("main = %s, want %s", g, c.main)
			}
		})
	}
}
