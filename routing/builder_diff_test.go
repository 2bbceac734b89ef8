package routing

import (
	"fmt"
	"reflect"
	"testing"
)

// TestLastDiffCoversEveryChange runs the random sequences of TestIncrementalMatchesFull and
// checks after each step that LastDiff names every host and backend that differs between the
// previous Table and the new one (added, changed or removed): the translator looks at nothing
// else, so a name missing here is a change never pushed.
func TestLastDiffCoversEveryChange(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			w := newWorld(t, seed)
			if d := w.builder.LastDiff(); !d.Full {
				t.Fatalf("first build: diff %+v, want Full", d)
			}
			named := 0
			for i := range 60 {
				prev := w.last
				w.step(i)
				d := w.builder.LastDiff()
				if w.last == prev {
					continue // nothing built, or nothing changed
				}
				if d.Full {
					continue // a step that names no change builds in full (changed nil): covers all
				}
				hosts := map[HostRef]bool{}
				for _, h := range d.Hosts {
					hosts[h] = true
				}
				backends := map[string]bool{}
				for _, b := range d.Backends {
					backends[b] = true
				}
				for _, h := range differingHosts(prev, w.last) {
					if !hosts[h] {
						t.Errorf("step %d: host %v changed but LastDiff %+v does not name it", i, h, d)
					}
				}
				for _, b := range differingBackends(prev, w.last) {
					if !backends[b] {
						t.Errorf("step %d: backend %s changed but LastDiff %+v does not name it", i, b, d)
					}
				}
				named += len(d.Hosts) + len(d.Backends)
			}
			if named == 0 {
				t.Fatal("no step changed anything: the test tests nothing")
			}
		})
	}
}

func differingHosts(a, b *Table) []HostRef {
	am := map[HostRef]VirtualHost{}
	for _, h := range a.Hosts {
		am[HostRef{h.Name, h.Visibility}] = h
	}
	bm := map[HostRef]VirtualHost{}
	for _, h := range b.Hosts {
		bm[HostRef{h.Name, h.Visibility}] = h
	}
	var out []HostRef
	for k, h := range bm {
		if old, ok := am[k]; !ok || !reflect.DeepEqual(old, h) {
			out = append(out, k)
		}
	}
	for k := range am {
		if _, ok := bm[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

func differingBackends(a, b *Table) []string {
	am := map[string]Backend{}
	for _, x := range a.Backends {
		am[x.Cluster] = x
	}
	bm := map[string]Backend{}
	for _, x := range b.Backends {
		bm[x.Cluster] = x
	}
	var out []string
	for k, x := range bm {
		if old, ok := am[k]; !ok || !reflect.DeepEqual(old, x) {
			out = append(out, k)
		}
	}
	for k := range am {
		if _, ok := bm[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}
