// Package e2e holds sluice's end-to-end tests. They build the real binaries (cmd/sluice and
// examples/helloworld), start `sluice serve` and helloworld backends as processes on loopback
// ports, change state only through the sluice CLI, and check the result through real data
// planes: gRPC-Go's proxyless xDS client always, and Envoy over HTTP when `envoy` is on PATH.
//
// Run them with `go test ./e2e/...` (add -race to also build the binaries with the race detector).
package e2e
