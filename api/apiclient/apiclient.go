// Package apiclient talks to a running "sluice serve" over its HTTP API.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/sluice-dev/sluice/api"
	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Client is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// New returns a client for the sluice at server ("http://127.0.0.1:9090").
func New(server, token string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(server)
	if err != nil {
		return nil, fmt.Errorf("server URL %q: %w", server, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want http://host:port or https://host:port", server)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Client{base: u, token: token, http: hc}, nil
}

// File is one input file of an apply; Name appears in error messages.
type File struct {
	Name string
	Data []byte
}

// Apply sends files as one all-or-nothing batch.
func (c *Client) Apply(ctx context.Context, files []File, dryRun bool) (*api.ApplyResponse, error) {
	q := url.Values{}
	if dryRun {
		q.Set("dryRun", "true")
	}
	var body bytes.Buffer
	var contentType string
	if len(files) == 1 {
		// One file goes as a plain body, the same request a user would make with curl.
		q.Set("source", files[0].Name)
		body.Write(files[0].Data)
		contentType = "application/yaml"
	} else {
		mw := multipart.NewWriter(&body)
		for _, f := range files {
			w, err := mw.CreateFormFile("file", f.Name)
			if err != nil {
				return nil, fmt.Errorf("encode %s: %w", f.Name, err)
			}
			if _, err := w.Write(f.Data); err != nil {
				return nil, fmt.Errorf("encode %s: %w", f.Name, err)
			}
		}
		if err := mw.Close(); err != nil {
			return nil, fmt.Errorf("encode apply request: %w", err)
		}
		contentType = mw.FormDataContentType()
	}
	var out api.ApplyResponse
	if err := c.do(ctx, http.MethodPost, api.Prefix+"/apply", q, contentType, &body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// List returns the objects of resource ("services", ...) in namespace, or in all namespaces when
// namespace is "".
func (c *Client) List(ctx context.Context, resource, namespace string) ([]json.RawMessage, error) {
	path := api.Prefix + "/" + url.PathEscape(resource)
	if namespace != "" {
		path = api.Prefix + "/namespaces/" + url.PathEscape(namespace) + "/" + url.PathEscape(resource)
	}
	var out api.List
	if err := c.do(ctx, http.MethodGet, path, nil, "", nil, &out); err != nil {
		return nil, err
	}
	return out.Items, nil
}

// Get returns one object as JSON.
func (c *Client) Get(ctx context.Context, resource, namespace, name string) (json.RawMessage, error) {
	var out json.RawMessage
	if err := c.do(ctx, http.MethodGet, objectPath(resource, namespace, name), nil, "", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// GetService returns one Service.
func (c *Client) GetService(ctx context.Context, namespace, name string) (*v1.Service, error) {
	var svc v1.Service
	if err := c.do(ctx, http.MethodGet, objectPath("services", namespace, name), nil, "", nil, &svc); err != nil {
		return nil, err
	}
	return &svc, nil
}

// ListRevisions returns the revisions in namespace.
func (c *Client) ListRevisions(ctx context.Context, namespace string) ([]v1.Revision, error) {
	items, err := c.List(ctx, "revisions", namespace)
	if err != nil {
		return nil, err
	}
	revs := make([]v1.Revision, len(items))
	for i, it := range items {
		if err := json.Unmarshal(it, &revs[i]); err != nil {
			return nil, fmt.Errorf("decode revision from %s: %w", c.base, err)
		}
	}
	return revs, nil
}

// Delete deletes one object and what it owns.
func (c *Client) Delete(ctx context.Context, resource, namespace, name string) (*api.DeleteResponse, error) {
	var out api.DeleteResponse
	if err := c.do(ctx, http.MethodDelete, objectPath(resource, namespace, name), nil, "", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func objectPath(resource, namespace, name string) string {
	return api.Prefix + "/namespaces/" + url.PathEscape(namespace) + "/" + url.PathEscape(resource) + "/" + url.PathEscape(name)
}

// send makes one request with the client's token, turning "no answer at all" into an
// UnreachableError that names the server.
func (c *Client) send(ctx context.Context, method string, u *url.URL, headers http.Header, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u.String(), err)
	}
	for k, v := range headers {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Strip the url.Error wrapper: the server is named once, in our message.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &UnreachableError{Server: c.base.String(), Err: err}
	}
	return resp, nil
}

// statusError is a non-2xx answer as an error: the API's JSON message, or what came back when
// it is not our API (a proxy, another service on the port).
func statusError(method string, u *url.URL, resp *http.Response, data []byte) error {
	var e api.Error
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		return &api.StatusError{Code: resp.StatusCode, Message: fmt.Sprintf("%s %s: %s: %s", method, u.String(), resp.Status, strings.TrimSpace(string(data)))}
	}
	return &api.StatusError{Code: resp.StatusCode, Message: e.Error}
}

// UnreachableError means no HTTP answer came back at all.
type UnreachableError struct {
	Server string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach sluice at %s: %v (is \"sluice serve\" running? set --server or SLUICE_SERVER)", e.Server, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

func (c *Client) do(ctx context.Context, method, path string, q url.Values, contentType string, body io.Reader, out any) error {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	headers := http.Header{"Accept": {"application/json"}}
	if contentType != "" {
		headers.Set("Content-Type", contentType)
	}
	resp, err := c.send(ctx, method, &u, headers, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("read answer of %s %s: %w", method, u.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		return statusError(method, &u, resp, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer of %s %s (is %s a sluice API?): %w", method, u.Path, c.base, err)
	}
	return nil
}
