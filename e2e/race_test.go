//go:build race

package e2e

// raceEnabled builds the binaries under test with -race when the tests themselves run with it,
// so that a data race in sluice fails the end-to-end run too.
const raceEnabled = true
