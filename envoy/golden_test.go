package envoy

// Golden-file tests for the translator, in the style of Envoy Gateway's
// internal/xds/translator tests.
//
// Each case is a pair in testdata/golden:
//
//   - NAME.in.yaml: a routing.Table (hosts, backends), the translator Options and the hosts
//     gRPC clients want (goldenInput below says how each field reads);
//   - NAME.out.yaml: every resource the translation gives, one YAML document per resource with
//     its Resources field (set), type URL and name, sorted by type URL (Envoy's set of a type
//     before gRPC clients' or activators'), then name. The resource itself is protojson (proto
//     field names) normalised through a YAML round-trip, so the file does not depend on
//     protojson's whitespace.
//
// TestTranslateGolden translates each input and compares with its output file, printing a
// line diff on a mismatch. After an intended change to the translator, or for a new case (add
// only its .in.yaml), regenerate the outputs and review their diff before committing:
//
//	go test ./envoy/ -run TestTranslateGolden -update
//	git diff envoy/testdata/golden
//
// TestTranslateGoldenIncremental checks that reaching each golden Table (and moving between
// them) with TranslateDiff gives what a fresh Translate gives.

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/sluice-dev/sluice/routing"
)

var updateGolden = flag.Bool("update", false, "rewrite envoy/testdata/golden/*.out.yaml from the translator's output")

const goldenDir = "testdata/golden"

// goldenInput is a NAME.in.yaml. It reads like a routing.Table, with the parts that are always
// derived left out: a split's and a backend's Cluster is routing.ClusterName(namespace,
// revision), and a split's Namespace is its host's (as routing.BuildTable makes them).
type goldenInput struct {
	// Options are the translator's listener addresses; zero fields take the defaults.
	// Fields: externalAddress, externalPort, internalAddress, internalPort.
	Options Options `json:"options"`
	// WantedHosts are the hosts gRPC clients want (SetWanted): only these get an API listener
	// and a route configuration of their own. None, as the control plane has without gRPC
	// clients, when absent.
	WantedHosts []string        `json:"wantedHosts"`
	Hosts       []goldenHost    `json:"hosts"`
	Backends    []goldenBackend `json:"backends"`
}

type goldenHost struct {
	Name       string            `json:"name"`
	Namespace  string            `json:"namespace"`
	Route      string            `json:"route"`
	Tag        string            `json:"tag"`
	Visibility goldenVisibility  `json:"visibility"` // external (default) or cluster-local
	Routes     []goldenHTTPRoute `json:"routes"`
}

type goldenHTTPRoute struct {
	TagHeader string         `json:"tagHeader"`
	Splits    []goldenSplit  `json:"splits"`
	Timeout   goldenDuration `json:"timeout"` // "300s"; absent: none
}

type goldenSplit struct {
	Revision string `json:"revision"`
	Percent  uint32 `json:"percent"`
}

type goldenBackend struct {
	Namespace string           `json:"namespace"`
	Revision  string           `json:"revision"`
	Protocol  goldenProtocol   `json:"protocol"`  // http1 (default) or h2c
	Endpoints []goldenEndpoint `json:"endpoints"` // "host:port"
	Scaled    *goldenScaled    `json:"scaled"`
}

type goldenScaled struct {
	Instances            []goldenEndpoint `json:"instances"`
	ContainerConcurrency int64            `json:"containerConcurrency"`
	TimeoutSeconds       int64            `json:"timeoutSeconds"`
	Proxied              bool             `json:"proxied"`
}

type goldenVisibility routing.Visibility

func (v *goldenVisibility) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	switch s {
	case "", routing.External.String():
		*v = goldenVisibility(routing.External)
	case routing.ClusterLocal.String():
		*v = goldenVisibility(routing.ClusterLocal)
	default:
		return fmt.Errorf("visibility %q: want %s or %s", s, routing.External, routing.ClusterLocal)
	}
	return nil
}

type goldenProtocol routing.Protocol

func (p *goldenProtocol) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	switch s {
	case "", routing.HTTP1.String():
		*p = goldenProtocol(routing.HTTP1)
	case routing.H2C.String():
		*p = goldenProtocol(routing.H2C)
	default:
		return fmt.Errorf("protocol %q: want %s or %s", s, routing.HTTP1, routing.H2C)
	}
	return nil
}

type goldenDuration time.Duration

func (d *goldenDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = goldenDuration(v)
	return err
}

type goldenEndpoint routing.Endpoint

func (e *goldenEndpoint) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("endpoint %q: %v", s, err)
	}
	*e = goldenEndpoint{Host: host, Port: uint32(p)}
	return nil
}

func goldenEndpoints(eps []goldenEndpoint) []routing.Endpoint {
	if len(eps) == 0 {
		return nil
	}
	out := make([]routing.Endpoint, len(eps))
	for i, e := range eps {
		out[i] = routing.Endpoint(e)
	}
	return out
}

// table is the routing.Table in, checked for what every Table promises and the translator
// relies on (hosts and backends sorted with unique names, splits sorted and summing to 100).
func (in *goldenInput) table() (*routing.Table, error) {
	tab := &routing.Table{}
	for _, h := range in.Hosts {
		vh := routing.VirtualHost{Name: h.Name, Namespace: h.Namespace, Route: h.Route, Tag: h.Tag, Visibility: routing.Visibility(h.Visibility)}
		for _, r := range h.Routes {
			hr := routing.HTTPRoute{TagHeader: r.TagHeader, Timeout: time.Duration(r.Timeout)}
			var sum uint32
			for _, s := range r.Splits {
				hr.Splits = append(hr.Splits, routing.Split{
					Cluster: routing.ClusterName(h.Namespace, s.Revision), Namespace: h.Namespace, Revision: s.Revision, Percent: s.Percent,
				})
				if s.Percent == 0 {
					return nil, fmt.Errorf("host %s: a split of 0%% (routing leaves those out)", h.Name)
				}
				sum += s.Percent
			}
			if sum != 100 {
				return nil, fmt.Errorf("host %s: splits sum to %d%%, want 100", h.Name, sum)
			}
			if !slices.IsSortedFunc(hr.Splits, func(a, b routing.Split) int { return strings.Compare(a.Cluster, b.Cluster) }) {
				return nil, fmt.Errorf("host %s: splits not sorted by revision", h.Name)
			}
			vh.Routes = append(vh.Routes, hr)
		}
		if n := len(tab.Hosts); n > 0 {
			prev := tab.Hosts[n-1]
			if c := strings.Compare(prev.Name, vh.Name); c > 0 || c == 0 && prev.Visibility >= vh.Visibility {
				return nil, fmt.Errorf("hosts not sorted by name then visibility, or repeated: %s (%s) after %s (%s)",
					vh.Name, vh.Visibility, prev.Name, prev.Visibility)
			}
		}
		tab.Hosts = append(tab.Hosts, vh)
	}
	for _, b := range in.Backends {
		rb := routing.Backend{
			Cluster: routing.ClusterName(b.Namespace, b.Revision), Namespace: b.Namespace, Revision: b.Revision,
			Protocol: routing.Protocol(b.Protocol), Endpoints: goldenEndpoints(b.Endpoints),
		}
		if s := b.Scaled; s != nil {
			rb.Scaled = &routing.Scaled{Instances: goldenEndpoints(s.Instances), ContainerConcurrency: s.ContainerConcurrency,
				TimeoutSeconds: s.TimeoutSeconds, Proxied: s.Proxied}
		}
		if n := len(tab.Backends); n > 0 && tab.Backends[n-1].Cluster >= rb.Cluster {
			return nil, fmt.Errorf("backends not sorted by namespace/revision, or repeated: %s after %s", rb.Cluster, tab.Backends[n-1].Cluster)
		}
		tab.Backends = append(tab.Backends, rb)
	}
	return tab, nil
}

// wanted is the SetWanted argument: never nil, as the control plane's is not.
func (in *goldenInput) wanted() map[string]bool {
	w := map[string]bool{}
	for _, h := range in.WantedHosts {
		w[h] = true
	}
	return w
}

type goldenCase struct {
	name string // NAME of NAME.in.yaml
	in   *goldenInput
	tab  *routing.Table
}

func loadGoldenCases(t *testing.T) []goldenCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no %s/*.in.yaml", goldenDir)
	}
	var cases []goldenCase
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		in := &goldenInput{}
		if err := yaml.UnmarshalStrict(b, in); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		tab, err := in.table()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		cases = append(cases, goldenCase{name: strings.TrimSuffix(filepath.Base(f), ".in.yaml"), in: in, tab: tab})
	}
	return cases
}

func (c *goldenCase) translator() *Translator {
	tr := NewTranslator(c.in.Options)
	tr.SetWanted(c.in.wanted())
	return tr
}

func TestTranslateGolden(t *testing.T) {
	cases := loadGoldenCases(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := c.translator().Translate(c.tab)
			validateResources(t, res)
			got, err := renderGolden(c.name, res)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(goldenDir, c.name+".out.yaml")
			if *updateGolden {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(want) != string(got) {
				t.Errorf("%s differs from the translation (-%s +translation); if the change is intended, run\n"+
					"\tgo test ./envoy/ -run TestTranslateGolden -update\n%s",
					path, filepath.Base(path), lineDiff(string(want), string(got)))
			}
		})
	}
	// An output without its input is a case that was renamed or deleted: nothing checks it.
	outs, _ := filepath.Glob(filepath.Join(goldenDir, "*.out.yaml"))
	for _, out := range outs {
		name := strings.TrimSuffix(filepath.Base(out), ".out.yaml")
		if !slices.ContainsFunc(cases, func(c goldenCase) bool { return c.name == name }) {
			t.Errorf("%s has no %s.in.yaml: delete it", out, name)
		}
	}
}

// goldenSets are the Resources fields in output order: by type URL, and within one type the
// gateway's set before the one for gRPC clients or activators.
var goldenSets = []struct {
	field string
	get   func(*Resources) map[string]proto.Message
}{
	{"Clusters", func(r *Resources) map[string]proto.Message { return asMessages(r.Clusters) }},
	{"Endpoints", func(r *Resources) map[string]proto.Message { return asMessages(r.Endpoints) }},
	{"ActivatorEndpoints", func(r *Resources) map[string]proto.Message { return asMessages(r.ActivatorEndpoints) }},
	{"Listeners", func(r *Resources) map[string]proto.Message { return asMessages(r.Listeners) }},
	{"APIListeners", func(r *Resources) map[string]proto.Message { return asMessages(r.APIListeners) }},
	{"Routes", func(r *Resources) map[string]proto.Message { return asMessages(r.Routes) }},
}

// renderGolden is the text of an output file: a comment, then one YAML document per resource.
func renderGolden(name string, res *Resources) ([]byte, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# The translation of %s.in.yaml; regenerate with\n#   go test ./envoy/ -run TestTranslateGolden -update\n", name)
	lastType := ""
	for _, set := range goldenSets {
		ms := set.get(res)
		names := make([]string, 0, len(ms))
		for n := range ms {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			m := ms[n]
			typeURL := "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
			if typeURL < lastType {
				return nil, fmt.Errorf("goldenSets out of type URL order at %s", set.field)
			}
			lastType = typeURL
			body, err := resourceYAML(m)
			if err != nil {
				return nil, fmt.Errorf("%s %q: %v", set.field, n, err)
			}
			fmt.Fprintf(&b, "---\nset: %s\ntype: %s\nname: %s\nresource:\n", set.field, yamlScalar(typeURL), yamlScalar(n))
			for _, line := range strings.SplitAfter(strings.TrimSuffix(string(body), "\n"), "\n") {
				b.WriteString("  " + line)
			}
			b.WriteString("\n")
		}
	}
	return []byte(b.String()), nil
}

// resourceYAML is m as protojson, made independent of protojson's formatting by decoding it into
// plain maps and marshalling those as YAML (keys sorted).
func resourceYAML(m proto.Message) ([]byte, error) {
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		return nil, err
	}
	return yaml.Marshal(v)
}

// yamlScalar is s as a YAML scalar, quoted only if YAML needs it.
func yamlScalar(s string) string {
	b, err := yaml.Marshal(s)
	if err != nil {
		panic(err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

// lineDiff is a unified-style diff of two texts: the lines of a longest common subsequence
// are kept, and only the changed lines with two lines of context around them are printed.
func lineDiff(a, b string) string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	// lcs[i][j] is the LCS length of x[i:] and y[j:]; golden files are a few hundred lines.
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		kind   byte // ' ', '-' or '+'
		line   string
		ai, bi int // line numbers in a and b, from 1
	}
	var ops []op
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			ops = append(ops, op{' ', x[i], i + 1, j + 1})
			i, j = i+1, j+1
		case i < len(x) && (j == len(y) || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', x[i], i + 1, j + 1})
			i++
		default:
			ops = append(ops, op{'+', y[j], i + 1, j + 1})
			j++
		}
	}
	const context = 2
	show := make([]bool, len(ops))
	for k, o := range ops {
		if o.kind != ' ' {
			for p := max(0, k-context); p <= min(len(ops)-1, k+context); p++ {
				show[p] = true
			}
		}
	}
	var out strings.Builder
	last := -2
	for k, o := range ops {
		if !show[k] {
			continue
		}
		if k != last+1 {
			fmt.Fprintf(&out, "@@ -%d +%d @@\n", o.ai, o.bi)
		}
		out.WriteString(string(o.kind) + o.line + "\n")
		last = k
	}
	return out.String()
}

// fullDiff names every host and backend of a and b: a diff may name more than changed.
func fullDiff(a, b *routing.Table) routing.TableDiff {
	var d routing.TableDiff
	for _, tab := range []*routing.Table{a, b} {
		for _, h := range tab.Hosts {
			d.Hosts = append(d.Hosts, routing.HostRef{Name: h.Name, Visibility: h.Visibility})
		}
		for _, be := range tab.Backends {
			d.Backends = append(d.Backends, be.Cluster)
		}
	}
	return d
}

// TestTranslateGoldenIncremental: the golden Tables reached with TranslateDiff, from nothing and
// from one another, give what a fresh Translate gives; and so does going back to nothing.
func TestTranslateGoldenIncremental(t *testing.T) {
	cases := loadGoldenCases(t)
	empty := &routing.Table{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := c.translator().Translate(c.tab)

			tr := c.translator()
			checkSameResources(t, "full diff", tr.TranslateDiff(c.tab, routing.TableDiff{Full: true}), want)

			tr = c.translator()
			tr.Translate(empty)
			checkSameResources(t, "from an empty Table", tr.TranslateDiff(c.tab, fullDiff(empty, c.tab)), want)
			checkSameResources(t, "back to an empty Table", tr.TranslateDiff(empty, fullDiff(c.tab, empty)), c.translator().Translate(empty))
		})
	}
	// One Translator through every case in turn, wanted hosts and all: each step is a move
	// between two shapes users have (the listener options stay the default ones).
	tr := NewTranslator(Options{})
	tr.Translate(empty)
	prev := empty
	for _, c := range append(cases, cases[0]) {
		tr.SetWanted(c.in.wanted())
		fresh := NewTranslator(Options{})
		fresh.SetWanted(c.in.wanted())
		checkSameResources(t, "to "+c.name, tr.TranslateDiff(c.tab, fullDiff(prev, c.tab)), fresh.Translate(c.tab))
		prev = c.tab
	}
}
