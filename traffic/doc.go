// Package traffic is where sluice decides how a Route's requests are split: Knative Serving's
// serving.knative.dev/v1 traffic semantics, from what users write (spec.traffic of a Route or
// Service, or kn's flags) to what gateways and the activator serve. Each step that is a
// computation is a pure function here, with its table tests beside it; the packages around it
// look things up and build their own shapes from the results. It imports only routing/v1, so
// routing, envoy, the activator and the command line can all use it.
//
// The steps, in the order traffic goes through them:
//
//  1. Flags (ApplyFlags). `sluice service update --traffic REV=PCT --tag REV=TAG --untag TAG`
//     rewrites a Service's spec.traffic as kn does: untag first, then tag, then percents, then
//     drop entries left with neither a percent nor a tag. REV is a revision name, @latest, or
//     (for --traffic) a tag, which wins over a revision of the same name. Unlike kn, the
//     percents given must sum to exactly 100 and named revisions must exist.
//
//  2. Defaults (v1.SetDefaults, v1.DefaultTraffic). No traffic block means 100% to the latest
//     ready revision ({latestRevision: true, percent: 100}); every entry gets latestRevision
//     spelled out, false when it names a revision.
//
//  3. Validation (v1.Validate). An entry names exactly one of revisionName or latestRevision:
//     true (in a standalone Route: exactly one of revisionName or configurationName; a Service
//     may not use configurationName); percents are 0..100 and sum to exactly 100 ("Traffic
//     targets sum to 90, want 100"); a tag is a DNS-1035 label, unique in the block, and short
//     enough that "{tag}-{name}" is a host label; url is output only. routing.Apply adds what
//     needs other objects, and is stricter than Knative there: a revisionName or
//     configurationName that does not exist in the namespace is refused when applied, rather
//     than reported later as a Route that is not ready.
//
//  4. Resolution (Resolve, Follows). Every entry becomes a named revision: latestRevision and
//     configurationName entries stand for the latest ready revision of their configuration (in
//     a Service's route, the Service's own). A block is served only as a whole: when an entry
//     resolves to a missing or not-ready revision, the Route says why (RevisionMissing,
//     RevisionNotReady) and keeps serving what its status.traffic says it served. The latest
//     ready revision of a configuration never moves back to an older one (routing's reconcile
//     of a Configuration), so latestRevision traffic waits for a revision that went down rather
//     than going back to older code.
//
//  5. Grouping (Group). What a route serves becomes its main split (entries at 0% left out,
//     entries of one revision added into one share) and one route per tag, all of it to the
//     tag's revision. A tag is reached at its own host, {tag}-{name}.{namespace}.{domain} (or
//     {tag}-{name}.{namespace}.svc.cluster.local), and on the main host with the request header
//     Knative-Serving-Tag: {tag}; the tag routes come before the main split on the main host.
//     routing builds its Table from this; envoy makes each split's percents the weights of its
//     weighted clusters, unchanged.
//
//  6. Picking (Pick). A gateway picks a split's revision by weight. The activator, which
//     receives requests of proxyless gRPC clients without a revision header, picks again by
//     weight among the revisions whose requests it receives (activator/routes.Pick ranks them).
//
// Defaults and validation (steps 2 and 3) are written in routing/v1, not here: v1.Decode and
// v1.Validate apply them to every object, and v1 cannot import this package, which imports v1.
//
// Where sluice differs from Knative Serving, beyond what is said above:
//   - serving.knative.dev/rollout-duration (moving latestRevision traffic in steps) is not
//     implemented: traffic moves at once when the new revision is ready;
//   - status.traffic has an entry per spec entry, where Knative merges entries of the same
//     revision and tag (the Table merges them as Knative does);
//   - Resolve reports the first entry it cannot serve; Knative looks at every entry first;
//   - a Service's route may name any revision of its namespace; Knative's reconciler refuses a
//     revision of another Service.
//
// Followed: knative/serving at 98e5ef90aa70 (pkg/reconciler/route/traffic/traffic.go,
// pkg/apis/serving/v1/route_defaults.go and route_validation.go), knative/client's
// pkg/kn/traffic/compute.go for the flags.
package traffic
