// Package directory applies a directory of manifests to the store whenever it changes (GitOps).
//
// Every sync applies all the directory's files as one all-or-nothing batch, so a half-edited
// file never half-applies: the error is logged and the last good state keeps serving. Objects a
// sync applied carry v1.AnnotationAppliedFrom; when a later sync no longer contains one, it is deleted.
package directory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/sluice-dev/sluice/routing"
	v1 "github.com/sluice-dev/sluice/routing/v1"
	"github.com/sluice-dev/sluice/routing/v1/manifest"
	"github.com/sluice-dev/sluice/source"
)

// DefaultDebounce lets an editor's write-rename-chmod burst, or a git checkout of many files,
// settle into one sync.
const DefaultDebounce = 200 * time.Millisecond

// Watcher syncs Dir into Store.
type Watcher struct {
	Dir      string
	Store    source.Writer
	Log      *slog.Logger
	Debounce time.Duration
}

// Run syncs once, then on every change until ctx is done. It fails only if the directory cannot
// be watched; a bad manifest is logged and waited out.
func (w *Watcher) Run(ctx context.Context) error {
	dir, err := filepath.Abs(w.Dir)
	if err != nil {
		return fmt.Errorf("watch %s: %w", w.Dir, err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("watch %s: %w", w.Dir, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("watch %s: not a directory", w.Dir)
	}
	log := w.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("dir", dir)
	debounce := w.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}

	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	defer fw.Close()
	// Watching before the first sync means no edit made during it is missed.
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}

	w.sync(ctx, dir, log)

	// The timer is only ever read from this goroutine; a nil channel blocks until armed.
	var timer *time.Timer
	var fire <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			log.Debug("directory changed", "event", ev.String())
			if timer == nil {
				timer = time.NewTimer(debounce)
			} else {
				timer.Reset(debounce)
			}
			fire = timer.C
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			// An overflow loses events, not the directory: the next sync reads it whole anyway.
			log.Warn("watching directory", "err", err)
			if timer == nil {
				timer = time.NewTimer(debounce)
			} else {
				timer.Reset(debounce)
			}
			fire = timer.C
		case <-fire:
			fire = nil
			w.sync(ctx, dir, log)
		}
	}
}

// sync applies the directory and prunes what left it, logging the outcome in one line.
func (w *Watcher) sync(ctx context.Context, dir string, log *slog.Logger) {
	res, err := Sync(ctx, w.Store, dir)
	pruned := res.Pruned
	if err != nil {
		log.Error("directory not applied; the last good state keeps serving", "err", err)
		return
	}
	for _, ref := range res.Skipped {
		log.Warn("not applying a file's object: it was last applied by hand, not from this directory; delete it or apply the file to hand it back",
			"object", ref.String(), "dir", dir)
	}
	written := len(res.Change.Put) + len(res.Change.Delete)
	if written == 0 && len(pruned) == 0 {
		log.Debug("directory unchanged", "objects", len(res.Objects))
		return
	}
	log.Info("directory applied", "objects", len(res.Objects), "written", written, "revisionsCreated", len(res.Revisions), "pruned", len(pruned))
}

// Report is what one Sync did.
type Report struct {
	source.Result
	// Pruned were applied from dir earlier and are gone from it: deleted.
	Pruned []routing.Ref
	// Skipped are in dir but were last applied by hand: left alone.
	Skipped []routing.Ref
}

// Sync applies every manifest of dir (an absolute path) as one batch and then deletes the
// objects an earlier Sync of dir applied that are no longer there. Objects that exist but were
// not applied from dir are left alone and reported as skipped.
//
// The apply is atomic; the pruning after it is one delete per object, each atomic. A failed
// delete (say, a revision a remaining Route still names) is reported and retried next sync.
func Sync(ctx context.Context, st source.Writer, dir string) (Report, error) {
	files, err := manifest.Files(dir)
	if err != nil {
		return Report{}, err
	}
	var objs []v1.Object
	sources := manifest.Sources{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return Report{}, fmt.Errorf("read %s: %w", f, err)
		}
		got, err := v1.Decode(data, f)
		if err != nil {
			return Report{}, err
		}
		sources.Add(f, got)
		for _, o := range got {
			mark(o, dir)
		}
		objs = append(objs, got...)
	}
	objs, skipped := withoutForeign(st.State(), objs, dir)
	res, err := st.Apply(ctx, objs, false)
	if err != nil {
		return Report{}, fmt.Errorf("apply %s: %w", dir, sources.Attribute(err))
	}
	keep := make(map[routing.Ref]bool, len(res.Objects))
	for _, o := range res.Objects {
		keep[o.Ref] = true
	}
	var pruned []routing.Ref
	var errs []error
	for _, ref := range applied(st.State(), dir) {
		if keep[ref] {
			continue
		}
		if _, err := st.Delete(ctx, ref); err != nil && !errors.Is(err, source.ErrNotFound) {
			errs = append(errs, fmt.Errorf("prune %s, which left %s: %w", ref, dir, err))
			continue
		}
		pruned = append(pruned, ref)
	}
	return Report{Result: res, Pruned: pruned, Skipped: skipped}, errors.Join(errs...)
}

// withoutForeign drops the objects that exist already but were not applied from dir: someone
// applied them by hand (or from another directory), and re-applying the file would silently undo
// that. The directory owns only what it created or what was last applied from it.
func withoutForeign(st *routing.State, objs []v1.Object, dir string) (own []v1.Object, skipped []routing.Ref) {
	for _, o := range objs {
		ref := routing.RefOf(o)
		if cur := st.Get(ref); cur != nil && cur.GetAnnotations()[v1.AnnotationAppliedFrom] != dir {
			skipped = append(skipped, ref)
			continue
		}
		own = append(own, o)
	}
	return own, skipped
}

func mark(o v1.Object, dir string) {
	// The directory is what the objects must be, whatever happened since a file was written: a
	// resourceVersion copied into it from "sluice get -o yaml" would make every later sync of
	// the file a conflict.
	o.SetResourceVersion("")
	a := o.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[v1.AnnotationAppliedFrom] = dir
	o.SetAnnotations(a)
}

// applied lists the objects of st a sync of dir applied. Objects owned by a Service carry the
// Service's annotations but go with it, so only top-level objects count.
func applied(st *routing.State, dir string) []routing.Ref {
	var out []routing.Ref
	add := func(kind string, k routing.Key, o v1.Object) {
		if o.GetAnnotations()[v1.AnnotationAppliedFrom] != dir {
			return
		}
		for _, ref := range o.GetOwnerReferences() {
			if ref.Controller != nil && *ref.Controller {
				return
			}
		}
		out = append(out, routing.Ref{Kind: kind, Key: k})
	}
	for k, o := range st.Services {
		add(v1.KindService, k, o)
	}
	for k, o := range st.Configurations {
		add(v1.KindConfiguration, k, o)
	}
	for k, o := range st.Routes {
		add(v1.KindRoute, k, o)
	}
	// Routes first: deleting a Configuration a remaining Route names would be refused.
	slices.SortFunc(out, func(a, b routing.Ref) int {
		return cmp.Or(rank(a.Kind)-rank(b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

func rank(kind string) int {
	switch kind {
	case v1.KindRoute:
		return 0
	case v1.KindService:
		return 1
	}
	return 2
}
