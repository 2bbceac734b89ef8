package e2e

import (
	"testing"
	"time"
)

// TestScaleFromZeroThroughEnvoy is scale from zero with Envoy as the gateway (skipped without an
// envoy binary on PATH): Envoy sets Knative-Serving-Namespace/Revision on the way to the
// activator, so the activator needs no route lookup; and with the activator out of the path
// (target-burst-capacity 0) only Envoy's load reports (LRS, from the shipped bootstrap's
// load_stats_config) show the autoscaler the load, so a scale-up under load proves they arrive.
func TestScaleFromZeroThroughEnvoy(t *testing.T) {
	g := needEnvoy(t)
	e := startScaleSluice(t, g.sluiceFlags()...)
	e.s.mustApply("hello.yaml", scaledApp{
		target: "v1",
		delay:  150 * time.Millisecond,
		annotations: map[string]string{
			"min-scale":             "0",
			"max-scale":             "3",
			"target":                "10",
			"target-burst-capacity": "0",
		},
	}.yaml())
	e.waitScale(t, scaledRevision, "ready with its initial instance", func(sc revScale) bool { return sc.Ready >= 1 })
	e.waitZero(t, scaledRevision)

	ep := g.start(t, e.s)
	ok, errs := burst(ep, mainHost, 50, burstTimeout)
	if len(errs) > 0 {
		t.Fatalf("%d of 50 concurrent requests from zero through Envoy failed: %v", 50-ok, errs)
	}
	// Serve mode once an instance is ready: Envoy sends to the instances, the activator sees
	// nothing, and 21 requests in flight at target 10 (7 at 70%) ask for 3 instances.
	load := startTimedLoad(t, ep, mainHost, 21)
	sc := e.waitScale(t, scaledRevision, "scaled up on Envoy's load reports", func(sc revScale) bool { return sc.Ready >= 2 })
	load.waitMore(t, 200)
	load.requireNoFailures(t, "21 workers through Envoy")
	t.Logf("through Envoy: %s", sc)
}
