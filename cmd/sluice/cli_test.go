package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/api/apiserver"
	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/routing/store"
)

const helloV1 = `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    spec:
      containers:
      - image: example.com/hello:v1
`

const helloV2 = `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    spec:
      containers:
      - image: example.com/hello:v2
`

type env struct {
	t     *testing.T
	store *store.Store
	vars  map[string]string
}

// newEnv serves the real API over a real store; the CLI reaches it through SLUICE_SERVER.
func newEnv(t *testing.T, token string) *env {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := httptest.NewServer(apiserver.New(st, apiserver.Options{Token: token, Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	return &env{t: t, store: st, vars: map[string]string{"SLUICE_SERVER": srv.URL, "SLUICE_TOKEN": token}}
}

// sluice runs the CLI and returns exit code, stdout and stderr.
func (e *env) sluice(stdin string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut, func(k string) string { return e.vars[k] })
	return code, out.String(), errOut.String()
}

func (e *env) mustRun(stdin string, args ...string) string {
	e.t.Helper()
	code, out, errOut := e.sluice(stdin, args...)
	if code != 0 {
		e.t.Fatalf("sluice %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestApplyGetUpdateDelete(t *testing.T) {
	e := newEnv(t, "")
	dir := t.TempDir()
	f := writeFile(t, dir, "hello.yaml", helloV1)

	if out := e.mustRun("", "apply", "-f", f); out != "service.serving.knative.dev/hello created\nrevision hello-00001 created\n" {
		t.Errorf("apply output:\n%s", out)
	}
	if out := e.mustRun("", "apply", "-f", f); out != "service.serving.knative.dev/hello unchanged\n" {
		t.Errorf("re-apply output:\n%s", out)
	}
	if out := e.mustRun(helloV2, "apply", "-f", "-", "--dry-run"); out != "service.serving.knative.dev/hello configured (dry run)\nrevision hello-00002 created (dry run)\n" {
		t.Errorf("dry-run output:\n%s", out)
	}
	if out := e.mustRun(helloV2, "apply", "-f", "-"); !strings.Contains(out, "revision hello-00002 created") {
		t.Errorf("apply v2 output:\n%s", out)
	}

	out := e.mustRun("", "get", "ksvc")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "LATESTCREATED") || !strings.HasPrefix(lines[1], "hello ") {
		t.Errorf("get ksvc:\n%s", out)
	}
	out = e.mustRun("", "get", "rev", "-A")
	if !strings.Contains(out, "NAMESPACE") || !strings.Contains(out, "hello-00002") || !strings.Contains(out, "CONFIG NAME") {
		t.Errorf("get rev -A:\n%s", out)
	}
	if out := e.mustRun("", "get", "service", "hello", "-o", "yaml"); !strings.Contains(out, "kind: Service") || !strings.Contains(out, "image: example.com/hello:v2") {
		t.Errorf("get service hello -o yaml:\n%s", out)
	}
	if out := e.mustRun("", "get", "routes", "-o", "json"); !strings.Contains(out, `"kind": "List"`) || !strings.Contains(out, `"kind": "Route"`) {
		t.Errorf("get routes -o json:\n%s", out)
	}

	out = e.mustRun("", "service", "update", "hello", "--traffic", "hello-00001=80", "--traffic", "@latest=20", "--tag", "hello-00001=v1")
	if !strings.Contains(out, "service.serving.knative.dev/hello configured") || !strings.Contains(out, "80%") || !strings.Contains(out, "v1") {
		t.Errorf("service update output:\n%s", out)
	}
	svc := e.store.State().Services[routing.Key{Namespace: "default", Name: "hello"}]
	got := map[string]int64{}
	for _, tt := range svc.Spec.Traffic {
		name := tt.RevisionName
		if tt.LatestRevision != nil && *tt.LatestRevision {
			name = "@latest"
		}
		got[name+"#"+tt.Tag] = *tt.Percent
	}
	if len(got) != 2 || got["hello-00001#v1"] != 80 || got["@latest#"] != 20 {
		t.Errorf("stored traffic = %v, want hello-00001#v1 80%% and @latest 20%%", got)
	}
	if n := len(e.store.State().Revisions); n != 2 {
		t.Errorf("a traffic update created a revision: %d revisions, want 2", n)
	}

	code, _, errOut := e.sluice("", "service", "update", "hello", "--traffic", "v1=90")
	if code != 1 || errOut != "error: service default/hello: --traffic: percents sum to 90, want 100\n" {
		t.Errorf("bad percent sum: exit %d, stderr %q", code, errOut)
	}

	if out := e.mustRun("", "delete", "service", "hello"); !strings.Contains(out, "service.serving.knative.dev/hello deleted") || !strings.Contains(out, "revision.serving.knative.dev/hello-00002 deleted") {
		t.Errorf("delete output:\n%s", out)
	}
	code, _, errOut = e.sluice("", "delete", "service", "hello")
	if code != 1 || errOut != "error: Service default/hello not found\n" {
		t.Errorf("delete missing: exit %d, stderr %q", code, errOut)
	}
}

func TestApplyBadInputChangesNothing(t *testing.T) {
	e := newEnv(t, "")
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", helloV1)
	writeFile(t, dir, "b.yml", strings.Replace(helloV2, "name: hello", "name: bye", 1)+"  traffic:\n  - latestRevision: true\n    percent: 120\n")
	writeFile(t, dir, "notes.txt", "not a manifest")

	code, out, errOut := e.sluice("", "apply", "-f", dir)
	if code != 1 || out != "" {
		t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
	}
	if !strings.HasPrefix(errOut, "error: ") || strings.Count(errOut, "\n") != 1 ||
		!strings.Contains(errOut, "b.yml") || !strings.Contains(errOut, "spec.traffic[0].percent") {
		t.Errorf("stderr %q: want one line naming b.yml and spec.traffic[0].percent", errOut)
	}
	if n := len(e.store.State().Services); n != 0 {
		t.Errorf("%d services stored; a bad file must keep the whole directory out", n)
	}

	code, _, errOut = e.sluice("", "apply", "-f", filepath.Join(dir, "missing.yaml"))
	if code != 1 || !strings.Contains(errOut, "missing.yaml") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
}

func TestUnreachableServer(t *testing.T) {
	e := newEnv(t, "")
	srv := httptest.NewServer(nil)
	url := srv.URL
	srv.Close() // a port that was just free and now refuses
	code, _, errOut := e.sluice("", "get", "ksvc", "--server", url)
	want := "error: cannot reach sluice at " + url + ": "
	if code != 1 || !strings.HasPrefix(errOut, want) || !strings.HasSuffix(errOut, `(is "sluice serve" running? set --server or SLUICE_SERVER)`+"\n") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestToken(t *testing.T) {
	e := newEnv(t, "s3cret")
	e.mustRun("", "get", "ksvc") // SLUICE_TOKEN from the environment
	code, _, errOut := e.sluice("", "get", "ksvc", "--token", "wrong")
	if code != 1 || !strings.Contains(errOut, "bearer token") {
		t.Errorf("wrong token: exit %d, stderr %q", code, errOut)
	}
}

func TestGetUsage(t *testing.T) {
	e := newEnv(t, "")
	for _, args := range [][]string{
		{"get", "widgets"},
		{"get", "ksvc", "-o", "wide"},
		{"get", "ksvc", "hello", "-A"},
		{"service", "update", "hello"},
	} {
		code, _, errOut := e.sluice("", args...)
		if code != 1 || !strings.HasPrefix(errOut, "error: ") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("sluice %s: exit %d, stderr %q; want exit 1 and one error line", strings.Join(args, " "), code, errOut)
		}
	}
}

func TestServeStartsAndStops(t *testing.T) {
	// A port that was free a moment ago; serve binds it itself.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	dataDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--data-dir", dataDir, "--api-addr", addr, "--log-level", "warn",
			"--xds-addr", "127.0.0.1:0", "--activator-addr", "127.0.0.1:0"},
			strings.NewReader(""), &bytes.Buffer{}, &errOut, func(string) string { return "" })
	}()
	e := &env{t: t, vars: map[string]string{"SLUICE_SERVER": "http://" + addr}}
	for {
		if code, _, _ := e.sluice("", "get", "ksvc"); code == 0 {
			break
		}
		select {
		case c := <-done:
			t.Fatalf("serve exited early with %d: %s", c, errOut.String())
		default:
		}
	}
	e.mustRun(helloV1, "apply", "-f", "-")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exit code after a stop signal = %d, want 0; stderr: %s", code, errOut.String())
	}

	// The state survives the restart.
	st, err := store.Open(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.State().Services[routing.Key{Namespace: "default", Name: "hello"}] == nil {
		t.Errorf("service hello is gone after serve stopped")
	}
}

func TestServeRefusesExposedAPIWithoutToken(t *testing.T) {
	var errOut bytes.Buffer
	code := run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--api-addr", "0.0.0.0:0"},
		strings.NewReader(""), &bytes.Buffer{}, &errOut, func(string) string { return "" })
	if code != 1 || !strings.Contains(errOut.String(), "without a token") {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
}
