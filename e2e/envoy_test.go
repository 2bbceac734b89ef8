package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Flags of `sluice serve` that move the Envoy gateway listeners (default 0.0.0.0:8080 and :8081)
// onto test ports on loopback.
const (
	flagEnvoyExternal = "--envoy-external-addr"
	flagEnvoyInternal = "--envoy-internal-addr"
)

// envoyGateway is what an Envoy test needs: the sluice flags for its listener ports and, once
// sluice runs, the Envoy process itself.
type envoyGateway struct {
	bin          string
	externalAddr string
	internalAddr string
}

// needEnvoy skips the test when envoy is not on PATH, and otherwise picks loopback listener ports.
func needEnvoy(t *testing.T) *envoyGateway {
	t.Helper()
	bin, err := exec.LookPath("envoy")
	if err != nil {
		t.Skip("envoy is not on PATH: the Envoy data-plane scenarios are skipped (the gRPC xDS client ran them)")
	}
	needBinaries(t)
	help := runCLI(t, "", "serve", "--help")
	for _, f := range []string{flagEnvoyExternal, flagEnvoyInternal} {
		if !strings.Contains(help.stdout+help.stderr, f) {
			t.Fatalf("sluice serve has no %s flag, so Envoy's listeners cannot be moved to loopback test ports:\n%s", f, help)
		}
	}
	return &envoyGateway{
		bin:          bin,
		externalAddr: loopback(freePort(t)),
		internalAddr: loopback(freePort(t)),
	}
}

// sluiceFlags are the `sluice serve` flags that put Envoy's listeners on this gateway's ports.
func (g *envoyGateway) sluiceFlags() []string {
	return []string{flagEnvoyExternal, g.externalAddr, flagEnvoyInternal, g.internalAddr}
}

// start runs Envoy with the shipped envoy/bootstrap.yaml, its admin and sluice ports replaced by
// the test's, and waits until it is ready. Routes arrive later; callers wait for answers.
func (g *envoyGateway) start(t *testing.T, s *sluiceServer) *envoyPlane {
	t.Helper()
	shipped, err := os.ReadFile(filepath.Join("..", "envoy", "bootstrap.yaml"))
	if err != nil {
		t.Fatalf("read envoy/bootstrap.yaml: %v", err)
	}
	_, xdsPort, _ := strings.Cut(s.xdsAddr, ":")
	adminPort := freePort(t)
	bootstrap := string(shipped)
	for old, repl := range map[string]string{
		"port_value: 9901":  "port_value: " + strconv.Itoa(adminPort),
		"port_value: 18000": "port_value: " + xdsPort,
	} {
		if strings.Count(bootstrap, old) != 1 {
			t.Fatalf("envoy/bootstrap.yaml no longer has exactly one %q; update the e2e harness", old)
		}
		bootstrap = strings.Replace(bootstrap, old, repl, 1)
	}
	path := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(path, []byte(bootstrap), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "envoy", g.bin, []string{
		"-c", path,
		"--service-node", "e2e-envoy-" + strings.ReplaceAll(t.Name(), "/", "-"),
		"--service-cluster", "sluice-e2e",
		"--disable-hot-restart",
		"--concurrency", "1",
		"--log-level", "warn",
		"--drain-time-s", "1",
	}, nil)
	admin := "http://" + loopback(adminPort)
	waitFor(t, startTimeout, "envoy /ready", func() (bool, string) {
		if p.exited() {
			t.Fatalf("envoy exited during start-up: %s", p.exitState())
		}
		code, body, err := httpGet(admin + "/ready")
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK, fmt.Sprintf("HTTP %d: %s", code, body)
	})
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second},
		Timeout:   callTimeout,
	}
	t.Cleanup(client.CloseIdleConnections)
	t.Cleanup(func() {
		if t.Failed() {
			// What Envoy had: the best clue when a route did not arrive.
			for _, q := range []string{"/listeners", "/clusters", "/config_dump?resource=dynamic_route_configs"} {
				if _, body, err := httpGet(admin + q); err == nil {
					t.Logf("envoy admin %s:\n%s", q, truncate(body, 16<<10))
				}
			}
		}
	})
	return &envoyPlane{addr: g.externalAddr, client: client}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n...(truncated)"
}
