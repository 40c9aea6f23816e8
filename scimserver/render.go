package scimserver

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

// projection is a request's attributes= / excludedAttributes= (RFC 7644 §3.9).
type projection struct {
	include, exclude []string
}

func (p projection) empty() bool { return len(p.include) == 0 && len(p.exclude) == 0 }

func projectionOf(q url.Values) projection {
	return projection{include: splitList(q.Get("attributes")), exclude: splitList(q.Get("excludedAttributes"))}
}

// wants reports whether the whole attribute name (members, groups) is returned, and which of
// its sub-attributes when only some are named.
func (p projection) wants(name string) (bool, map[string]bool) {
	var subs map[string]bool
	if len(p.include) > 0 {
		found := false
		for _, a := range p.include {
			_, n, sub := splitAttrPath(a)
			if strings.EqualFold(n, name) {
				found = true
				if sub == "" {
					subs = nil
					break
				}
				if subs == nil {
					subs = map[string]bool{}
				}
				subs[strings.ToLower(sub)] = true
			}
		}
		if !found {
			return false, nil
		}
	}
	for _, a := range p.exclude {
		_, n, sub := splitAttrPath(a)
		if strings.EqualFold(n, name) {
			if sub == "" {
				return false, nil
			}
			if subs == nil {
				subs = map[string]bool{"value": true, "display": true, "type": true, "$ref": true}
			}
			delete(subs, strings.ToLower(sub))
		}
	}
	return true, subs
}

// appendResource writes r as a SCIM resource: id, schemas and meta always, the stored
// attributes spliced in as they are (no decode unless the request projects them), then the
// computed groups[] of a user or the members of a group.
func (s *Server) appendResource(buf *bytes.Buffer, kind state.Kind, r *record, proj projection) {
	attrs := r.attrs
	if !proj.empty() {
		if m, err := decodeAttrs(&record{attrs: r.attrs}); err == nil {
			m = project(m, s.idx[kind], proj.include, proj.exclude)
			if raw, err := json.Marshal(m); err == nil {
				attrs = raw
			}
		}
	}
	typ, endpoint := "User", "/Users/"
	if kind == state.KindGroup {
		typ, endpoint = "Group", "/Groups/"
	}
	buf.WriteString(`{"schemas":[`)
	for i, u := range schemasOf(kind, attrs) {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(strconv.AppendQuote(nil, u))
	}
	buf.WriteString(`],"id":`)
	buf.Write(strconv.AppendQuote(nil, r.id))
	if inner := bytes.TrimSpace(attrs); len(inner) > 2 {
		buf.WriteByte(',')
		buf.Write(inner[1 : len(inner)-1])
	}
	if kind == state.KindUser {
		if ok, _ := proj.wants("groups"); ok {
			if gs := s.store.groupsOf(r.id); len(gs) > 0 {
				buf.WriteString(`,"groups":[`)
				for i, g := range gs {
					if i > 0 {
						buf.WriteByte(',')
					}
					buf.WriteString(`{"value":`)
					buf.Write(strconv.AppendQuote(nil, g.id))
					buf.WriteString(`,"display":`)
					buf.Write(strconv.AppendQuote(nil, g.display))
					buf.WriteString(`,"$ref":`)
					buf.Write(strconv.AppendQuote(nil, s.base+"/Groups/"+url.PathEscape(g.id)))
					buf.WriteString(`,"type":"direct"}`)
				}
				buf.WriteByte(']')
			}
		}
	} else if ok, subs := proj.wants("members"); ok && r.members != nil {
		buf.WriteString(`,"members":[`)
		for i, m := range r.members {
			if i > 0 {
				buf.WriteByte(',')
			}
			appendMember(buf, m, subs)
		}
		buf.WriteByte(']')
	}
	buf.WriteString(`,"meta":{"resourceType":"`)
	buf.WriteString(typ)
	buf.WriteString(`","created":"`)
	buf.WriteString(r.created.UTC().Format(time.RFC3339))
	buf.WriteString(`","lastModified":"`)
	buf.WriteString(r.modified.UTC().Format(time.RFC3339))
	buf.WriteString(`","location":`)
	buf.Write(strconv.AppendQuote(nil, s.base+endpoint+url.PathEscape(r.id)))
	buf.WriteString(`,"version":`)
	buf.Write(strconv.AppendQuote(nil, r.etag()))
	buf.WriteString(`}}`)
}

func appendMember(buf *bytes.Buffer, m member, subs map[string]bool) {
	buf.WriteByte('{')
	first := true
	field := func(k, v string) {
		if v == "" || (subs != nil && !subs[strings.ToLower(k)]) {
			return
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		buf.Write(strconv.AppendQuote(nil, k))
		buf.WriteByte(':')
		buf.Write(strconv.AppendQuote(nil, v))
	}
	field("value", m.value)
	field("display", m.display)
	field("type", m.typ)
	buf.WriteByte('}')
}

// schemasOf lists the core schema and the extensions the resource has data for.
func schemasOf(kind state.Kind, attrs []byte) []string {
	if kind == state.KindGroup {
		return []string{scim.GroupSchema}
	}
	out := []string{scim.UserSchema}
	for _, ext := range []string{scim.EnterpriseSchema, scim.ScimsyncSchema} {
		if bytes.Contains(attrs, []byte(`"`+ext+`":`)) {
			out = append(out, ext)
		}
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// project applies RFC 7644 §3.9 to the stored attributes. id, schemas and meta are always
// returned; groups and members are handled by appendResource.
func project(attrs map[string]any, idx scim.Index, include, exclude []string) map[string]any {
	if len(include) > 0 {
		out := map[string]any{}
		for _, p := range include {
			uri, name, sub := splitAttrPath(p)
			ext, info, ok := idx.Lookup(uri, name)
			if !ok {
				continue
			}
			src, dst := attrs, out
			if ext != "" {
				src, _ = attrs[ext].(map[string]any)
				d, _ := out[ext].(map[string]any)
				if d == nil {
					d = map[string]any{}
					out[ext] = d
				}
				dst = d
			}
			v, ok := src[info.Name]
			if !ok {
				continue
			}
			if sub == "" {
				dst[info.Name] = v
				continue
			}
			dst[info.Name] = pickSub(v, dst[info.Name], info, sub)
		}
		for k, v := range out {
			if m, ok := v.(map[string]any); ok && len(m) == 0 && strings.HasPrefix(k, "urn:") {
				delete(out, k)
			}
		}
		attrs = out
	}
	for _, p := range exclude {
		uri, name, sub := splitAttrPath(p)
		ext, info, ok := idx.Lookup(uri, name)
		if !ok {
			continue
		}
		target := attrs
		if ext != "" {
			e, _ := attrs[ext].(map[string]any)
			if e == nil {
				continue
			}
			e = maps.Clone(e)
			attrs[ext] = e
			target = e
		}
		if sub == "" {
			delete(target, info.Name)
			continue
		}
		switch v := target[info.Name].(type) {
		case map[string]any:
			v = maps.Clone(v)
			for k := range v {
				if strings.EqualFold(k, sub) {
					delete(v, k)
				}
			}
			target[info.Name] = v
		case []any:
			list := make([]any, len(v))
			for i, el := range v {
				if m, ok := el.(map[string]any); ok {
					m = maps.Clone(m)
					for k := range m {
						if strings.EqualFold(k, sub) {
							delete(m, k)
						}
					}
					el = m
				}
				list[i] = el
			}
			target[info.Name] = list
		}
	}
	return attrs
}

// pickSub keeps only sub of v (an object, or each element of a list), merged into prev.
func pickSub(v, prev any, info scim.Attribute, sub string) any {
	si, ok := info.Subs[strings.ToLower(sub)]
	if !ok {
		return prev
	}
	switch v := v.(type) {
	case map[string]any:
		out, _ := prev.(map[string]any)
		if out == nil {
			out = map[string]any{}
		}
		if x, ok := v[si.Name]; ok {
			out[si.Name] = x
		}
		return out
	case []any:
		out := make([]any, len(v))
		prevList, _ := prev.([]any)
		for i, el := range v {
			m := map[string]any{}
			if i < len(prevList) {
				if pm, ok := prevList[i].(map[string]any); ok {
					m = pm
				}
			}
			if em, ok := el.(map[string]any); ok {
				if x, ok := em[si.Name]; ok {
					m[si.Name] = x
				}
			}
			out[i] = m
		}
		return out
	}
	return prev
}

// splitAttrPath splits "urn:…:User:name.givenName" into its URN, attribute and sub-attribute.
func splitAttrPath(p string) (uri, name, sub string) {
	if strings.HasPrefix(strings.ToLower(p), "urn:") {
		i := strings.LastIndex(p, ":")
		uri, p = p[:i], p[i+1:]
	}
	name, sub, _ = strings.Cut(p, ".")
	return uri, name, sub
}
