// Package config holds the mechanics every section of scimsync's one YAML file shares: strict
// decoding, secrets that never print, and problems that carry their key path and line. Each
// package owns the struct for its own section; this package only knows how files work.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/agnivade/levenshtein"
	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a config file, located by its key path (e.g. "ldap.url").
type Problem struct {
	Path string
	Line int // 0 when the key is absent from the file
	Msg  string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", p.Path, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.Path, p.Msg)
}

// Problems is every problem found while validating, so an administrator fixes them in one pass.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = "  " + p.String()
	}
	return fmt.Sprintf("config: %d problem(s):\n%s", len(ps), strings.Join(lines, "\n"))
}

// Add records a problem at path; the line is filled in later by File.Locate.
func (ps *Problems) Add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Merge appends others, prefixing their paths with prefix (a section name).
func (ps *Problems) Merge(prefix string, others Problems) {
	for _, p := range others {
		if prefix != "" {
			p.Path = prefix + "." + p.Path
		}
		*ps = append(*ps, p)
	}
}

// Err returns nil when there is no problem, so callers can `return ps.Err()`.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// File is a parsed YAML document that remembers where each key was.
type File struct {
	Name string
	data []byte
	root *yaml.Node
}

// Parse reads YAML from data. name is used in messages only.
func Parse(name string, data []byte) (*File, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	f := &File{Name: name, data: data, root: &doc}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		f.root = doc.Content[0]
	}
	return f, nil
}

// ReadFile parses the file at path.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Decode fills v strictly and reports every problem it can find in one pass, as Problems with
// key path and line: each unknown key (with the nearest known key as a suggestion) and each
// value of the wrong type. Fields that decoded keep their values, so a caller can go on to
// validate and report those problems too.
func (f *File) Decode(v any) error {
	var ps Problems
	t := reflect.TypeOf(v)
	if t != nil {
		unknownKeys(f.root, t, "", &ps)
	}
	dec := yaml.NewDecoder(bytes.NewReader(f.data))
	dec.KnownFields(true)
	err := dec.Decode(v)
	var te *yaml.TypeError
	switch {
	case err == nil, errors.Is(err, io.EOF):
	case errors.As(err, &te):
		lines := f.paths()
		for _, msg := range te.Errors {
			m := lineMsg.FindStringSubmatch(msg)
			if m == nil {
				ps = append(ps, Problem{Path: "(file)", Msg: msg})
				continue
			}
			if notFound.MatchString(m[2]) {
				continue // unknownKeys reported it, with a suggestion
			}
			line, _ := strconv.Atoi(m[1])
			path := lines[line]
			if path == "" {
				path = "(file)"
			}
			// the YAML library quotes the start of the value; where a secret belongs, the value
			// given is likely that secret misplaced
			ps = append(ps, Problem{Path: path, Line: line, Msg: reword(m[2], t == nil || holdsSecret(t, path))})
		}
	default:
		return fmt.Errorf("config: %s: %w", f.Name, err)
	}
	if len(ps) == 0 {
		return nil
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
	return ps
}

var (
	lineMsg    = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)
	notFound   = regexp.MustCompile(`^field \S+ not found in type \S+`)
	unmarshalX = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `([^`]*)`)? into (.+)$")
	quotedX    = regexp.MustCompile("`[^`]*`")
)

// reword turns the YAML library's Go-centric type errors into words an administrator reads;
// secret leaves out the start of the value the library quotes.
func reword(msg string, secret bool) string {
	m := unmarshalX.FindStringSubmatch(msg)
	if m == nil {
		if secret {
			return quotedX.ReplaceAllString(msg, "(value not shown)")
		}
		return msg
	}
	got := map[string]string{"str": "text", "int": "a number", "float": "a number", "bool": "true/false",
		"map": "a section", "seq": "a list", "null": "nothing", "timestamp": "a date"}[m[1]]
	if got == "" {
		got = m[1]
	}
	if m[2] != "" && !secret {
		got += fmt.Sprintf(" %q", m[2])
	}
	want := m[3]
	switch {
	case strings.HasPrefix(want, "[]"):
		want = "a list"
	case strings.HasPrefix(want, "map["), strings.Contains(want, "."):
		want = "a section (key: value lines)"
	case strings.HasPrefix(want, "int"), strings.HasPrefix(want, "uint"):
		want = "a whole number"
	case strings.HasPrefix(want, "float"):
		want = "a number"
	case want == "bool":
		want = "true or false"
	case want == "string":
		want = "text"
	}
	return fmt.Sprintf("want %s, got %s", want, got)
}

// paths maps each line of the file to the key path written on it, for problems the YAML
// library reports by line only.
func (f *File) paths() map[int]string {
	lines := map[int]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := joinPath(path, k.Value)
				lines[k.Line] = p
				if _, ok := lines[v.Line]; !ok {
					lines[v.Line] = p
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, item := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if _, ok := lines[item.Line]; !ok {
					lines[item.Line] = p
				}
				walk(item, p)
			}
		}
	}
	if f.root != nil {
		walk(f.root, "")
	}
	return lines
}

func joinPath(path, key string) string {
	if key == "" {
		key = `""` // an empty key still needs a visible name in a message
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// unknownKeys walks the document beside the Go type it decodes into and reports every key the
// type does not have, suggesting the nearest one that it does.
func unknownKeys(n *yaml.Node, t reflect.Type, path string, ps *Problems) {
	if n == nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return // a scalar with its own rules (Secret, Duration)
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // a type error the decoder reports
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				*ps = append(*ps, Problem{Path: joinPath(path, k.Value), Line: k.Line, Msg: unknownKeyMsg(k.Value, fields)})
				continue
			}
			unknownKeys(n.Content[i+1], ft, joinPath(path, k.Value), ps)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, item := range n.Content {
			unknownKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), ps)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			unknownKeys(n.Content[i+1], t.Elem(), joinPath(path, n.Content[i].Value), ps)
		}
	}
}

var secretType = reflect.TypeFor[Secret]()

// holdsSecret reports whether the value at path ("server.tokens[0]", as paths() writes it) in
// a document decoded into t is a Secret or holds one. A path t does not have counts as one.
func holdsSecret(t reflect.Type, path string) bool {
	if path == "(file)" {
		return true
	}
	for _, part := range splitPath(path) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			ft, ok := yamlFields(t)[part]
			if !ok {
				return true
			}
			t = ft
		case reflect.Slice, reflect.Array, reflect.Map:
			t = t.Elem()
		default:
			return true
		}
	}
	return containsSecret(t, map[reflect.Type]bool{})
}

func containsSecret(t reflect.Type, seen map[reflect.Type]bool) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == secretType {
		return true
	}
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Struct:
		for _, ft := range yamlFields(t) {
			if containsSecret(ft, seen) {
				return true
			}
		}
	case reflect.Slice, reflect.Array, reflect.Map:
		return containsSecret(t.Elem(), seen)
	}
	return false
}

// yamlFields lists the keys a struct accepts, the way the YAML library names them.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := sf.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range yamlFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		out[name] = sf.Type
	}
	return out
}

func unknownKeyMsg(key string, fields map[string]reflect.Type) string {
	known := make([]string, 0, len(fields))
	for k := range fields {
		known = append(known, k)
	}
	sort.Strings(known)
	if s := Suggest(key, known); s != "" {
		return fmt.Sprintf("unknown key %q (did you mean %q?)", key, s)
	}
	return fmt.Sprintf("unknown key %q (keys here: %s)", key, strings.Join(known, ", "))
}

// Suggest returns the candidate nearest to word when it is near enough to be a likely typo
// ("bind_pasword", "baseDN", "schedual"), or "" when none is.
func Suggest(word string, candidates []string) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
	}
	w := norm(word)
	best, bestD := "", 1<<30
	for _, c := range candidates {
		d := levenshtein.ComputeDistance(w, norm(c))
		if d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	if best == "" || bestD > max(1, len(w)/3) {
		return ""
	}
	return best
}

// Line returns the line of the key at path ("a.b[2].c"), or 0 when the key is absent.
func (f *File) Line(path string) int {
	n := f.root
	line := 0
	for _, part := range splitPath(path) {
		if n == nil {
			return line
		}
		if idx, err := strconv.Atoi(part); err == nil && n.Kind == yaml.SequenceNode {
			if idx < 0 || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
			continue
		}
		if n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				line = n.Content[i].Line
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			return line // nearest enclosing key: still points the reader at the right place
		}
		n = next
	}
	return line
}

func splitPath(path string) []string {
	path = strings.ReplaceAll(path, "[", ".")
	path = strings.ReplaceAll(path, "]", "")
	return strings.Split(path, ".")
}

// Locate fills in the line numbers not yet known and sorts problems by line so the report
// reads top to bottom.
func (f *File) Locate(ps Problems) Problems {
	out := make(Problems, len(ps))
	for i, p := range ps {
		if p.Line == 0 {
			p.Line = f.Line(p.Path)
		}
		out[i] = p
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}
