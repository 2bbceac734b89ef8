package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluice-dev/sluice/api/apiserver"
	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/routing/store"
	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// racingEnv is newEnv whose API lets another writer change Service hello right before each of
// the racing applies that follow the first skip: what "service update" read is stale by the
// time it applies.
func racingEnv(t *testing.T, skip, racing int64) (*env, *atomic.Int64) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	api := apiserver.New(st, apiserver.Options{Logger: slog.New(slog.DiscardHandler)})
	var applies atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/apply") {
			if n := applies.Add(1); n > skip && n <= skip+racing {
				other := strings.Replace(helloV1, "  name: hello\n", fmt.Sprintf("  name: hello\n  annotations: {other-writer: %q}\n", fmt.Sprint(n)), 1)
				objs, err := v1.Decode([]byte(other), "other.yaml")
				if err != nil {
					t.Error(err)
				} else if _, err := st.Apply(context.Background(), objs, false); err != nil {
					t.Errorf("the other writer's apply: %v", err)
				}
			}
		}
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return &env{t: t, store: st, vars: map[string]string{"SLUICE_SERVER": srv.URL}}, &applies
}

// A change landing between service update's read and its apply is not overwritten: the update
// is refused with a conflict, and service update reads again and redoes its change on top.
func TestServiceUpdateRedoesItsChangeAfterAConflict(t *testing.T) {
	e, applies := racingEnv(t, 2, 1)
	e.mustRun(helloV1, "apply", "-f", "-")
	e.mustRun(helloV2, "apply", "-f", "-")
	out := e.mustRun("", "service", "update", "hello", "--traffic", "hello-00001=80", "--traffic", "@latest=20")
	if !strings.Contains(out, "80%") {
		t.Errorf("service update output:\n%s", out)
	}
	if n := applies.Load(); n != 4 {
		t.Errorf("%d applies, want 4: two applies, then service update's refused one and its redo", n)
	}
	svc := e.store.State().Services[routing.Key{Namespace: "default", Name: "hello"}]
	if len(svc.Spec.Traffic) != 2 || svc.Annotations["other-writer"] == "" {
		t.Errorf("after the update: traffic %+v, annotations %v; want the split and the other writer's annotation both", svc.Spec.Traffic, svc.Annotations)
	}
}

// When other writers keep winning, service update gives up after maxUpdateAttempts and says why.
func TestServiceUpdateGivesUpOnRepeatedConflicts(t *testing.T) {
	e, applies := racingEnv(t, 1, 100)
	e.mustRun(helloV1, "apply", "-f", "-")
	code, _, errOut := e.sluice("", "service", "update", "hello", "--traffic", "hello-00001=100")
	if code != 1 || !strings.Contains(errOut, "Service default/hello: changed since it was read") {
		t.Errorf("exit %d, stderr %q; want 1 and the conflict", code, errOut)
	}
	if n := applies.Load(); n != 1+maxUpdateAttempts {
		t.Errorf("%d applies, want 1 + %d attempts", n, maxUpdateAttempts)
	}
}
