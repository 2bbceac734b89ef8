// Package source defines where sluice's desired state comes from and where it goes: the contracts
// between the control-plane loop and a source of Knative objects, and between the places users
// write from (the HTTP API, a watched directory) and the store they write to.
//
// Standalone, the bbolt store (routing/store) is both: the API and the directory watcher write to
// it, and the loop reads its snapshots and journal and writes statuses back. On Kubernetes the
// loop's Source is the informers' caches and statuses go through the status subresource; users
// write with kubectl, so nothing there needs a Writer. Envoy Gateway's providers and Contour's
// event handler with its status updater have the same split.
package source

import (
	"context"
	"errors"

	"github.com/sluice-dev/sluice/routing"
	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Source is the desired state the control-plane loop reads, and where it writes statuses.
type Source interface {
	// State is the current desired state: an immutable snapshot, read without locking.
	State() *routing.State
	// Changes is signalled (coalescing) when TakeChanged has something.
	Changes() <-chan struct{}
	// TakeChanged returns what changed since its last call.
	TakeChanged() Changed
	// UpdateStatus writes the statuses the loop computed onto the objects currently stored
	// under their names (a spec changed meanwhile is kept; an object deleted meanwhile is
	// skipped).
	//
	// A Source never reports the loop's own status writes back through TakeChanged: the loop
	// already acts on what it wrote, and hearing it again would only make it redo its pass. The
	// store simply does not journal them; a source whose writes come back as watch events
	// (informers) drops the events whose only difference is the status the loop wrote.
	UpdateStatus(ctx context.Context, objs []v1.Object) error
}

// Changed is what a Source's state changed by since the loop last asked.
type Changed struct {
	// Refs name the objects written (created, updated or deleted).
	Refs []routing.Ref
	// All is set when more changed than the source kept track of: treat everything as changed.
	All bool
	// Causes are the contexts of the writes that made these changes (an API call's, a watch
	// event's), oldest first, at most MaxCauses of them. They carry no deadline or cancellation
	// of their own: the loop's pass works on their behalf, so what they carry (a trace) can be
	// followed from the change to the push.
	Causes []context.Context
}

// MaxCauses bounds Changed.Causes: a burst of writes between two passes keeps its first ones.
const MaxCauses = 16

// Cause is ctx as a Changed.Cause: its values, without its deadline or cancellation (the write
// that made the change has returned by the time the loop acts on it).
func Cause(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// Writer is where users' changes go: the HTTP API and the directory watcher write through it.
type Writer interface {
	// State is the current state, as Source.State.
	State() *routing.State
	// Apply admits objs all or nothing (routing.Apply) and, unless dryRun, commits the change.
	// A refusal is an *AdmissionError (or wraps a *routing.ConflictError); other errors are the
	// writer's own (disk, encoding).
	Apply(ctx context.Context, objs []v1.Object, dryRun bool) (Result, error)
	// Delete removes the object ref names and what it owns; ErrNotFound (wrapped) if absent.
	Delete(ctx context.Context, ref routing.Ref) (routing.Change, error)
}

// ErrNotFound is returned (wrapped) when an object named by a Ref does not exist.
var ErrNotFound = errors.New("not found")

// AdmissionError is routing refusing the input (invalid, or not allowed in the current State).
// Nothing was written.
type AdmissionError struct{ Err error }

func (e *AdmissionError) Error() string { return e.Err.Error() }
func (e *AdmissionError) Unwrap() error { return e.Err }

// Action says what Apply did (or, in a dry run, would do) to one object.
type Action string

// Actions, worded as kubectl prints them.
const (
	Created    Action = "created"
	Configured Action = "configured"
	Unchanged  Action = "unchanged"
)

// Outcome is what happened to one object.
type Outcome struct {
	Ref    routing.Ref
	Action Action
}

// Result reports an Apply.
type Result struct {
	// Objects has one entry per object given to Apply, in the order given.
	Objects []Outcome
	// Revisions lists the revisions the apply created, sorted by namespace and name.
	Revisions []routing.Key
	// Change is what was (or, in a dry run, would have been) written, without the objects that
	// were already stored byte for byte.
	Change routing.Change
}
