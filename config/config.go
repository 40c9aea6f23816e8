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
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
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

// Decode fills v strictly: an unknown key is an error that names its line.
func (f *File) Decode(v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(f.data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %s: %s", f.Name, unknownField.ReplaceAllString(err.Error(), `unknown key "$1"`))
	}
	return nil
}

// unknownField rewords yaml.v3's Go-centric message for an administrator.
var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

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

// Locate fills in line numbers and sorts problems by line so the report reads top to bottom.
func (f *File) Locate(ps Problems) Problems {
	out := make(Problems, len(ps))
	for i, p := range ps {
		p.Line = f.Line(p.Path)
		out[i] = p
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}
