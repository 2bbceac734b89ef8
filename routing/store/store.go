// Package store persists the routing State in a bbolt file and publishes it in memory.
//
// Writers (Apply, Delete, UpdateStatus) are serialised: each computes a routing.Change against the
// current State, commits it in one bbolt transaction and only then swaps the in-memory State, so
// readers never see a State that is not on disk. Readers take the current snapshot with State()
// without locking; a State is never mutated once published.
package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sluice-dev/sluice/routing"
	v1 "github.com/sluice-dev/sluice/routing/v1"
	"github.com/sluice-dev/sluice/source"
)

// FileName is the bbolt file inside the data dir.
const FileName = "sluice.db"

// lockFileName is the data dir's lock, held while a Store is open.
const lockFileName = "sluice.lock"

// lockTimeout bounds how long Open waits for another process's lock on the file. A variable so
// the lock test does not wait a full second.
var lockTimeout = time.Second

// buckets maps each kind to its bucket; one bucket per kind keeps keys plain "namespace/name".
var buckets = map[string][]byte{
	v1.KindService:       []byte("services"),
	v1.KindConfiguration: []byte("configurations"),
	v1.KindRoute:         []byte("routes"),
	v1.KindRevision:      []byte("revisions"),
}

// Store is the on-disk State plus its in-memory snapshot: standalone sluice's source.Source and
// source.Writer.
type Store struct {
	db      *bolt.DB
	lock    *os.File   // flock on the data dir, see lockDir
	mu      sync.Mutex // serialises writers so each Change is computed against the State it commits onto
	state   atomic.Pointer[routing.State]
	changes chan struct{}
	now     func() time.Time

	// journal lists what Apply and Delete changed since the last TakeChanged, so the control-plane
	// loop can work in proportion to a change rather than to the whole State.
	journalMu   sync.Mutex
	journal     []routing.Ref
	journalFull bool // the journal overflowed: the reader must treat everything as changed
	causes      []context.Context
}

// maxJournal bounds the journal when nobody drains it; past it the reader is told to rebuild all.
const maxJournal = 100_000

// Open opens (creating if needed) dir/sluice.db and loads the State from it.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("open store: data dir is empty")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	// The data dir's own lock, held for the Store's life: bbolt's lock on the file is released
	// while the file is reopened below, and another sluice must not slip in then.
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	db, err := openDB(dir, path)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s := &Store{db: db, lock: lock, changes: make(chan struct{}, 1), now: time.Now}
	st, err := s.load()
	if err != nil {
		_ = db.Close()
		lock.Close()
		return nil, fmt.Errorf("load store %s: %w", path, err)
	}
	// Loading read every page of the file through bbolt's mmap, and those pages stay resident
	// (and count in RSS: 100 MB at 10,000 services) although the State lives in memory and the
	// file is only written from now on. A fresh mapping starts with none of them.
	if err := db.Close(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("close store %s after loading: %w", path, err)
	}
	if s.db, err = openDB(dir, path); err != nil {
		lock.Close()
		return nil, err
	}
	s.state.Store(st)
	return s, nil
}

func openDB(dir, path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("data dir %s is in use by another sluice (could not lock %s within %s)", dir, path, lockTimeout)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return db, nil
}

// lockDir takes an exclusive lock on dir/sluice.lock, or says who has the dir.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	deadline := time.Now().Add(lockTimeout)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("data dir %s is in use by another sluice (could not lock %s within %s)", dir, path, lockTimeout)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Store) load() (*routing.State, error) {
	var objs []v1.Object
	err := s.db.Update(func(tx *bolt.Tx) error {
		for kind, name := range buckets {
			b, err := tx.CreateBucketIfNotExists(name)
			if err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
			err = b.ForEach(func(k, v []byte) error {
				obj, err := decodeValue(kind, v)
				if err != nil {
					return fmt.Errorf("%s %s: %w", kind, k, err)
				}
				objs = append(objs, obj)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Each object was decoded on its own; make equal parts one (see sharer), as a State built
	// by applies would have them.
	sh := newSharer(true)
	for _, o := range objs {
		sh.object(o)
	}
	return routing.NewState().With(routing.Change{Put: objs}), nil
}

// Close releases the file and its lock.
func (s *Store) Close() error {
	defer s.lock.Close() // closing the file releases the flock
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.db.Path(), err)
	}
	return nil
}

// State is the current snapshot. It must not be mutated.
func (s *Store) State() *routing.State { return s.state.Load() }

// Changes is signalled after every committed change. Signals coalesce: a reader that was busy
// sees one signal for any number of changes and should read State() afresh.
func (s *Store) Changes() <-chan struct{} { return s.changes }

// Apply admits objs (all or nothing) and, unless dryRun, commits the resulting Change.
func (s *Store) Apply(ctx context.Context, objs []v1.Object, dryRun bool) (source.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.State()
	change, err := routing.Apply(cur, objs, s.now())
	if err != nil {
		return source.Result{}, &source.AdmissionError{Err: err}
	}
	change, err = effective(cur, change)
	if err != nil {
		return source.Result{}, err
	}
	res := source.Result{Change: change}
	changed := make(map[routing.Ref]bool, len(change.Put))
	for _, o := range change.Put {
		r := routing.RefOf(o)
		changed[r] = true
		if r.Kind == v1.KindRevision && cur.Get(r) == nil {
			res.Revisions = append(res.Revisions, r.Key)
		}
	}
	sortKeys(res.Revisions)
	for _, o := range objs {
		// Name the object as admission did: defaulting may fill in its namespace.
		d := v1.Clone(o)
		v1.SetDefaults(d)
		r := routing.RefOf(d)
		a := source.Unchanged
		switch {
		case cur.Get(r) == nil:
			a = source.Created
		case changed[r]:
			a = source.Configured
		}
		res.Objects = append(res.Objects, source.Outcome{Ref: r, Action: a})
	}
	if dryRun {
		return res, nil
	}
	// Admission already shares a Service's parts with what it derives; this also shares what
	// equal objects of this call hold (the same image and env across services, say).
	sh := newSharer(false)
	for _, o := range change.Put {
		sh.object(o)
	}
	if err := s.commit(ctx, cur, change); err != nil {
		return source.Result{}, err
	}
	return res, nil
}

// Delete removes the object ref names and whatever it owns.
func (s *Store) Delete(ctx context.Context, ref routing.Ref) (routing.Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.State()
	if _, ok := buckets[ref.Kind]; !ok {
		return routing.Change{}, fmt.Errorf("delete %s %s/%s: unknown kind", ref.Kind, ref.Namespace, ref.Name)
	}
	if cur.Get(ref) == nil {
		return routing.Change{}, fmt.Errorf("%s: %w", ref, source.ErrNotFound)
	}
	change, err := routing.Delete(cur, ref)
	if err != nil {
		return routing.Change{}, &source.AdmissionError{Err: err}
	}
	if err := s.commit(ctx, cur, change); err != nil {
		return routing.Change{}, err
	}
	return change, nil
}

// UpdateStatus writes the status of each object onto the object currently stored under its name,
// so that a spec that changed since the caller read its State is kept. Objects deleted meanwhile
// are skipped: their status no longer matters.
func (s *Store) UpdateStatus(_ context.Context, objs []v1.Object) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.State()
	var change routing.Change
	for _, o := range objs {
		stored := cur.Get(routing.RefOf(o))
		if stored == nil {
			continue
		}
		merged, err := withStatus(stored, o)
		if err != nil {
			return err
		}
		change.Put = append(change.Put, merged)
	}
	change, err := effective(cur, change)
	if err != nil {
		return err
	}
	// Statuses written together mostly say the same (Ready since now): store those once.
	sh := newSharer(false)
	for _, o := range change.Put {
		sh.statusOf(o)
	}
	// The loop that computes statuses is the only caller and already acts on what it wrote, so a
	// status write is neither journaled nor signalled: that would only make it redo its own pass.
	return s.write(cur, change)
}

// TakeChanged returns the objects Apply and Delete changed since the last call, with the contexts
// of the calls; All is set when more changed than the journal holds (the caller must then treat
// everything as changed).
func (s *Store) TakeChanged() source.Changed {
	s.journalMu.Lock()
	defer s.journalMu.Unlock()
	c := source.Changed{Refs: s.journal, All: s.journalFull, Causes: s.causes}
	s.journal, s.journalFull, s.causes = nil, false, nil
	return c
}

// withStatus copies stored (shallowly: stored objects are immutable, sharing is safe) with the
// status of from.
func withStatus(stored, from v1.Object) (v1.Object, error) {
	switch st := stored.(type) {
	case *v1.Service:
		if f, ok := from.(*v1.Service); ok {
			n := *st
			n.Status = f.Status
			return &n, nil
		}
	case *v1.Configuration:
		if f, ok := from.(*v1.Configuration); ok {
			n := *st
			n.Status = f.Status
			return &n, nil
		}
	case *v1.Route:
		if f, ok := from.(*v1.Route); ok {
			n := *st
			n.Status = f.Status
			return &n, nil
		}
	case *v1.Revision:
		if f, ok := from.(*v1.Revision); ok {
			n := *st
			n.Status = f.Status
			return &n, nil
		}
	}
	return nil, fmt.Errorf("update status: %T and %T are different kinds", stored, from)
}

// effective drops from c the puts that equal what is stored, so that unchanged objects keep
// their pointers in the next State and a no-op apply writes and signals nothing.
func effective(cur *routing.State, c routing.Change) (routing.Change, error) {
	out := routing.Change{Delete: c.Delete}
	for _, o := range c.Put {
		old := cur.Get(routing.RefOf(o))
		if old != nil {
			same, err := equalJSON(old, o)
			if err != nil {
				return routing.Change{}, err
			}
			if same {
				continue
			}
		}
		out.Put = append(out.Put, o)
	}
	return out, nil
}

func equalJSON(a, b v1.Object) (bool, error) {
	ja, err := json.Marshal(a)
	if err != nil {
		return false, fmt.Errorf("encode %s: %w", routing.RefOf(a), err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		return false, fmt.Errorf("encode %s: %w", routing.RefOf(b), err)
	}
	return bytes.Equal(ja, jb), nil
}

// commit writes c, journals it and signals. Called with mu held.
func (s *Store) commit(ctx context.Context, cur *routing.State, c routing.Change) error {
	if len(c.Put) == 0 && len(c.Delete) == 0 {
		return nil
	}
	if err := s.write(cur, c); err != nil {
		return err
	}
	s.journalMu.Lock()
	if len(s.journal)+len(c.Put)+len(c.Delete) > maxJournal {
		s.journal, s.journalFull = nil, true
	} else if !s.journalFull {
		for _, o := range c.Put {
			s.journal = append(s.journal, routing.RefOf(o))
		}
		s.journal = append(s.journal, c.Delete...)
	}
	if len(s.causes) < source.MaxCauses {
		s.causes = append(s.causes, source.Cause(ctx))
	}
	s.journalMu.Unlock()
	select {
	case s.changes <- struct{}{}:
	default: // a signal is already pending; the reader will see this change too
	}
	return nil
}

// write commits c in one transaction and then publishes the new State. Called with mu held.
func (s *Store) write(cur *routing.State, c routing.Change) error {
	if len(c.Put) == 0 && len(c.Delete) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, r := range c.Delete {
			b, err := bucket(tx, r.Kind)
			if err != nil {
				return err
			}
			if err := b.Delete(key(r.Key)); err != nil {
				return fmt.Errorf("delete %s: %w", r, err)
			}
		}
		for _, o := range c.Put {
			r := routing.RefOf(o)
			b, err := bucket(tx, r.Kind)
			if err != nil {
				return err
			}
			data, err := json.Marshal(o)
			if err != nil {
				return fmt.Errorf("encode %s: %w", r, err)
			}
			if err := b.Put(key(r.Key), data); err != nil {
				return fmt.Errorf("write %s: %w", r, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("commit to %s (nothing was changed): %w", s.db.Path(), err)
	}
	s.state.Store(cur.With(c))
	return nil
}

func bucket(tx *bolt.Tx, kind string) (*bolt.Bucket, error) {
	name, ok := buckets[kind]
	if !ok {
		return nil, fmt.Errorf("no bucket for kind %q", kind)
	}
	b := tx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("bucket %s is missing", name)
	}
	return b, nil
}

func key(k routing.Key) []byte { return []byte(k.Namespace + "/" + k.Name) }

func decodeValue(kind string, data []byte) (v1.Object, error) {
	var obj v1.Object
	switch kind {
	case v1.KindService:
		obj = &v1.Service{}
	case v1.KindConfiguration:
		obj = &v1.Configuration{}
	case v1.KindRoute:
		obj = &v1.Route{}
	case v1.KindRevision:
		obj = &v1.Revision{}
	default:
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	if err := json.Unmarshal(data, obj); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return obj, nil
}

func sortKeys(ks []routing.Key) {
	slices.SortFunc(ks, func(a, b routing.Key) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// A Store is the standalone control plane's source of desired state and where users write to.
var (
	_ source.Source = (*Store)(nil)
	_ source.Writer = (*Store)(nil)
)
