package scimserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	scimerr "github.com/elimity-com/scim/errors"
	fp "github.com/scim2/filter-parser/v2"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

func invalidFilter(format string, args ...any) error {
	return scimerr.ScimError{ScimType: scimerr.ScimTypeInvalidFilter, Status: 400, Detail: fmt.Sprintf(format, args...)}
}

// parseFilter bounds, parses and validates a ?filter= against the resource's schema. The bounds
// are checked on the raw text first: the parser recurses once per nesting level.
func (s *Server) parseFilter(kind state.Kind, f string) (fp.Expression, error) {
	if err := s.cfg.checkFilter("filter", f); err != nil {
		return nil, err
	}
	e, err := fp.ParseFilter([]byte(rewriteFilter(f)))
	if err != nil {
		return nil, invalidFilter("filter %q does not parse: %v", truncate(f, 200), err)
	}
	if err := validateFilter(s.idx[kind], e, nil); err != nil {
		return nil, err
	}
	return e, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// validateFilter checks that every attribute a filter names exists and may be filtered on;
// inside a value path (parent set) names are sub-attributes of the parent.
func validateFilter(idx scim.Index, e fp.Expression, parent *scim.Attribute) error {
	switch e := e.(type) {
	case *fp.LogicalExpression:
		if err := validateFilter(idx, e.Left, parent); err != nil {
			return err
		}
		return validateFilter(idx, e.Right, parent)
	case *fp.NotExpression:
		return validateFilter(idx, e.Expression, parent)
	case *fp.ValuePath:
		if parent != nil {
			return invalidFilter("value paths do not nest")
		}
		info, err := filterAttribute(idx, e.AttributePath)
		if err != nil {
			return err
		}
		if info.Subs == nil {
			return invalidFilter("%q has no sub-attributes to filter on in [ ]", e.AttributePath.String())
		}
		return validateFilter(idx, e.ValueFilter, &info)
	case *fp.AttributeExpression:
		if parent != nil {
			sub, ok := parent.Subs[strings.ToLower(e.AttributePath.AttributeName)]
			if !ok || e.AttributePath.SubAttribute != nil || e.AttributePath.URIPrefix != nil {
				return invalidFilter("%q is not a sub-attribute of %q", e.AttributePath.String(), parent.Name)
			}
			if sub.Returned == "never" {
				return invalidFilter("%s.%s cannot be filtered on (it is never returned)", parent.Name, sub.Name)
			}
			return nil
		}
		_, err := filterAttribute(idx, e.AttributePath)
		return err
	}
	return invalidFilter("unsupported filter expression %T", e)
}

func filterAttribute(idx scim.Index, p fp.AttributePath) (scim.Attribute, error) {
	uri := p.URI()
	core := uri == "" || scim.IsCoreURN(strings.ToLower(uri))
	if core && strings.EqualFold(p.AttributeName, "id") && p.SubAttribute == nil {
		return scim.Attribute{Name: "id", Type: "string", CaseExact: true}, nil
	}
	if core && strings.EqualFold(p.AttributeName, "meta") {
		switch strings.ToLower(p.SubAttributeName()) {
		case "created", "lastmodified", "version":
			return scim.Attribute{Name: "meta"}, nil
		}
		return scim.Attribute{}, invalidFilter("meta.%s cannot be filtered on (use created, lastModified or version)", p.SubAttributeName())
	}
	_, info, ok := idx.Lookup(uri, p.AttributeName)
	if !ok {
		return scim.Attribute{}, invalidFilter("unknown attribute %q", p.String())
	}
	if info.Returned == "never" {
		// password: returned never, so a filter could only be used to probe it
		return scim.Attribute{}, invalidFilter("%s cannot be filtered on (it is never returned)", info.Name)
	}
	if sub := p.SubAttributeName(); sub != "" {
		si, ok := info.Subs[strings.ToLower(sub)]
		if !ok {
			return scim.Attribute{}, invalidFilter("unknown sub-attribute %q of %q", sub, info.Name)
		}
		if si.Returned == "never" {
			return scim.Attribute{}, invalidFilter("%s.%s cannot be filtered on (it is never returned)", info.Name, si.Name)
		}
	}
	return info, nil
}

// predicate decides whether one record matches a filter.
type predicate func(r *record) bool

// compileFast turns a filter over the precomputed ("hot") values into a predicate; ok is false
// when the filter reads anything else, and the slow path decodes each resource instead. Both
// paths share scim.CompareOne, and a test cross-checks them.
func compileFast(kind state.Kind, e fp.Expression) (predicate, bool) {
	switch e := e.(type) {
	case *fp.LogicalExpression:
		l, ok1 := compileFast(kind, e.Left)
		r, ok2 := compileFast(kind, e.Right)
		if !ok1 || !ok2 {
			return nil, false
		}
		if e.Operator == fp.AND {
			return func(x *record) bool { return l(x) && r(x) }, true
		}
		return func(x *record) bool { return l(x) || r(x) }, true
	case *fp.NotExpression:
		in, ok := compileFast(kind, e.Expression)
		if !ok {
			return nil, false
		}
		return func(x *record) bool { return !in(x) }, true
	case *fp.ValuePath:
		return compileFastValuePath(kind, e)
	case *fp.AttributeExpression:
		return compileFastAttr(kind, e)
	}
	return nil, false
}

// fastLiteral is a filter literal prepared for comparison with a folded (fold) or exact value.
func fastLiteral(lit any, fold bool) (any, bool) {
	if !fold {
		return lit, true
	}
	var s string
	switch v := lit.(type) {
	case string:
		s = v
	case nil:
		return nil, false
	default:
		s = fmt.Sprint(v)
	}
	if s == "" {
		return nil, false // hot values cannot tell "" from absent
	}
	return scim.FoldKey(s), true
}

// matchStrings applies op over the values of one attribute with the filter's set semantics
// (any value for most operators, none for ne, a non-empty one for pr).
func matchStrings(op fp.CompareOperator, lit any, vals ...string) bool {
	switch op {
	case fp.PR:
		for _, v := range vals {
			if v != "" {
				return true
			}
		}
		return false
	case fp.NE:
		for _, v := range vals {
			if v != "" && scim.CompareOne(fp.EQ, v, lit, true) {
				return false
			}
		}
		return true
	}
	for _, v := range vals {
		if v != "" && scim.CompareOne(op, v, lit, true) {
			return true
		}
	}
	return false
}

func compileFastAttr(kind state.Kind, e *fp.AttributeExpression) (predicate, bool) {
	p := e.AttributePath
	uri := p.URI()
	if uri != "" && !scim.IsCoreURN(strings.ToLower(uri)) {
		return nil, false
	}
	name, sub := strings.ToLower(p.AttributeName), strings.ToLower(p.SubAttributeName())
	op := e.Operator
	str := func(fold bool, get func(r *record) string) (predicate, bool) {
		lit, ok := fastLiteral(e.CompareValue, fold)
		if !ok && op != fp.PR {
			return nil, false
		}
		return func(r *record) bool { return matchStrings(op, lit, get(r)) }, true
	}
	switch {
	case name == "id" && sub == "":
		return str(false, func(r *record) string { return r.id })
	case name == "externalid" && sub == "":
		return str(false, func(r *record) string { return r.hot.extID })
	case name == "meta" && (sub == "created" || sub == "lastmodified"):
		return func(r *record) bool {
			t := r.created
			if sub == "lastmodified" {
				t = r.modified
			}
			switch op {
			case fp.PR:
				return true
			case fp.NE:
				return !scim.CompareOne(fp.EQ, t, e.CompareValue, true)
			}
			return scim.CompareOne(op, t, e.CompareValue, true)
		}, true
	}
	if kind == state.KindGroup {
		if name == "displayname" && sub == "" {
			return str(true, func(r *record) string { return r.hot.name })
		}
		if name == "members" && (sub == "" || sub == "value") {
			lit, ok := fastLiteral(e.CompareValue, true)
			if !ok {
				return nil, false
			}
			if s, isStr := lit.(string); isStr && op == fp.EQ {
				return func(r *record) bool { return hasMember(r.members, s) }, true
			}
			return func(r *record) bool {
				vals := make([]string, len(r.members))
				for i, m := range r.members {
					vals[i] = m.value
				}
				return matchStrings(op, lit, vals...)
			}, true
		}
		return nil, false
	}
	switch {
	case name == "username" && sub == "":
		return str(true, func(r *record) string { return r.hot.name })
	case name == "displayname" && sub == "":
		return str(true, func(r *record) string { return r.hot.display })
	case name == "name" && sub == "givenname":
		return str(true, func(r *record) string { return r.hot.given })
	case name == "name" && sub == "familyname":
		return str(true, func(r *record) string { return r.hot.family })
	case name == "emails" && (sub == "" || sub == "value" || sub == "type"):
		lit, ok := fastLiteral(e.CompareValue, true)
		if !ok && op != fp.PR {
			return nil, false
		}
		return func(r *record) bool {
			vals := make([]string, len(r.hot.emails))
			for i, m := range r.hot.emails {
				vals[i] = m.value
				if sub == "type" {
					vals[i] = m.typ
				}
			}
			return matchStrings(op, lit, vals...)
		}, true
	case name == "active" && sub == "":
		return func(r *record) bool {
			switch op {
			case fp.PR:
				return r.hot.active >= 0
			case fp.NE:
				return r.hot.active < 0 || !scim.CompareOne(fp.EQ, r.hot.active == 1, e.CompareValue, true)
			}
			return r.hot.active >= 0 && scim.CompareOne(op, r.hot.active == 1, e.CompareValue, true)
		}, true
	}
	return nil, false
}

// compileFastValuePath handles emails[...] on users and members[...] on groups when the inner
// filter reads only value and type (emails) or value (members).
func compileFastValuePath(kind state.Kind, vp *fp.ValuePath) (predicate, bool) {
	p := vp.AttributePath
	if uri := p.URI(); uri != "" && !scim.IsCoreURN(strings.ToLower(uri)) {
		return nil, false
	}
	name := strings.ToLower(p.AttributeName)
	switch {
	case kind == state.KindUser && name == "emails":
		in, ok := compileElement(vp.ValueFilter, map[string]bool{"value": true, "type": true})
		if !ok {
			return nil, false
		}
		return func(r *record) bool {
			for _, e := range r.hot.emails {
				if in(map[string]string{"value": e.value, "type": e.typ}) {
					return true
				}
			}
			return false
		}, true
	case kind == state.KindGroup && name == "members":
		in, ok := compileElement(vp.ValueFilter, map[string]bool{"value": true})
		if !ok {
			return nil, false
		}
		if ae, isAttr := vp.ValueFilter.(*fp.AttributeExpression); isAttr && ae.Operator == fp.EQ {
			if v, isStr := ae.CompareValue.(string); isStr && v != "" {
				key := scim.FoldKey(v)
				return func(r *record) bool { return hasMember(r.members, key) }, true
			}
		}
		return func(r *record) bool {
			for _, m := range r.members {
				if in(map[string]string{"value": m.value}) {
					return true
				}
			}
			return false
		}, true
	}
	return nil, false
}

// compileElement compiles a value filter over one element's sub-attributes (folded values for
// emails, exact member ids); allowed lists the sub-attributes the hot data has.
func compileElement(e fp.Expression, allowed map[string]bool) (func(el map[string]string) bool, bool) {
	switch e := e.(type) {
	case *fp.LogicalExpression:
		l, ok1 := compileElement(e.Left, allowed)
		r, ok2 := compileElement(e.Right, allowed)
		if !ok1 || !ok2 {
			return nil, false
		}
		if e.Operator == fp.AND {
			return func(el map[string]string) bool { return l(el) && r(el) }, true
		}
		return func(el map[string]string) bool { return l(el) || r(el) }, true
	case *fp.NotExpression:
		in, ok := compileElement(e.Expression, allowed)
		if !ok {
			return nil, false
		}
		return func(el map[string]string) bool { return !in(el) }, true
	case *fp.AttributeExpression:
		name := strings.ToLower(e.AttributePath.AttributeName)
		if !allowed[name] || e.AttributePath.SubAttribute != nil {
			return nil, false
		}
		// inside a value path the shared Matcher compares case-insensitively; member ids are
		// generated in lower case, so folding the literal is all they need
		lit, ok := fastLiteral(e.CompareValue, true)
		if !ok && e.Operator != fp.PR {
			return nil, false
		}
		op := e.Operator
		return func(el map[string]string) bool { return matchStrings(op, lit, el[name]) }, true
	}
	return nil, false
}

// decodeAttrs is the slow path's view of a record: its attributes as a map (members included
// for a group), as the shared Matcher and Patcher read them.
func decodeAttrs(r *record) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(r.attrs))
	dec.UseNumber() // elimity's integer validation wants json.Number, not float64
	var attrs map[string]any
	if err := dec.Decode(&attrs); err != nil {
		return nil, fmt.Errorf("scim: decode %s: %w", r.id, err)
	}
	if attrs == nil {
		attrs = map[string]any{}
	}
	if r.members != nil {
		list := make([]any, len(r.members))
		for i, m := range r.members {
			el := map[string]any{"value": m.value}
			if m.display != "" {
				el["display"] = m.display
			}
			if m.typ != "" {
				el["type"] = m.typ
			}
			list[i] = el
		}
		attrs["members"] = list
	}
	return attrs, nil
}

// slowMatch evaluates e on a decoded record with the shared Matcher.
func (s *Server) slowMatch(kind state.Kind, e fp.Expression, r *record) bool {
	attrs, err := decodeAttrs(r)
	if err != nil {
		return false
	}
	return scim.Matcher{Index: s.idx[kind]}.Match(e, attrs, r.meta())
}
