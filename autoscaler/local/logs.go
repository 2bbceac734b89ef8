//go:build unix

package local

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/routing"
)

// LogsPattern is the route LogsHandler expects, in http.ServeMux syntax: it reads the
// namespace and name path values.
const LogsPattern = "GET /api/v1/namespaces/{namespace}/revisions/{name}/logs"

// LogsHandler serves a revision's instance logs as text/plain: ?tail=N keeps the last N lines
// of each instance, ?follow=1 keeps streaming new lines, of new instances too, until the client
// goes away or the supervisor closes. Lines carry "[instance] " when the revision has several
// instances or when following (another may start at any time). Errors are JSON {"error": "..."}
// as in the rest of the API.
func (s *Supervisor) LogsHandler() http.Handler {
	return http.HandlerFunc(s.serveLogs)
}

func (s *Supervisor) serveLogs(w http.ResponseWriter, r *http.Request) {
	key := routing.Key{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	if err := validKey(key); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	q := r.URL.Query()
	follow := false
	if v := q.Get("follow"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "follow="+v+": want true or false (1 or 0)")
			return
		}
		follow = b
	}
	tail := -1
	if v := q.Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < -1 {
			writeError(w, http.StatusBadRequest, "tail="+v+": want a number of lines, or -1 for all")
			return
		}
		tail = n
	}
	dir := s.revisionDir(key)
	files := listLogs(dir)
	if len(files) == 0 {
		s.mu.Lock()
		_, known := s.revs[key]
		s.mu.Unlock()
		if !known {
			writeError(w, http.StatusNotFound, "no logs for revision "+key.String()+": it has not run on this sluice (only local revisions, those with a command, have logs here)")
			return
		}
	}

	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	out := &lineWriter{w: bufio.NewWriterSize(w, 32<<10), rc: http.NewResponseController(w)}
	prefix := follow || len(files) > 1
	followers := map[string]*follower{}
	for _, path := range files {
		fl := openFollower(path, prefix)
		if fl == nil {
			continue
		}
		followers[path] = fl
		if err := fl.start(out, tail); err != nil {
			return
		}
	}
	if !follow {
		for _, path := range files {
			if fl := followers[path]; fl != nil {
				fl.flushPartial(out)
				fl.close()
			}
		}
		_ = out.flush()
		return
	}
	defer func() {
		for _, fl := range followers {
			fl.close()
		}
	}()
	if out.flush() != nil {
		return
	}
	t := time.NewTicker(s.opts.FollowPollInterval)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case <-t.C:
		}
		for _, path := range listLogs(dir) {
			if followers[path] == nil {
				// A new instance: all of its output is new.
				if fl := openFollower(path, true); fl != nil {
					followers[path] = fl
				}
			}
		}
		for path, fl := range followers {
			gone, err := fl.poll(out)
			if err != nil {
				return
			}
			if gone {
				fl.close()
				delete(followers, path)
			}
		}
		if out.flush() != nil {
			return
		}
	}
}

// listLogs is dir's instance logs (not their rotated .1), ordered by instance number.
func listLogs(dir string) []string {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	slices.SortFunc(paths, func(a, b string) int {
		return cmp.Or(cmp.Compare(instanceSeq(a), instanceSeq(b)), cmp.Compare(a, b))
	})
	return paths
}

// instanceSeq is n of ".../<revision>-<n>.log".
func instanceSeq(path string) int {
	base := strings.TrimSuffix(filepath.Base(path), ".log")
	n, _ := strconv.Atoi(base[strings.LastIndexByte(base, '-')+1:])
	return n
}

// lineWriter writes whole lines to a client.
type lineWriter struct {
	w  *bufio.Writer
	rc *http.ResponseController
}

func (l *lineWriter) line(prefix string, line []byte) error {
	if prefix != "" {
		l.w.WriteString(prefix)
	}
	l.w.Write(line)
	return l.w.WriteByte('\n')
}

func (l *lineWriter) flush() error {
	if err := l.w.Flush(); err != nil {
		return err
	}
	if err := l.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// follower reads one instance's log from where it last stopped, across rotations.
type follower struct {
	path    string
	prefix  string
	f       *os.File
	partial []byte
}

func openFollower(path string, prefix bool) *follower {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	fl := &follower{path: path, f: f}
	if prefix {
		fl.prefix = "[" + strings.TrimSuffix(filepath.Base(path), ".log") + "] "
	}
	return fl
}

// start writes the last tail lines (all, with the rotated file first, when tail is -1).
func (fl *follower) start(out *lineWriter, tail int) error {
	if tail < 0 {
		if old, err := os.Open(fl.path + ".1"); err == nil {
			err := fl.copyLines(out, old)
			old.Close()
			if err != nil {
				return err
			}
		}
	} else if off, err := tailOffset(fl.f, tail); err == nil {
		if _, err := fl.f.Seek(off, io.SeekStart); err != nil {
			return nil
		}
	}
	return fl.copyLines(out, fl.f)
}

// poll writes what was appended since the last call; gone when the file was removed.
func (fl *follower) poll(out *lineWriter) (gone bool, err error) {
	if err := fl.copyLines(out, fl.f); err != nil {
		return false, err
	}
	st, err := os.Stat(fl.path)
	if err != nil {
		return true, nil
	}
	cur, err := fl.f.Stat()
	if err != nil || os.SameFile(st, cur) {
		return false, nil
	}
	// Rotated: what was left of the old file is out, read the new one from its start.
	f, err := os.Open(fl.path)
	if err != nil {
		return true, nil
	}
	fl.f.Close()
	fl.f = f
	return false, fl.copyLines(out, fl.f)
}

// copyLines writes r's complete lines and keeps an unfinished one for the next call.
func (fl *follower) copyLines(out *lineWriter, r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				fl.partial = append(fl.partial, data...)
				break
			}
			line := data[:i]
			if len(fl.partial) > 0 {
				line = append(fl.partial, line...)
			}
			if werr := out.line(fl.prefix, line); werr != nil {
				return werr
			}
			fl.partial = fl.partial[:0]
			data = data[i+1:]
		}
		if err != nil {
			return nil
		}
	}
}

func (fl *follower) flushPartial(out *lineWriter) {
	if len(fl.partial) > 0 {
		_ = out.line(fl.prefix, fl.partial)
		fl.partial = fl.partial[:0]
	}
}

func (fl *follower) close() { fl.f.Close() }

// tailOffset is where the last n lines of f start, reading backwards in blocks.
func tailOffset(f *os.File, n int) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end := st.Size()
	if n == 0 {
		return end, nil
	}
	const block = 32 << 10
	buf := make([]byte, block)
	pos := end
	seen := 0
	// A final newline ends the last line; it does not start another.
	skipLast := true
	for pos > 0 {
		size := min(int64(block), pos)
		pos -= size
		if _, err := f.ReadAt(buf[:size], pos); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := size - 1; i >= 0; i-- {
			if buf[i] != '\n' {
				continue
			}
			if skipLast && pos+i == end-1 {
				continue
			}
			seen++
			if seen == n {
				return pos + i + 1, nil
			}
		}
		skipLast = false
	}
	return 0, nil
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
