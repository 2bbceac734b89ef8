package main

import (
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/api/apiserver"
	"github.com/sluice-dev/sluice/autoscaler/local"
	"github.com/sluice-dev/sluice/routing/store"
)

// newLogsEnv serves the API with the supervisor's logs handler, behind token, over logs written
// beforehand: the handler reads files, so no process is needed here.
func newLogsEnv(t *testing.T, token string) (*env, string) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logsDir := t.TempDir()
	sup, err := local.New(local.Options{LogsDir: logsDir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sup.Close() })
	api := apiserver.New(st, apiserver.Options{Token: token, Logger: slog.New(slog.DiscardHandler)})
	api.Handle(local.LogsPattern, sup.LogsHandler())
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &env{t: t, store: st, vars: map[string]string{"SLUICE_SERVER": srv.URL, "SLUICE_TOKEN": token}}, logsDir
}

func TestLogs(t *testing.T) {
	e, logsDir := newLogsEnv(t, "s3cret")
	dir := filepath.Join(logsDir, "prod", "shop-00003")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"shop-00003-1.log": "one\ntwo\n", "shop-00003-2.log": "three\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := e.mustRun("", "logs", "shop-00003", "-n", "prod", "--tail", "1"), "[shop-00003-1] two\n[shop-00003-2] three\n"; got != want {
		t.Errorf("sluice logs --tail 1 = %q, want %q", got, want)
	}
	if got := e.mustRun("", "logs", "shop-00003", "-n", "prod"); !strings.Contains(got, "[shop-00003-1] one\n") {
		t.Errorf("sluice logs = %q, want every line", got)
	}
	code, _, errOut := e.sluice("", "logs", "shop-00003")
	if code != 1 || !strings.Contains(errOut, "error: no logs for revision default/shop-00003") {
		t.Errorf("logs of an unknown revision: exit %d, stderr %q", code, errOut)
	}
	e.vars["SLUICE_TOKEN"] = "wrong"
	if code, _, errOut := e.sluice("", "logs", "shop-00003", "-n", "prod"); code != 1 || !strings.Contains(errOut, "bearer token") {
		t.Errorf("logs with a wrong token: exit %d, stderr %q", code, errOut)
	}
}
