// Package apiserver is sluice's HTTP API over a store: apply, get, list and delete of Knative
// objects. The caller owns the listener and may add its own handlers (metrics, xDS debug) to the
// same mux, behind the same token.
package apiserver

import (
	"cmp"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sluice-dev/sluice/api"
	"github.com/sluice-dev/sluice/routing"
	v1 "github.com/sluice-dev/sluice/routing/v1"
	"github.com/sluice-dev/sluice/routing/v1/manifest"
	"github.com/sluice-dev/sluice/source"
)

// Options configure a Server.
type Options struct {
	// Token, when set, is required as "Authorization: Bearer <token>" on every path but /healthz.
	Token string
	// MaxBodyBytes bounds an apply body; 0 means api.MaxBodyBytes.
	MaxBodyBytes int64
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// RevisionScale, when set, gives a revision's live scale (the autoscaler's Status), filled
	// into what the API answers for it; ok is false for a revision that is not scaled.
	RevisionScale func(routing.Key) (desired, actual int32, scale v1.ScaleStatus, ok bool)
}

// Server is an http.Handler.
type Server struct {
	store   source.Writer
	opts    Options
	log     *slog.Logger
	mux     *http.ServeMux
	handler http.Handler
}

// New builds the API over st: the store standalone.
func New(st source.Writer, opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = api.MaxBodyBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{store: st, opts: opts, log: opts.Logger, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	s.mux.HandleFunc("POST "+api.Prefix+"/apply", s.apply)
	s.mux.HandleFunc("GET "+api.Prefix+"/{resource}", s.list)
	s.mux.HandleFunc("GET "+api.Prefix+"/namespaces/{namespace}/{resource}", s.list)
	s.mux.HandleFunc("GET "+api.Prefix+"/namespaces/{namespace}/{resource}/{name}", s.get)
	s.mux.HandleFunc("DELETE "+api.Prefix+"/namespaces/{namespace}/{resource}/{name}", s.delete)
	s.handler = s.authenticate(http.HandlerFunc(s.route))
	return s
}

// route serves r with the mux, answering a path or method the mux has no handler for in JSON, as
// every other error is, rather than with the mux's plain text.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		s.mux.ServeHTTP(w, r) // not h: the mux's ServeHTTP is what fills in the path's {values}
		return
	}
	// The mux's own answer says which it is (404 or 405) and, for 405, which methods the path has.
	probe := &statusProbe{header: http.Header{}}
	h.ServeHTTP(probe, r)
	switch probe.code {
	case http.StatusMethodNotAllowed:
		allow := probe.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s; it takes %s", r.Method, r.URL.Path, allow))
	case http.StatusNotFound:
		writeError(w, http.StatusNotFound, fmt.Sprintf("no API at %s: the API's paths are %s/apply and %s/[namespaces/NAMESPACE/]RESOURCE[/NAME]", r.URL.Path, api.Prefix, api.Prefix))
	default:
		h.ServeHTTP(w, r) // a redirect (a cleaned path, a trailing slash): the mux's answer is right
	}
}

// statusProbe records the status and headers a handler would answer with, and drops its body.
type statusProbe struct {
	header http.Header
	code   int
}

func (p *statusProbe) Header() http.Header { return p.header }
func (p *statusProbe) WriteHeader(code int) {
	if p.code == 0 {
		p.code = code
	}
}
func (p *statusProbe) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

// Handle adds a handler to the API's mux (Go 1.22 pattern syntax), behind the same token.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) authenticate(next http.Handler) http.Handler {
	if s.opts.Token == "" {
		return localOnly(next)
	}
	want := []byte("Bearer " + s.opts.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Health checks come from probes that hold no token and learn nothing from "ok".
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token: set --token or SLUICE_TOKEN to the token sluice serve was started with")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// localOnly guards an API without a token, which serve binds to loopback only. Loopback is not
// enough on its own: any web page the user opens can POST to 127.0.0.1 (a "simple" request needs
// no preflight), and DNS rebinding lets a page read from it under its own host name. So requests
// from browsers (they carry Origin) and requests naming a host other than a loopback one are
// refused; the CLI sends neither.
func localOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" {
			writeError(w, http.StatusForbidden, "requests from web pages (Origin "+origin+") are refused by an API without a token; use the sluice CLI, or start sluice serve with --token")
			return
		}
		if !loopbackHost(r.Host) {
			writeError(w, http.StatusForbidden, "host "+r.Host+" is not a loopback name: an API without a token answers only to localhost, 127.0.0.1 or [::1]")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// partFileName is the file name the client gave a part, path included: Part.FileName keeps only
// the base name, and errors must tell services/a.yaml from staging/a.yaml.
func partFileName(p *multipart.Part) string {
	if _, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition")); err == nil && params["filename"] != "" {
		return params["filename"]
	}
	return p.FileName()
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (s *Server) apply(w http.ResponseWriter, r *http.Request) {
	dryRun := r.URL.Query().Get("dryRun") == "true"
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	objs, sources, status, err := s.decodeBody(r)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	res, err := s.store.Apply(r.Context(), objs, dryRun)
	if err != nil {
		err = sources.Attribute(err)
		if _, ok := errors.AsType[*routing.ConflictError](err); ok {
			writeError(w, http.StatusConflict, err.Error())
			return
		}
		if _, ok := errors.AsType[*source.AdmissionError](err); ok {
			writeError(w, http.StatusUnprocessableEntity, err.Error())
			return
		}
		s.log.Error("apply failed", "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := api.ApplyResponse{DryRun: dryRun}
	for _, o := range res.Objects {
		out.Results = append(out.Results, result(o.Ref, string(o.Action)))
	}
	for _, k := range res.Revisions {
		out.Revisions = append(out.Revisions, result(routing.Ref{Kind: v1.KindRevision, Key: k}, string(source.Created)))
	}
	if !dryRun && (len(res.Change.Put) > 0 || len(res.Change.Delete) > 0) {
		s.log.Info("applied", "objects", len(res.Objects), "written", len(res.Change.Put), "deleted", len(res.Change.Delete), "revisionsCreated", len(res.Revisions))
	}
	writeJSON(w, http.StatusOK, out)
}

// decodeBody reads either one document stream (its name in ?source=) or a multipart form with
// one part per file, so that a directory applies as one all-or-nothing batch and every error
// still names its file.
func (s *Server) decodeBody(r *http.Request) ([]v1.Object, manifest.Sources, int, error) {
	sources := manifest.Sources{}
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		data, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, nil, bodyStatus(err), bodyError(err, s.opts.MaxBodyBytes)
		}
		source := cmp.Or(r.URL.Query().Get("source"), "request body")
		objs, err := v1.Decode(data, source)
		if err != nil {
			return nil, nil, http.StatusBadRequest, err
		}
		sources.Add(source, objs)
		return objs, sources, 0, nil
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	var objs []v1.Object
	for i := 1; ; i++ {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, bodyStatus(err), bodyError(err, s.opts.MaxBodyBytes)
		}
		source := cmp.Or(partFileName(p), fmt.Sprintf("part %d", i))
		data, err := io.ReadAll(p)
		if err != nil {
			return nil, nil, bodyStatus(err), bodyError(err, s.opts.MaxBodyBytes)
		}
		got, err := v1.Decode(data, source)
		if err != nil {
			return nil, nil, http.StatusBadRequest, err
		}
		sources.Add(source, got)
		objs = append(objs, got...)
	}
	return objs, sources, 0, nil
}

func bodyStatus(err error) int {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

func bodyError(err error, limit int64) error {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return fmt.Errorf("request body is larger than %d MiB; split the apply into smaller files", limit>>20)
	}
	return fmt.Errorf("read request body: %w", err)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	kind, ok := kindOf(w, r)
	if !ok {
		return
	}
	// The namespaced path wins; ?namespace= serves the cluster-wide path; neither lists all.
	ns := cmp.Or(r.PathValue("namespace"), r.URL.Query().Get("namespace"))
	var objs []v1.Object
	st := s.store.State()
	collect := func(k routing.Key, o v1.Object) {
		if ns == "" || k.Namespace == ns {
			objs = append(objs, o)
		}
	}
	switch kind {
	case v1.KindService:
		for k, o := range st.Services {
			collect(k, o)
		}
	case v1.KindConfiguration:
		for k, o := range st.Configurations {
			collect(k, o)
		}
	case v1.KindRoute:
		for k, o := range st.Routes {
			collect(k, o)
		}
	case v1.KindRevision:
		for k, o := range st.Revisions {
			collect(k, o)
		}
	}
	slices.SortFunc(objs, func(a, b v1.Object) int {
		return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
	})
	out := api.List{APIVersion: "v1", Kind: "List", Items: make([]json.RawMessage, 0, len(objs))}
	for _, o := range objs {
		data, err := json.Marshal(s.live(typed(o)))
		if err != nil {
			writeError(w, http.StatusInternalServerError, fmt.Sprintf("encode %s: %v", routing.RefOf(o).String(), err))
			return
		}
		out.Items = append(out.Items, data)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	kind, ok := kindOf(w, r)
	if !ok {
		return
	}
	ref := routing.Ref{Kind: kind, Key: routing.Key{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}}
	o := s.store.State().Get(ref)
	if o == nil {
		writeError(w, http.StatusNotFound, ref.String()+" not found")
		return
	}
	writeJSON(w, http.StatusOK, s.live(typed(o)))
}

// live fills in a revision's scale from the autoscaler. o is typed's copy, so this writes to
// nothing stored.
func (s *Server) live(o v1.Object) v1.Object {
	rev, ok := o.(*v1.Revision)
	if !ok || s.opts.RevisionScale == nil {
		return o
	}
	desired, actual, scale, ok := s.opts.RevisionScale(routing.KeyOf(rev))
	if !ok {
		return o
	}
	rev.Status.DesiredReplicas, rev.Status.ActualReplicas, rev.Status.Scale = &desired, &actual, &scale
	return rev
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	kind, ok := kindOf(w, r)
	if !ok {
		return
	}
	ref := routing.Ref{Kind: kind, Key: routing.Key{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}}
	change, err := s.store.Delete(r.Context(), ref)
	switch {
	case errors.Is(err, source.ErrNotFound):
		writeError(w, http.StatusNotFound, ref.String()+" not found")
		return
	case err != nil:
		if _, ok := errors.AsType[*source.AdmissionError](err); ok {
			// routing.Delete refuses, e.g., a Route owned by a Service.
			writeError(w, http.StatusConflict, err.Error())
			return
		}
		s.log.Error("delete failed", "ref", ref.String(), "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.log.Info("deleted", "ref", ref.String(), "objects", len(change.Delete))
	out := api.DeleteResponse{Deleted: make([]api.ObjectResult, 0, len(change.Delete))}
	for _, d := range change.Delete {
		out.Deleted = append(out.Deleted, result(d, "deleted"))
	}
	writeJSON(w, http.StatusOK, out)
}

func kindOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	res := r.PathValue("resource")
	kind, ok := api.Resources[res]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown resource %q: want services, configurations, routes or revisions", res))
	}
	return kind, ok
}

func result(ref routing.Ref, action string) api.ObjectResult {
	return api.ObjectResult{Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name, Action: action}
}

// typed returns o with apiVersion and kind set: objects derived in admission may lack them, and
// a client printing -o yaml should get what it could apply back.
func typed(o v1.Object) v1.Object {
	kind := routing.RefOf(o).Kind
	var c v1.Object
	switch t := o.(type) {
	case *v1.Service:
		cp := *t
		c = &cp
	case *v1.Configuration:
		cp := *t
		c = &cp
	case *v1.Route:
		cp := *t
		c = &cp
	case *v1.Revision:
		cp := *t
		c = &cp
	default:
		return o
	}
	c.GetObjectKind().SetGroupVersionKind(schema.FromAPIVersionAndKind(v1.APIVersion, kind))
	c.SetResourceVersion(v1.ContentVersion(o))
	return c
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// A write error means the client went away; there is no one left to tell.
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.Error{Error: msg})
}
