// Package api is the wire format of sluice's HTTP API, shared by its server and its client.
package api

import (
	"encoding/json"
	"fmt"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Prefix is the path every API route starts with.
const Prefix = "/api/v1"

// MaxBodyBytes bounds an apply request: generous for YAML, small enough that a stray upload
// cannot exhaust memory.
const MaxBodyBytes = 8 << 20

// Resources maps the plural resource names used in paths to kinds.
var Resources = map[string]string{
	"services":       v1.KindService,
	"configurations": v1.KindConfiguration,
	"routes":         v1.KindRoute,
	"revisions":      v1.KindRevision,
}

// Resource is the plural path name of kind ("Service" → "services").
func Resource(kind string) string {
	for r, k := range Resources {
		if k == kind {
			return r
		}
	}
	return ""
}

// ObjectResult is what an apply or delete did to one object.
type ObjectResult struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Action is created, configured, unchanged or deleted.
	Action string `json:"action"`
}

// ApplyResponse is the body of a successful POST /api/v1/apply.
type ApplyResponse struct {
	DryRun bool `json:"dryRun,omitempty"`
	// Results has one entry per object in the request, in request order.
	Results []ObjectResult `json:"results"`
	// Revisions are the revisions the apply created (or would create in a dry run).
	Revisions []ObjectResult `json:"revisions,omitempty"`
}

// DeleteResponse is the body of a successful DELETE.
type DeleteResponse struct {
	Deleted []ObjectResult `json:"deleted"`
}

// List is the body of a list GET; items are the objects with their status, sorted by namespace
// and name. Its shape is Kubernetes' List so `-o yaml` reads like kubectl's.
type List struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

// Error is the body of every non-2xx response.
type Error struct {
	Error string `json:"error"`
}

// StatusError is an error response as the client sees it.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("server answered %d", e.Code)
	}
	return e.Message
}
