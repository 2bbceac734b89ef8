package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// binaries are built once per test run by TestMain. A binary that failed to build fails every
// test that needs it (with the build output), not the whole run.
var binaries struct {
	sluice, helloworld       string
	sluiceErr, helloworldErr error
}

// buildTimeout bounds the one-off `go build` of the binaries under test.
const buildTimeout = 10 * time.Minute

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Every test calls needBinaries and skips; nothing to build.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "sluice-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		os.Exit(1)
	}
	code := func() int {
		if err := buildBinaries(dir); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		return m.Run()
	}()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildBinaries(dir string) error {
	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return fmt.Errorf("module root not found above the e2e directory: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	build := func(pkg string) (string, error) {
		out := filepath.Join(dir, filepath.Base(pkg))
		args := []string{"build", "-o", out}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, pkg)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		if msg, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go %v: %w\n%s", args, err, msg)
		}
		return out, nil
	}
	binaries.sluice, binaries.sluiceErr = build("./cmd/sluice")
	binaries.helloworld, binaries.helloworldErr = build("./examples/helloworld")
	return nil
}

// needBinaries skips the test in -short mode, where TestMain builds nothing, and fails it when a
// binary did not build.
func needBinaries(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode (needs the sluice and helloworld binaries)")
	}
	for _, err := range []error{binaries.helloworldErr, binaries.sluiceErr} {
		if err != nil {
			t.Fatalf("e2e: binary under test did not build: %v", err)
		}
	}
}

// needHelloworld is needBinaries for tests of the example app alone.
func needHelloworld(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode (needs the helloworld binary)")
	}
	if binaries.helloworldErr != nil {
		t.Fatalf("e2e: helloworld did not build: %v", binaries.helloworldErr)
	}
}
