package v1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Decode reads serving.knative.dev/v1 objects from multi-document YAML (documents separated by
// "---" lines) or from a stream of JSON objects. Decoding is strict, as kubectl's server-side
// validation is: unknown and duplicate fields are errors, because a misspelt field silently
// ignored is traffic silently misrouted. Empty documents are skipped, status is dropped (it is
// owned by sluice), and each object is defaulted and validated. source names the input in
// errors ("hello.yaml").
func Decode(data []byte, source string) ([]Object, error) {
	docs, err := split(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	var out []Object
	n := 0
	for _, d := range docs {
		obj, err := decodeDocument(d)
		if errors.Is(err, errEmpty) {
			continue
		}
		n++
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, n, err)
		}
		out = append(out, obj)
	}
	return out, nil
}

// document is one YAML or JSON document and the line of data it starts on.
type document struct {
	body  []byte
	line  int
	jsonS bool
}

var errEmpty = errors.New("empty document")

func split(data []byte) ([]document, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return splitJSON(data)
	}
	var docs []document
	start, startLine := 0, 1
	line := 1
	for pos := 0; pos < len(data); {
		end := bytes.IndexByte(data[pos:], '\n')
		next := len(data)
		if end >= 0 {
			next = pos + end + 1
		}
		text := strings.TrimRight(string(data[pos:next]), " \t\r\n")
		if text == "---" || strings.HasPrefix(text, "--- ") || strings.HasPrefix(text, "---\t") {
			docs = append(docs, document{body: data[start:pos], line: startLine})
			start, startLine = next, line+1
		}
		pos = next
		line++
	}
	docs = append(docs, document{body: data[start:], line: startLine})
	return docs, nil
}

// splitJSON splits a stream of JSON objects, the shape `kubectl get -o json` of several objects
// piped together has.
func splitJSON(data []byte) ([]document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var docs []document
	for {
		off := dec.InputOffset()
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return nil, fmt.Errorf("document %d: line %d: %w", len(docs)+1, lineAt(data, int(se.Offset)), err)
			}
			return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
		}
		start := int(off) + len(data[off:]) - len(bytes.TrimLeft(data[off:], " \t\r\n"))
		docs = append(docs, document{body: raw, line: lineAt(data, start), jsonS: true})
	}
}

func lineAt(data []byte, offset int) int {
	if offset > len(data) {
		offset = len(data)
	}
	return bytes.Count(data[:offset], []byte("\n")) + 1
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// yamlError makes a YAML parser error point at the line of the whole input rather than of the
// document, and fits it on one line.
func yamlError(err error, firstLine int) error {
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	msg = yamlLine.ReplaceAllStringFunc(msg, func(m string) string {
		n, _ := strconv.Atoi(strings.TrimPrefix(m, "line "))
		return "line " + strconv.Itoa(n+firstLine-1)
	})
	msg = strings.Join(strings.Fields(msg), " ")
	return errors.New(msg)
}

func decodeDocument(d document) (Object, error) {
	j := d.body
	if !d.jsonS {
		var err error
		j, err = yaml.YAMLToJSONStrict(d.body)
		if err != nil {
			return nil, yamlError(err, d.line)
		}
	}
	if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
		return nil, errEmpty
	}
	var m map[string]any
	// Strict here too: decoding into a map keeps the last of duplicate keys silently, and the
	// object is decoded from the map. YAML duplicates were refused already by YAMLToJSONStrict.
	dups, err := kjson.UnmarshalStrict(j, &m, kjson.DisallowDuplicateFields)
	if err != nil {
		return nil, fmt.Errorf("line %d: not an object: %w", d.line, err)
	}
	apiVersion, _ := m["apiVersion"].(string)
	kind, _ := m["kind"].(string)
	var obj Object
	switch kind {
	case KindService:
		obj = &Service{}
	case KindConfiguration:
		obj = &Configuration{}
	case KindRoute:
		obj = &Route{}
	case KindRevision:
		obj = &Revision{}
	default:
		return nil, fmt.Errorf("line %d: kind %q is not supported: sluice accepts %s, %s, %s and %s of %s",
			d.line, kind, KindService, KindConfiguration, KindRoute, KindRevision, APIVersion)
	}
	meta, _ := m["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	ns, _ := meta["namespace"].(string)
	if ns == "" {
		ns = DefaultNamespace
	}
	what := kind + " " + ns + "/" + name
	if apiVersion != APIVersion {
		return nil, fmt.Errorf("%s: apiVersion %q is not supported: sluice accepts %s", what, apiVersion, APIVersion)
	}
	if len(dups) > 0 {
		msgs := make([]string, len(dups))
		for i, e := range dups {
			msgs[i] = e.Error()
		}
		return nil, fmt.Errorf("%s: %s", what, strings.Join(msgs, "; "))
	}
	// Status is sluice's to write; dropping it lets `get -o yaml` output be applied back.
	delete(m, "status")
	j, err = json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, cleanJSONError(err))
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return nil, fmt.Errorf("%s: %s", what, strings.Join(msgs, "; "))
	}
	SetDefaults(obj)
	if err := Validate(obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// cleanJSONError turns "json: cannot unmarshal string into Go struct field
// Service.spec.template.spec.timeoutSeconds of type int64" into a message about the field.
func cleanJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Errorf("%s: cannot use a %s here, want %s", te.Field, te.Value, te.Type)
	}
	return err
}
