package traffic

import (
	"encoding/json"
	"strings"
	"testing"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// tt builds a target tersely: rev "@latest" means latestRevision: true.
func tt(rev string, pct int64, tag string) v1.TrafficTarget {
	t := v1.TrafficTarget{Tag: tag, Percent: ptr(pct)}
	if rev == Latest {
		t.LatestRevision = ptr(true)
	} else {
		t.RevisionName = rev
		t.LatestRevision = ptr(false)
	}
	return t
}

func TestApplyFlags(t *testing.T) {
	revs := []string{"hello-00001", "hello-00002", "hello-00003"}
	tests := []struct {
		name    string
		current []v1.TrafficTarget
		flags   Flags
		want    []v1.TrafficTarget
		wantErr string
	}{
		{
			name:  "no block means 100% latest; blue-green pin",
			flags: Flags{Traffic: []string{"hello-00001=100"}},
			want:  []v1.TrafficTarget{tt("hello-00001", 100, "")},
		},
		{
			name:    "canary 80/20 between a revision and @latest",
			current: []v1.TrafficTarget{tt("hello-00001", 100, "")},
			flags:   Flags{Traffic: []string{"hello-00001=80", "@latest=20"}},
			want:    []v1.TrafficTarget{tt("hello-00001", 80, ""), tt(Latest, 20, "")},
		},
		{
			name:    "percent sign accepted",
			current: []v1.TrafficTarget{tt("hello-00001", 100, "")},
			flags:   Flags{Traffic: []string{"hello-00001=50%", "hello-00002=50%"}},
			want:    []v1.TrafficTarget{tt("hello-00001", 50, ""), tt("hello-00002", 50, "")},
		},
		{
			name:    "cutover by tag keeps the 0% tagged target",
			current: []v1.TrafficTarget{tt("hello-00001", 100, "blue"), tt("hello-00002", 0, "green")},
			flags:   Flags{Traffic: []string{"green=100"}},
			want:    []v1.TrafficTarget{tt("hello-00001", 0, "blue"), tt("hello-00002", 100, "green")},
		},
		{
			name:    "untagged targets left at 0% are dropped",
			current: []v1.TrafficTarget{tt("hello-00001", 50, ""), tt("hello-00002", 50, "")},
			flags:   Flags{Traffic: []string{"hello-00002=100"}},
			want:    []v1.TrafficTarget{tt("hello-00002", 100, "")},
		},
		{
			name:    "tag an untagged revision in place",
			current: []v1.TrafficTarget{tt("hello-00001", 100, "")},
			flags:   Flags{Tags: []string{"hello-00001=v1"}},
			want:    []v1.TrafficTarget{tt("hello-00001", 100, "v1")},
		},
		{
			name:    "tag a revision without traffic adds a 0% target",
			current: []v1.TrafficTarget{tt(Latest, 100, "")},
			flags:   Flags{Tags: []string{"hello-00001=v1"}},
			want:    []v1.TrafficTarget{tt(Latest, 100, ""), tt("hello-00001", 0, "v1")},
		},
		{
			name:    "second tag on a tagged revision adds a target",
			current: []v1.TrafficTarget{tt("hello-00001", 100, "v1")},
			flags:   Flags{Tags: []string{"hello-00001=stable"}},
			want:    []v1.TrafficTarget{tt("hello-00001", 100, "v1"), tt("hello-00001", 0, "stable")},
		},
		{
			name:    "tag @latest",
			current: []v1.TrafficTarget{tt("hello-00001", 100, "")},
			flags:   Flags{Tags: []string{"@latest=latest"}},
			want:    []v1.TrafficTarget{tt("hello-00001", 100, ""), tt(Latest, 0, "latest")},
		},
		{
			name:    "retag: untag runs before tag",
			current: []v1.TrafficTarget{tt("hello-00001", 100, "testing")},
			flags:   Flags{Untag: []string{"testing"}, Tags: []string{"hello-00001=staging"}},
			want:    []v1.TrafficTarget{tt("hello-00001", 100, "staging")},
		},
		{
			name:    "untag drops a 0% target",
			current: []v1.TrafficTarget{tt("hello-00001", 100, ""), tt("hello-00002", 0, "v2")},
			flags:   Flags{Untag: []string{"v2"}},
			want:    []v1.TrafficTarget{tt("hello-00001", 100, "")},
		},
		{
			name:    "tag and traffic in one go (seed article: v1/v2/latest)",
			current: []v1.TrafficTarget{tt(Latest, 100, "")},
			flags: Flags{
				Tags:    []string{"hello-00001=v1", "hello-00002=v2", "@latest=latest"},
				Traffic: []string{"v1=50", "v2=50"},
			},
			want: []v1.TrafficTarget{tt(Latest, 0, "latest"), tt("hello-00001", 50, "v1"), tt("hello-00002", 50, "v2")},
		},
		{
			name:    "re-tagging with the same tag is a no-op",
			current: []v1.TrafficTarget{tt("hello-00001", 100, "v1")},
			flags:   Flags{Tags: []string{"hello-00001=v1"}},
			want:    []v1.TrafficTarget{tt("hello-00001", 100, "v1")},
		},
		{
			name:    "a tag wins over a revision of the same name",
			current: []v1.TrafficTarget{tt("hello-00001", 100, ""), tt("hello-00002", 0, "hello-00001")},
			flags:   Flags{Traffic: []string{"hello-00001=100"}},
			want:    []v1.TrafficTarget{tt("hello-00002", 100, "hello-00001")},
		},

		{name: "sum below 100", flags: Flags{Traffic: []string{"hello-00001=90"}}, wantErr: "percents sum to 90, want 100"},
		{name: "sum above 100", flags: Flags{Traffic: []string{"hello-00001=90", "@latest=20"}}, wantErr: "percents sum to 110, want 100"},
		{name: "percent out of range", flags: Flags{Traffic: []string{"hello-00001=120"}}, wantErr: "from 0 to 100"},
		{name: "percent not a number", flags: Flags{Traffic: []string{"hello-00001=half"}}, wantErr: `got "half"`},
		{name: "malformed traffic", flags: Flags{Traffic: []string{"hello-00001"}}, wantErr: "want the form REV=PERCENT"},
		{name: "malformed tag", flags: Flags{Tags: []string{"=v1"}}, wantErr: "want the form REV=TAG"},
		{name: "repeated revision", flags: Flags{Traffic: []string{"hello-00001=50", "hello-00001=50"}}, wantErr: "hello-00001 is given more than once"},
		{name: "repeated @latest traffic", flags: Flags{Traffic: []string{"@latest=50", "@latest=50"}}, wantErr: "@latest is given more than once"},
		{name: "repeated @latest tag", flags: Flags{Tags: []string{"@latest=a", "@latest=b"}}, wantErr: "@latest is given more than once"},
		{name: "duplicate tag in flags", flags: Flags{Tags: []string{"hello-00001=v1", "hello-00002=v1"}}, wantErr: `tag "v1" is given twice`},
		{
			name:    "tag already on another target",
			current: []v1.TrafficTarget{tt("hello-00001", 100, "v1")},
			flags:   Flags{Tags: []string{"hello-00002=v1"}},
			wantErr: `tag "v1" is already on another target; add --untag v1`,
		},
		{
			name:    "@latest already tagged",
			current: []v1.TrafficTarget{tt(Latest, 100, "current")},
			flags:   Flags{Tags: []string{"@latest=next"}},
			wantErr: `@latest already has tag "current"`,
		},
		{name: "unknown tag to untag", flags: Flags{Untag: []string{"nope"}}, wantErr: "tag nope is not on any traffic target"},
		{name: "unknown revision to tag", flags: Flags{Tags: []string{"hello-00009=v9"}}, wantErr: `unknown revision "hello-00009"`},
		{name: "unknown revision or tag for traffic", flags: Flags{Traffic: []string{"nope=100"}}, wantErr: `"nope" is neither a tag`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := js(t, tc.current)
			got, err := ApplyFlags(tc.current, revs, tc.flags)
			if js(t, tc.current) != before {
				t.Errorf("ApplyFlags modified its input")
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ApplyFlags: %v", err)
			}
			if g, w := js(t, got), js(t, tc.want); g != w {
				t.Errorf("traffic =\n%s\nwant\n%s", g, w)
			}
		})
	}
}

func js(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
