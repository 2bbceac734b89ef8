package local

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// DefaultMaxLogBytes bounds one instance's log file; past it the file is rotated once to .1.
const DefaultMaxLogBytes = 10 << 20

// logFile is an instance's stdout and stderr, appended across its restarts. It never fails a
// write: an error would reach the app as EPIPE on its own stdout, so a full disk would kill it.
type logFile struct {
	mu     sync.Mutex
	path   string
	f      *os.File
	size   int64
	max    int64
	log    *slog.Logger
	failed bool
}

func openLogFile(path string, max int64, log *slog.Logger) (*logFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat log: %w", err)
	}
	return &logFile{path: path, f: f, size: st.Size(), max: max, log: log}, nil
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return len(p), nil
	}
	if l.size > 0 && l.size+int64(len(p)) > l.max {
		l.rotate()
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	if err != nil && !l.failed {
		l.failed = true
		l.log.Warn("instance output is being lost", "path", l.path, "err", err)
	}
	return len(p), nil
}

// rotate keeps one previous file: what a user looking at a crash needs, within a fixed size.
func (l *logFile) rotate() {
	l.f.Close()
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		l.log.Warn("rotate instance log", "path", l.path, "err", err)
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		l.log.Warn("reopen instance log", "path", l.path, "err", err)
		l.f = nil
		return
	}
	l.f, l.size = f, 0
}

func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// maxReasonLine bounds the stderr line kept as an instance's exit reason.
const maxReasonLine = 512

// lastLine passes stderr on to the log and remembers its last non-empty line: why a process
// exited is usually the last thing it said.
type lastLine struct {
	next    *logFile
	mu      sync.Mutex
	partial []byte
	last    string
}

func (l *lastLine) Write(p []byte) (int, error) {
	n, err := l.next.Write(p)
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.partial = append(l.partial, p[:min(len(p), maxReasonLine-len(l.partial))]...)
			break
		}
		line := append(l.partial, p[:min(i, maxReasonLine-len(l.partial))]...)
		if t := bytes.TrimSpace(line); len(t) > 0 {
			l.last = string(t)
		}
		l.partial = l.partial[:0]
		p = p[i+1:]
	}
	return n, err
}

// Last is the last non-empty line written, or the unfinished one after it.
func (l *lastLine) Last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t := bytes.TrimSpace(l.partial); len(t) > 0 {
		return string(t)
	}
	return l.last
}
