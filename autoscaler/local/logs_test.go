//go:build unix

package local

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/routing"
)

func logsServer(t *testing.T, s *Supervisor) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(LogsPattern, s.LogsHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func writeLog(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func getLogs(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestLogsTailAndPrefix(t *testing.T) {
	s := newSupervisor(t, Options{})
	srv := logsServer(t, s)
	one := filepath.Join(s.opts.LogsDir, "default", "one-00001")
	writeLog(t, one, "one-00001-1.log", "a\nb\nc\nunfinished")
	writeLog(t, one, "one-00001-1.log.1", "older\n")
	two := filepath.Join(s.opts.LogsDir, "default", "two-00001")
	writeLog(t, two, "two-00001-10.log", "ten\n")
	writeLog(t, two, "two-00001-2.log", "x\ny\n")

	for _, tc := range []struct {
		path, want string
	}{
		{"/api/v1/namespaces/default/revisions/one-00001/logs", "older\na\nb\nc\nunfinished\n"},
		{"/api/v1/namespaces/default/revisions/one-00001/logs?tail=2", "c\nunfinished\n"},
		{"/api/v1/namespaces/default/revisions/one-00001/logs?tail=0", ""},
		{"/api/v1/namespaces/default/revisions/two-00001/logs?tail=1", "[two-00001-2] y\n[two-00001-10] ten\n"},
	} {
		code, got := getLogs(t, srv.URL+tc.path)
		if code != http.StatusOK || got != tc.want {
			t.Errorf("GET %s = %d %q, want 200 %q", tc.path, code, got, tc.want)
		}
	}
}

func TestLogsErrors(t *testing.T) {
	s := newSupervisor(t, Options{})
	srv := logsServer(t, s)
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/api/v1/namespaces/default/revisions/nope-00001/logs", http.StatusNotFound, "no logs for revision default/nope-00001"},
		{"/api/v1/namespaces/default/revisions/nope-00001/logs?follow=1", http.StatusNotFound, "no logs"},
		{"/api/v1/namespaces/default/revisions/x/logs?tail=many", http.StatusBadRequest, "tail=many"},
		{"/api/v1/namespaces/default/revisions/x/logs?follow=maybe", http.StatusBadRequest, "follow=maybe"},
		{"/api/v1/namespaces/Default/revisions/x/logs", http.StatusBadRequest, "namespace"},
	} {
		code, body := getLogs(t, srv.URL+tc.path)
		var e struct{ Error string }
		if err := json.Unmarshal([]byte(body), &e); err != nil || code != tc.code || !strings.Contains(e.Error, tc.want) {
			t.Errorf("GET %s = %d %s, want %d and a JSON error containing %q", tc.path, code, body, tc.code, tc.want)
		}
	}
}

func TestLogsFollowAcrossInstances(t *testing.T) {
	s := newSupervisor(t, Options{FollowPollInterval: 10 * time.Millisecond})
	srv := logsServer(t, s)
	key := routing.Key{Namespace: "default", Name: "app-00001"}
	s.Scale(key, appSpec(), 1)
	st := waitFor(t, s, key, "1 ready", func(st RevisionStatus) bool { return st.Ready == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/namespaces/default/revisions/app-00001/logs?follow=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	expect := func(want string) {
		t.Helper()
		deadline := time.NewTimer(waitTimeout)
		defer deadline.Stop()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before %q", want)
				}
				if strings.HasPrefix(l, want) {
					return
				}
			case <-deadline.C:
				t.Fatalf("no line %q in the followed logs", want)
			}
		}
	}
	expect("[app-00001-1] listening")
	httpGet(t, "http://"+st.Instances[0].Addr+"/followed")
	expect("[app-00001-1] request /followed")
	s.Scale(key, appSpec(), 2)
	expect("[app-00001-2] listening")
	cancel()
	// srv.Close in cleanup waits for the handler: it must notice the client went away.
}

func TestLogFileRotatesAndFollowerKeepsUp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r-1.log")
	lf, err := openLogFile(path, 16, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	lf.Write([]byte("line-1\nline-2\n")) // 14 bytes
	fl := openFollower(path, false)
	defer fl.close()
	var sb strings.Builder
	out := &lineWriter{w: bufio.NewWriter(&sb), rc: http.NewResponseController(httptest.NewRecorder())}
	if err := fl.start(out, -1); err != nil {
		t.Fatal(err)
	}
	lf.Write([]byte("line-3\n")) // over 16: rotates first
	lf.Write([]byte("line-4\n"))
	if _, err := fl.poll(out); err != nil {
		t.Fatal(err)
	}
	out.flush()
	if got, want := sb.String(), "line-1\nline-2\nline-3\nline-4\n"; got != want {
		t.Errorf("followed %q, want %q", got, want)
	}
	if old := readFile(t, path+".1"); old != "line-1\nline-2\n" {
		t.Errorf("rotated file = %q", old)
	}
	if cur := readFile(t, path); cur != "line-3\nline-4\n" {
		t.Errorf("current file = %q", cur)
	}
}

func TestLastLine(t *testing.T) {
	lf, err := openLogFile(filepath.Join(t.TempDir(), "x.log"), 1<<20, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	l := &lastLine{next: lf}
	l.Write([]byte("first\npanic: "))
	l.Write([]byte("oops\n\n  \n"))
	if got := l.Last(); got != "panic: oops" {
		t.Errorf("Last() = %q, want %q", got, "panic: oops")
	}
	l.Write([]byte("no newline yet"))
	if got := l.Last(); got != "no newline yet" {
		t.Errorf("Last() = %q, want the unfinished line", got)
	}
}
