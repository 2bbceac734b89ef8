package apiserver_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/api"
	"github.com/sluice-dev/sluice/api/apiserver"
	"github.com/sluice-dev/sluice/routing"
	"github.com/sluice-dev/sluice/routing/store"
	v1 "github.com/sluice-dev/sluice/routing/v1"
)

const hello = `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    spec:
      containers:
      - image: example.com/hello:v1
`

const other = `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: other
  namespace: prod
spec:
  template:
    spec:
      containers:
      - image: example.com/other:v1
`

func newServer(t *testing.T, opts apiserver.Options) (*httptest.Server, *store.Store) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts.Logger = slog.New(slog.DiscardHandler)
	srv := httptest.NewServer(apiserver.New(st, opts))
	t.Cleanup(srv.Close)
	return srv, st
}

// call does one request and decodes a JSON answer into out (if not nil).
func call(t *testing.T, method, url, contentType string, body io.Reader, header http.Header, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, url, data, err)
		}
	}
	return resp.StatusCode
}

func TestApplyGetListDelete(t *testing.T) {
	srv, _ := newServer(t, apiserver.Options{})
	base := srv.URL + api.Prefix

	var res api.ApplyResponse
	if code := call(t, "POST", base+"/apply?source=hello.yaml", "application/yaml", strings.NewReader(hello+"---\n"+other), nil, &res); code != 200 {
		t.Fatalf("apply: %d", code)
	}
	if len(res.Results) != 2 || res.Results[0].Action != "created" || res.Results[0].Namespace != "default" || res.Results[1].Name != "other" {
		t.Errorf("apply results = %+v", res.Results)
	}
	if len(res.Revisions) != 2 || res.Revisions[0].Name != "hello-00001" {
		t.Errorf("revisions created = %+v, want hello-00001 and other-00001", res.Revisions)
	}

	var list api.List
	if code := call(t, "GET", base+"/services", "", nil, nil, &list); code != 200 || len(list.Items) != 2 {
		t.Fatalf("list all services: %d, %d items, want 2", code, len(list.Items))
	}
	if code := call(t, "GET", base+"/services?namespace=prod", "", nil, nil, &list); code != 200 || len(list.Items) != 1 {
		t.Fatalf("list services ?namespace=prod: %d, %d items, want 1", code, len(list.Items))
	}
	if code := call(t, "GET", base+"/namespaces/default/revisions", "", nil, nil, &list); code != 200 || len(list.Items) != 1 {
		t.Fatalf("list revisions in default: %d, %d items, want 1", code, len(list.Items))
	}

	var obj map[string]any
	if code := call(t, "GET", base+"/namespaces/default/routes/hello", "", nil, nil, &obj); code != 200 {
		t.Fatalf("get route: %d", code)
	}
	if obj["kind"] != "Route" || obj["apiVersion"] != "serving.knative.dev/v1" {
		t.Errorf("route answered without its TypeMeta: kind=%v apiVersion=%v", obj["kind"], obj["apiVersion"])
	}

	var e api.Error
	if code := call(t, "GET", base+"/namespaces/default/services/nope", "", nil, nil, &e); code != 404 || e.Error != "Service default/nope not found" {
		t.Errorf("get missing: %d %q", code, e.Error)
	}
	if code := call(t, "GET", base+"/widgets", "", nil, nil, &e); code != 404 || !strings.Contains(e.Error, `unknown resource "widgets"`) {
		t.Errorf("unknown resource: %d %q", code, e.Error)
	}
	// The mux's own 404 and 405 come as JSON errors too, the 405 with the methods the path takes.
	e = api.Error{}
	if code := call(t, "PUT", base+"/namespaces/default/services/hello", "", nil, nil, &e); code != 405 ||
		!strings.Contains(e.Error, "method PUT is not allowed on /api/v1/namespaces/default/services/hello") || !strings.Contains(e.Error, "DELETE") {
		t.Errorf("PUT a service: %d %q, want 405 naming the method and the allowed ones", code, e.Error)
	}
	e = api.Error{}
	if code := call(t, "GET", srv.URL+"/apis/serving.knative.dev/v1/services", "", nil, nil, &e); code != 404 || !strings.Contains(e.Error, "no API at /apis/serving.knative.dev/v1/services") {
		t.Errorf("a path outside the API: %d %q, want 404 in JSON", code, e.Error)
	}
	if code := call(t, "DELETE", base+"/namespaces/default/routes/hello", "", nil, nil, &e); code != 409 || !strings.Contains(e.Error, "owned by Service") {
		t.Errorf("delete an owned route: %d %q, want 409 naming the owner", code, e.Error)
	}

	var del api.DeleteResponse
	if code := call(t, "DELETE", base+"/namespaces/default/services/hello", "", nil, nil, &del); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if len(del.Deleted) != 4 {
		t.Errorf("deleted = %+v, want the service, its configuration, route and revision", del.Deleted)
	}
	if code := call(t, "DELETE", base+"/namespaces/default/services/hello", "", nil, nil, &e); code != 404 {
		t.Errorf("second delete: %d, want 404", code)
	}
}

func TestApplyErrors(t *testing.T) {
	srv, st := newServer(t, apiserver.Options{MaxBodyBytes: 1 << 10})
	base := srv.URL + api.Prefix
	var e api.Error

	bad := strings.Replace(hello, "containers:", "containerz:", 1)
	if code := call(t, "POST", base+"/apply?source=hello.yaml", "application/yaml", strings.NewReader(bad), nil, &e); code != 400 {
		t.Errorf("unknown field: %d, want 400", code)
	}
	if !strings.Contains(e.Error, "hello.yaml") || !strings.Contains(e.Error, "containerz") {
		t.Errorf("error %q should name the file and the field", e.Error)
	}

	unknownRev := hello + "  traffic:\n  - revisionName: hello-00009\n    percent: 100\n"
	if code := call(t, "POST", base+"/apply?source=hello.yaml", "application/yaml", strings.NewReader(unknownRev), nil, &e); code != 422 {
		t.Errorf("unknown revision: %d (%s), want 422", code, e.Error)
	}
	if !strings.HasPrefix(e.Error, "hello.yaml: Service default/hello: ") || !strings.Contains(e.Error, "hello-00009") {
		t.Errorf("admission error %q should name the file, the object and the revision", e.Error)
	}

	big := strings.Repeat("# padding\n", 200) + hello
	if code := call(t, "POST", base+"/apply", "application/yaml", strings.NewReader(big), nil, &e); code != 413 {
		t.Errorf("body over the limit: %d (%s), want 413", code, e.Error)
	}

	// Two files in one multipart request are one batch: the second's error keeps the first out.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for name, content := range map[string]string{"a.yaml": hello, "b.yaml": bad} {
		w, _ := mw.CreateFormFile("file", name)
		io.WriteString(w, content)
	}
	mw.Close()
	if code := call(t, "POST", base+"/apply", mw.FormDataContentType(), &body, nil, &e); code != 400 || !strings.Contains(e.Error, "b.yaml") {
		t.Errorf("multipart with a bad file: %d %q, want 400 naming b.yaml", code, e.Error)
	}
	if n := len(st.State().Services); n != 0 {
		t.Errorf("%d services stored after failed applies, want 0", n)
	}
}

func TestDryRun(t *testing.T) {
	srv, st := newServer(t, apiserver.Options{})
	var res api.ApplyResponse
	if code := call(t, "POST", srv.URL+api.Prefix+"/apply?dryRun=true", "application/yaml", strings.NewReader(hello), nil, &res); code != 200 {
		t.Fatalf("dry run: %d", code)
	}
	if !res.DryRun || len(res.Results) != 1 || res.Results[0].Action != "created" {
		t.Errorf("dry run answer = %+v", res)
	}
	if n := len(st.State().Services); n != 0 {
		t.Errorf("dry run stored %d services", n)
	}
}

func TestToken(t *testing.T) {
	srv, _ := newServer(t, apiserver.Options{Token: "s3cret"})
	var e api.Error
	if code := call(t, "GET", srv.URL+api.Prefix+"/services", "", nil, nil, &e); code != 401 || !strings.Contains(e.Error, "SLUICE_TOKEN") {
		t.Errorf("no token: %d %q, want 401 saying how to set it", code, e.Error)
	}
	wrong := http.Header{"Authorization": {"Bearer nope"}}
	if code := call(t, "GET", srv.URL+api.Prefix+"/services", "", nil, wrong, nil); code != 401 {
		t.Errorf("wrong token: %d, want 401", code)
	}
	right := http.Header{"Authorization": {"Bearer s3cret"}}
	if code := call(t, "GET", srv.URL+api.Prefix+"/services", "", nil, right, nil); code != 200 {
		t.Errorf("right token: %d, want 200", code)
	}
	if code := call(t, "GET", srv.URL+"/healthz", "", nil, nil, nil); code != 200 {
		t.Errorf("healthz without a token: %d, want 200", code)
	}
}

func TestHandleAddsBehindToken(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := apiserver.New(st, apiserver.Options{Token: "t", Logger: slog.New(slog.DiscardHandler)})
	s.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "m 1\n") }))
	srv := httptest.NewServer(s)
	defer srv.Close()
	if code := call(t, "GET", srv.URL+"/metrics", "", nil, nil, nil); code != 401 {
		t.Errorf("added handler without token: %d, want 401", code)
	}
	if code := call(t, "GET", srv.URL+"/metrics", "", nil, http.Header{"Authorization": {"Bearer t"}}, nil); code != 200 {
		t.Errorf("added handler with token: %d, want 200", code)
	}
}

// Without a token the API is loopback-only, and loopback alone does not stop a web page: a page
// can POST to 127.0.0.1, and DNS rebinding lets it read under its own host name.
func TestTokenlessAPIRefusesBrowsersAndForeignHosts(t *testing.T) {
	srv, st := newServer(t, apiserver.Options{})
	svc := `apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: hello}
spec:
  template:
    spec:
      containers: [{image: hello}]
`
	tests := []struct {
		name   string
		header http.Header
		host   string
		want   int
	}{
		{"the CLI", nil, "", http.StatusOK},
		{"localhost by name", nil, "localhost:9090", http.StatusOK},
		{"a web page's POST", http.Header{"Origin": {"https://attacker.example"}}, "", http.StatusForbidden},
		{"a rebound host name", nil, "rebind.attacker.example:9090", http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/apply?dryRun=true", strings.NewReader(svc))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "text/plain") // what a page can send without a preflight
			for k, v := range tc.header {
				req.Header[k] = v
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	if len(st.State().Services) != 0 {
		t.Errorf("a dry run stored something")
	}
}

// A scaled revision is answered with its live scale; the stored object is left as it was.
func TestRevisionScaleIsLive(t *testing.T) {
	srv, st := newServer(t, apiserver.Options{
		RevisionScale: func(k routing.Key) (int32, int32, v1.ScaleStatus, bool) {
			if k.Name != "hello-00001" {
				return 0, 0, v1.ScaleStatus{}, false
			}
			return 3, 2, v1.ScaleStatus{ReadyReplicas: 1, Mode: "proxy", Reason: "stable: 20 concurrent"}, true
		},
	})
	base := srv.URL + api.Prefix
	if code := call(t, "POST", base+"/apply", "application/yaml", strings.NewReader(hello+"---\n"+other), nil, nil); code != 200 {
		t.Fatalf("apply: %d", code)
	}
	var rev v1.Revision
	if code := call(t, "GET", base+"/namespaces/default/revisions/hello-00001", "", nil, nil, &rev); code != 200 {
		t.Fatalf("get: %d", code)
	}
	if s := rev.Status; s.DesiredReplicas == nil || *s.DesiredReplicas != 3 || *s.ActualReplicas != 2 || s.Scale == nil ||
		s.Scale.ReadyReplicas != 1 || s.Scale.Mode != "proxy" || s.Scale.Reason != "stable: 20 concurrent" {
		t.Errorf("live scale = %+v", s)
	}
	var static v1.Revision
	if code := call(t, "GET", base+"/namespaces/prod/revisions/other-00001", "", nil, nil, &static); code != 200 || static.Status.Scale != nil {
		t.Errorf("a revision that is not scaled got a scale: %d %+v", code, static.Status.Scale)
	}
	if stored := st.State().Revisions[routing.Key{Namespace: "default", Name: "hello-00001"}]; stored.Status.Scale != nil || stored.Status.DesiredReplicas != nil {
		t.Errorf("the live scale was written into the stored revision: %+v", stored.Status)
	}
}

// Objects are answered with a resourceVersion; applying one back with it is a precondition
// that fails with 409 once the object has changed, and changes nothing.
func TestResourceVersionPrecondition(t *testing.T) {
	srv, st := newServer(t, apiserver.Options{})
	base := srv.URL + api.Prefix
	if code := call(t, "POST", base+"/apply", "application/yaml", strings.NewReader(hello), nil, nil); code != 200 {
		t.Fatalf("apply: %d", code)
	}
	var read v1.Service
	if code := call(t, "GET", base+"/namespaces/default/services/hello", "", nil, nil, &read); code != 200 || read.ResourceVersion == "" {
		t.Fatalf("get: %d, resourceVersion %q", code, read.ResourceVersion)
	}
	var list struct{ Items []v1.Service }
	if code := call(t, "GET", base+"/namespaces/default/services", "", nil, nil, &list); code != 200 || len(list.Items) != 1 || list.Items[0].ResourceVersion != read.ResourceVersion {
		t.Fatalf("list: %d, %+v; want the resourceVersion get answered", code, list.Items)
	}

	withVersion := func(rv string) io.Reader {
		return strings.NewReader(strings.Replace(hello, "  name: hello\n", "  name: hello\n  resourceVersion: \""+rv+"\"\n  labels: {step: \""+rv+"\"}\n", 1))
	}
	if code := call(t, "POST", base+"/apply", "application/yaml", withVersion(read.ResourceVersion), nil, nil); code != 200 {
		t.Fatalf("apply with the version read: %d", code)
	}
	changed := st.State().Services[routing.Key{Namespace: "default", Name: "hello"}]
	var e api.Error
	if code := call(t, "POST", base+"/apply", "application/yaml", withVersion(read.ResourceVersion), nil, &e); code != 409 ||
		!strings.Contains(e.Error, "Service default/hello: changed since it was read") {
		t.Errorf("apply with a stale version: %d %q, want 409 naming the object", code, e.Error)
	}
	if st.State().Services[routing.Key{Namespace: "default", Name: "hello"}] != changed {
		t.Error("a refused apply changed the Service")
	}
}
