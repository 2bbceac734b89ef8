package traffic

import (
	"fmt"
	"strconv"
	"strings"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Latest names the latest ready revision in flags, as in kn.
const Latest = "@latest"

// Flags are the raw flag values, in the order given.
type Flags struct {
	// Traffic are REV=PCT; REV is a revision name, a tag or @latest; PCT may end in %.
	Traffic []string
	// Tags are REV=TAG; REV is a revision name or @latest.
	Tags []string
	// Untag are tags to remove.
	Untag []string
}

// Empty reports whether no flag was given.
func (f Flags) Empty() bool { return len(f.Traffic) == 0 && len(f.Tags) == 0 && len(f.Untag) == 0 }

type pair struct{ ref, value string }

func split(flag, v string) (pair, error) {
	ref, value, ok := strings.Cut(v, "=")
	if !ok || ref == "" || value == "" || strings.Contains(value, "=") {
		return pair{}, fmt.Errorf("--%s %q: want the form %s", flag, v, map[string]string{"traffic": "REV=PERCENT", "tag": "REV=TAG"}[flag])
	}
	return pair{ref, value}, nil
}

// ApplyFlags returns the traffic block that results from applying f to current (a Service's
// spec.traffic; empty means all traffic to the latest revision), as
// kn service update --traffic REV=PCT --tag REV=TAG --untag TAG does. revisions are the names of
// the Service's existing revisions. current is not modified.
//
// It follows kn's precedence: untag first, then tag, then percentages, and finally drop targets
// left with neither traffic nor a tag. It differs from kn where kn guesses: percentages given with
// --traffic must sum to exactly 100 (kn may hand the remainder to an unnamed revision), and a
// revision must exist (kn leaves that to the server).
func ApplyFlags(current []v1.TrafficTarget, revisions []string, f Flags) ([]v1.TrafficTarget, error) {
	known := make(map[string]bool, len(revisions))
	for _, r := range revisions {
		known[r] = true
	}

	percents, err := parseTraffic(f.Traffic)
	if err != nil {
		return nil, err
	}
	tags, err := parseTags(f.Tags)
	if err != nil {
		return nil, err
	}

	t := clone(current)
	if len(t) == 0 {
		t = v1.DefaultTraffic(nil)
	}

	var missing []string
	for _, tag := range f.Untag {
		i := indexOf(t, func(x v1.TrafficTarget) bool { return x.Tag == tag })
		if i < 0 {
			missing = append(missing, tag)
			continue
		}
		t[i].Tag = ""
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("--untag: tag %s is not on any traffic target", strings.Join(missing, ", "))
	}

	for _, p := range tags {
		rev, tag := p.ref, p.value
		if rev == Latest {
			i := indexOf(t, isLatest)
			if i >= 0 && t[i].Tag == tag {
				continue
			}
			if j := indexOf(t, func(x v1.TrafficTarget) bool { return x.Tag == tag }); j >= 0 {
				return nil, errTagInUse(tag)
			}
			switch {
			case i < 0:
				t = append(t, v1.TrafficTarget{Tag: tag, LatestRevision: ptr(true), Percent: ptr[int64](0)})
			case t[i].Tag == "":
				t[i].Tag = tag
			default:
				return nil, fmt.Errorf("--tag %s=%s: @latest already has tag %q; add --untag %s to replace it", rev, tag, t[i].Tag, t[i].Tag)
			}
			continue
		}
		if !known[rev] {
			return nil, fmt.Errorf("--tag %s=%s: unknown revision %q%s", rev, tag, rev, knownList(revisions))
		}
		if indexOf(t, func(x v1.TrafficTarget) bool { return x.Tag == tag && x.RevisionName == rev }) >= 0 {
			continue
		}
		if indexOf(t, func(x v1.TrafficTarget) bool { return x.Tag == tag }) >= 0 {
			return nil, errTagInUse(tag)
		}
		// A revision may carry several tags: tag an untagged target of it, else add a 0% one.
		if i := indexOf(t, func(x v1.TrafficTarget) bool { return x.RevisionName == rev && !isLatest(x) && x.Tag == "" }); i >= 0 {
			t[i].Tag = tag
		} else {
			t = append(t, v1.TrafficTarget{Tag: tag, RevisionName: rev, LatestRevision: ptr(false), Percent: ptr[int64](0)})
		}
	}

	if len(percents) > 0 {
		// What the flags say is the whole split: everything not named gets 0%.
		for i := range t {
			t[i].Percent = ptr[int64](0)
		}
		for _, p := range percents {
			pct := p.percent
			var i int
			switch {
			case p.ref == Latest:
				// Prefer the untagged @latest target: a tagged one is usually a 0% preview URL.
				if i = indexOf(t, func(x v1.TrafficTarget) bool { return isLatest(x) && x.Tag == "" }); i < 0 {
					i = indexOf(t, isLatest)
				}
				if i < 0 {
					t = append(t, v1.TrafficTarget{LatestRevision: ptr(true)})
					i = len(t) - 1
				}
			case indexOf(t, func(x v1.TrafficTarget) bool { return x.Tag == p.ref }) >= 0:
				// A tag wins over a revision of the same name: tags are unique, names in targets are not.
				i = indexOf(t, func(x v1.TrafficTarget) bool { return x.Tag == p.ref })
			default:
				if !known[p.ref] {
					return nil, fmt.Errorf("--traffic %s=%d: %q is neither a tag in the traffic block nor a revision of the service%s", p.ref, pct, p.ref, knownList(revisions))
				}
				if i = indexOf(t, func(x v1.TrafficTarget) bool { return x.RevisionName == p.ref && !isLatest(x) && x.Tag == "" }); i < 0 {
					i = indexOf(t, func(x v1.TrafficTarget) bool { return x.RevisionName == p.ref && !isLatest(x) })
				}
				if i < 0 {
					t = append(t, v1.TrafficTarget{RevisionName: p.ref, LatestRevision: ptr(false)})
					i = len(t) - 1
				}
			}
			t[i].Percent = ptr(pct)
		}
	}

	out := t[:0]
	for _, x := range t {
		if x.Tag != "" || x.Percent != nil && *x.Percent != 0 {
			out = append(out, x)
		}
	}
	return out, nil
}

type percent struct {
	ref     string
	percent int64
}

func parseTraffic(flags []string) ([]percent, error) {
	var out []percent
	seen := map[string]bool{}
	var sum int64
	for _, v := range flags {
		p, err := split("traffic", v)
		if err != nil {
			return nil, err
		}
		if seen[p.ref] {
			return nil, fmt.Errorf("--traffic: %s is given more than once; name each revision or tag once", p.ref)
		}
		seen[p.ref] = true
		n, err := strconv.ParseInt(strings.TrimSuffix(p.value, "%"), 10, 64)
		if err != nil || n < 0 || n > 100 {
			return nil, fmt.Errorf("--traffic %s: percent must be a whole number from 0 to 100, got %q", v, p.value)
		}
		sum += n
		out = append(out, percent{p.ref, n})
	}
	if len(out) > 0 && sum != 100 {
		return nil, fmt.Errorf("--traffic: percents sum to %d, want 100", sum)
	}
	return out, nil
}

func parseTags(flags []string) ([]pair, error) {
	var out []pair
	seenTag := map[string]string{}
	latest := false
	for _, v := range flags {
		p, err := split("tag", v)
		if err != nil {
			return nil, err
		}
		if prev, ok := seenTag[p.value]; ok {
			return nil, fmt.Errorf("--tag: tag %q is given twice (%s=%s and %s); a tag names one target", p.value, prev, p.value, v)
		}
		seenTag[p.value] = p.ref
		if p.ref == Latest {
			if latest {
				return nil, fmt.Errorf("--tag: %s is given more than once; it can carry one tag", Latest)
			}
			latest = true
		}
		out = append(out, p)
	}
	return out, nil
}

func errTagInUse(tag string) error {
	return fmt.Errorf("--tag: tag %q is already on another target; add --untag %s to move it", tag, tag)
}

func knownList(revisions []string) string {
	if len(revisions) == 0 {
		return " (the service has no revisions)"
	}
	return " (revisions: " + strings.Join(revisions, ", ") + ")"
}

func isLatest(x v1.TrafficTarget) bool { return x.LatestRevision != nil && *x.LatestRevision }

func indexOf(t []v1.TrafficTarget, f func(v1.TrafficTarget) bool) int {
	for i, x := range t {
		if f(x) {
			return i
		}
	}
	return -1
}

// clone copies targets deeply enough that setting a field never writes through to the input.
func clone(in []v1.TrafficTarget) []v1.TrafficTarget {
	out := make([]v1.TrafficTarget, len(in))
	for i, x := range in {
		if x.LatestRevision != nil {
			x.LatestRevision = ptr(*x.LatestRevision)
		}
		if x.Percent != nil {
			x.Percent = ptr(*x.Percent)
		}
		x.URL = "" // output only; applying it back is an error
		out[i] = x
	}
	return out
}

func ptr[T any](v T) *T { return &v }
