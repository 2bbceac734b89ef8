package traffic

import (
	"cmp"
	"slices"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Tag is a tag of a route and the revision its host (and the Knative-Serving-Tag header on the
// route's main host) sends every request to.
type Tag struct {
	Name     string
	Revision string
}

// Share is one revision's percent of a route's main split.
type Share struct {
	Revision string
	Percent  uint32
}

// Group turns a route's served traffic (its status.traffic, as Resolve made it) into what gateways
// route, as Knative's traffic.Config groups it (knative.dev/serving pkg/reconciler/route/traffic,
// consolidate):
//   - tags, sorted by name, each to one revision at 100% (the last entry with the tag names it;
//     admission keeps tags unique anyway);
//   - main, the split of the route's main host: every entry with a positive percent, entries
//     naming the same revision (say, a tag at 30% and latestRevision at 70%) added into one
//     share, in the order the revisions first appear. Entries at 0% only give a tag a host.
//
// The results are built in tagBuf[:0] and mainBuf[:0] (either may be nil), so a caller can keep
// them on its stack.
func Group(served []v1.TrafficTarget, tagBuf []Tag, mainBuf []Share) (tags []Tag, main []Share) {
	// A traffic block has a few entries, so slices beat maps here.
	tags = tagBuf[:0]
	for _, tt := range served {
		if tt.Tag == "" {
			continue
		}
		if i := slices.IndexFunc(tags, func(t Tag) bool { return t.Name == tt.Tag }); i >= 0 {
			tags[i].Revision = tt.RevisionName
		} else {
			tags = append(tags, Tag{tt.Tag, tt.RevisionName})
		}
	}
	slices.SortFunc(tags, func(a, b Tag) int { return cmp.Compare(a.Name, b.Name) })

	main = mainBuf[:0]
	for _, tt := range served {
		if tt.Percent == nil || *tt.Percent <= 0 {
			continue
		}
		if i := slices.IndexFunc(main, func(s Share) bool { return s.Revision == tt.RevisionName }); i >= 0 {
			main[i].Percent += uint32(*tt.Percent)
		} else {
			main = append(main, Share{tt.RevisionName, uint32(*tt.Percent)})
		}
	}
	return tags, main
}
