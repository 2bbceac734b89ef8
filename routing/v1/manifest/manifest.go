// Package manifest finds the manifest files of a directory, the same way for "sluice apply -f DIR"
// and "sluice serve --watch DIR".
package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Files lists dir's *.yaml, *.yml and *.json files, not recursing, sorted by name. Hidden files
// are skipped: editors write their swap and backup files there.
func Files(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".yaml", ".yml", ".json":
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Sources remembers which file each decoded object came from, so that an error admission
// reports about an object ("Service default/hello: ...") can name the file too.
type Sources map[string]string

// Add records that objs were decoded from file.
func (s Sources) Add(file string, objs []v1.Object) {
	for _, o := range objs {
		s[v1.Describe(o)] = file
	}
}

// Attribute prefixes err with the file of the object it starts by naming, if known and not
// already named.
func (s Sources) Attribute(err error) error {
	msg := err.Error()
	for obj, file := range s {
		if strings.HasPrefix(msg, obj+":") && !strings.Contains(msg, file) {
			return fmt.Errorf("%s: %w", file, err)
		}
	}
	return err
}
