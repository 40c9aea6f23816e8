package scim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// AttrPath names one value of a resource that a client sets: a core or extension attribute,
// optionally a sub-attribute, and for a multi-valued attribute the element chosen by its type.
// It is the client's side of the model the server's Patcher applies: the sync reads a target's
// values, compares them and writes PATCH operations through it.
type AttrPath struct {
	Ext  string // extension schema URN; "" for a core attribute
	Attr string
	Sub  string // sub-attribute: name.givenName, or the value of a typed element
	Type string // element type of a multi-valued attribute: emails[type eq "work"]
	// Bool says the value travels as a JSON boolean (active); values are "true" or "false".
	Bool bool
	// Default is what an absent value reads as (active: "true").
	Default string
}

// String is the RFC 7644 attribute path, e.g. emails[type eq "work"].value or
// urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department.
func (p AttrPath) String() string {
	s := p.Attr
	switch {
	case p.Type != "":
		s = fmt.Sprintf("%s[type eq %s]", p.Attr, FilterString(p.Type))
		if p.Sub != "" {
			s += "." + p.Sub
		}
	case p.Sub != "":
		s += "." + p.Sub
	}
	if p.Ext != "" {
		s = p.Ext + ":" + s
	}
	return s
}

// FilterString quotes s as a string literal of a SCIM filter or PATCH value path, which is a
// JSON string (RFC 7644 §3.4.2.2): Go's %q and strconv.Quote write \x and \U escapes that no
// SCIM server reads, so an id or type with a control or non-BMP character would be refused.
func FilterString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes; invalid UTF-8 becomes U+FFFD
	return strings.TrimSuffix(b.String(), "\n")
}

// element is the path of the whole typed element (emails[type eq "work"]).
func (p AttrPath) element() AttrPath { return AttrPath{Ext: p.Ext, Attr: p.Attr, Type: p.Type} }

// parent is the path of the attribute itself, without sub-attribute or element.
func (p AttrPath) parent() AttrPath { return AttrPath{Ext: p.Ext, Attr: p.Attr} }

// container returns the object the attribute lives in: the resource, or its extension object.
func (p AttrPath) container(d Doc, create bool) map[string]any {
	if p.Ext == "" {
		return d
	}
	ext, _ := GetFold(d, p.Ext).(map[string]any)
	if ext == nil && create {
		ext = map[string]any{}
		d[p.Ext] = ext
	}
	return ext
}

// Read returns the value at p as a string for comparison, and whether the resource has it. An
// absent value reads as p.Default.
func (p AttrPath) Read(d Doc) (string, bool) {
	v, ok := p.read(d)
	if !ok {
		return p.Default, false
	}
	return v, true
}

func (p AttrPath) read(d Doc) (string, bool) {
	obj := p.container(d, false)
	if obj == nil {
		return "", false
	}
	v := GetFold(obj, p.Attr)
	switch {
	case p.Type != "":
		for _, el := range p.elements(v) {
			return scalar(GetFold(el, p.Sub))
		}
		return "", false
	case p.Sub != "":
		m, _ := v.(map[string]any)
		return scalar(GetFold(m, p.Sub))
	}
	return scalar(v)
}

// elements returns the elements of a multi-valued attribute whose type is p.Type.
func (p AttrPath) elements(v any) []map[string]any {
	var out []map[string]any
	list, _ := v.([]any)
	for _, el := range list {
		if m, ok := el.(map[string]any); ok && fmt.Sprint(GetFold(m, "type")) == p.Type {
			out = append(out, m)
		}
	}
	return out
}

func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", false
	case string:
		return v, v != ""
	case bool:
		return strconv.FormatBool(v), true
	case map[string]any, []any:
		return "", false
	}
	return fmt.Sprint(v), true
}

// value is v as it travels in JSON.
func (p AttrPath) value(v string) any {
	if p.Bool {
		return v == "true"
	}
	return v
}

// Set writes v at p, creating the extension object, the complex attribute or the typed element
// as needed. A new typed element is primary when it is the first of its attribute.
func (p AttrPath) Set(d Doc, v string) {
	obj := p.container(d, true)
	val := p.value(v)
	cur := GetFold(obj, p.Attr)
	switch {
	case p.Type != "":
		if els := p.elements(cur); len(els) > 0 {
			for _, el := range els {
				el[p.Sub] = val
			}
			return
		}
		list, _ := cur.([]any)
		el := map[string]any{"type": p.Type, p.Sub: val}
		if len(list) == 0 {
			el["primary"] = true
		}
		obj[p.Attr] = append(list, el)
	case p.Sub != "":
		m, _ := cur.(map[string]any)
		if m == nil {
			m = map[string]any{}
			obj[p.Attr] = m
		}
		m[p.Sub] = val
	default:
		obj[p.Attr] = val
	}
}
