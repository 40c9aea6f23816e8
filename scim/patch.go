package scim

import (
	"fmt"
	"strings"

	scimerr "github.com/elimity-com/scim/errors"
	fp "github.com/scim2/filter-parser/v2"
)

// PATCH operation names, lower-case as elimity normalises them.
const (
	OpAdd     = "add"
	OpRemove  = "remove"
	OpReplace = "replace"
)

// Operation is one parsed RFC 7644 PATCH operation.
type Operation struct {
	Op    string   // add, remove or replace, lower-case
	Path  *fp.Path // nil: Value is an object keyed by attribute paths
	Value any
}

// Patcher applies RFC 7644 §3.5.2 operations. elimity validates and normalises PATCH bodies
// but never applies them, so this is scimsync's PATCH semantics, including what IdPs send:
// capitalised ops (lower-cased by elimity), no-path values keyed by dotted or URN-prefixed
// paths, value-filter paths, and Entra's "remove members with a value list".
type Patcher struct {
	Index Index
}

// InvalidPath is the 400 invalidPath error.
func InvalidPath(format string, args ...any) error {
	return scimerr.ScimError{ScimType: scimerr.ScimTypeInvalidPath, Status: 400, Detail: fmt.Sprintf(format, args...)}
}

// InvalidValue is the 400 invalidValue error.
func InvalidValue(format string, args ...any) error {
	return scimerr.ScimError{ScimType: scimerr.ScimTypeInvalidValue, Status: 400, Detail: fmt.Sprintf(format, args...)}
}

// Apply runs ops on attrs in place. Callers pass a deep copy: a failing op leaves the stored
// resource untouched.
func (p Patcher) Apply(attrs map[string]any, ops []Operation) error {
	for i, op := range ops {
		kind := strings.ToLower(op.Op)
		if op.Path != nil {
			if err := p.applyPath(attrs, kind, *op.Path, op.Value); err != nil {
				return err
			}
			continue
		}
		obj, ok := op.Value.(map[string]any)
		if !ok {
			return InvalidValue("operation %d: without a path the value must be an object", i)
		}
		for key, v := range obj {
			if sub, isObj := v.(map[string]any); isObj && p.Index.IsExtension(key) {
				// a whole extension object: {"urn:…:enterprise:2.0:User": {"department": "x"}}
				for sk, sv := range sub {
					path := fp.Path{AttributePath: fp.AttributePath{URIPrefix: &key, AttributeName: sk}}
					if err := p.applyPath(attrs, kind, path, sv); err != nil {
						return err
					}
				}
				continue
			}
			path, err := fp.ParsePath([]byte(key))
			if err != nil {
				return InvalidPath("operation %d: path %q: %v", i, key, err)
			}
			if err := p.applyPath(attrs, kind, path, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p Patcher) applyPath(attrs map[string]any, op string, path fp.Path, value any) error {
	ap := path.AttributePath
	ext, info, ok := p.Index.Lookup(ap.URI(), ap.AttributeName)
	if !ok {
		return InvalidPath("unknown attribute %q", pathString(path))
	}
	if info.Name == "id" || info.Name == "meta" || info.Name == "groups" {
		return scimerr.ScimError{ScimType: scimerr.ScimTypeMutability, Status: 400,
			Detail: fmt.Sprintf("attribute %q is read-only", info.Name)}
	}
	container := attrs
	if ext != "" {
		sub, _ := attrs[ext].(map[string]any)
		if sub == nil {
			if op == OpRemove {
				return nil
			}
			sub = map[string]any{}
			attrs[ext] = sub
		}
		container = sub
	}
	subName := ap.SubAttributeName()
	if path.SubAttribute != nil {
		subName = *path.SubAttribute
	}
	if subName != "" {
		si, ok := info.Subs[strings.ToLower(subName)]
		if !ok {
			return InvalidPath("unknown sub-attribute %q of %q", subName, info.Name)
		}
		subName = si.Name
	}
	name := info.Name
	if path.ValueExpression != nil {
		return p.applyFiltered(container, op, name, info, path.ValueExpression, subName, value)
	}
	if subName != "" {
		return applySub(container, op, name, info, subName, value)
	}
	switch op {
	case OpRemove:
		if list, isList := value.([]any); isList && info.Multi && len(list) > 0 {
			// Entra: {"op":"Remove","path":"members","value":[{"value":"id"}]} removes those members only
			drop := map[string]bool{}
			for _, v := range list {
				if mm, ok := v.(map[string]any); ok {
					if id, ok := mm["value"].(string); ok {
						drop[id] = true
					}
				}
			}
			container[name] = WithoutMembers(container[name], drop)
			return nil
		}
		delete(container, name)
	case OpAdd:
		switch {
		case info.Multi:
			container[name] = appendUnique(AsList(container[name]), AsList(value))
		case info.Subs != nil:
			container[name] = mergeObject(container[name], value)
		default:
			container[name] = value
		}
	case OpReplace:
		switch {
		case info.Multi:
			container[name] = AsList(value)
		case info.Subs != nil:
			container[name] = mergeObject(container[name], value)
		default:
			container[name] = value
		}
	default:
		return InvalidValue("unknown operation %q", op)
	}
	return nil
}

func applySub(container map[string]any, op, name string, info Attribute, sub string, value any) error {
	if info.Multi {
		// emails.value without a filter targets every element
		for _, el := range AsList(container[name]) {
			if mm, ok := el.(map[string]any); ok {
				if op == OpRemove {
					delete(mm, sub)
				} else {
					mm[sub] = value
				}
			}
		}
		return nil
	}
	obj, _ := container[name].(map[string]any)
	if op == OpRemove {
		if obj != nil {
			delete(obj, sub)
			if len(obj) == 0 {
				delete(container, name)
			}
		}
		return nil
	}
	if obj == nil {
		obj = map[string]any{}
		container[name] = obj
	}
	obj[sub] = value
	return nil
}

func (p Patcher) applyFiltered(container map[string]any, op, name string, info Attribute, filter fp.Expression, sub string, value any) error {
	if !info.Multi {
		return InvalidPath("attribute %q is not multi-valued; a value filter does not apply", name)
	}
	m := Matcher(p)
	list := AsList(container[name])
	var matched []int
	for i, el := range list {
		if mm, ok := el.(map[string]any); ok && m.eval(filter, mm, nil, false) {
			matched = append(matched, i)
		}
	}
	if op == OpRemove {
		if sub == "" {
			keep := list[:0:0]
			for i, el := range list {
				if !contains(matched, i) {
					keep = append(keep, el)
				}
			}
			container[name] = keep
			return nil
		}
		for _, i := range matched {
			delete(list[i].(map[string]any), sub)
		}
		return nil
	}
	// elimity wraps a single value in a slice when the path has a value filter; unwrap it
	if l, ok := value.([]any); ok && len(l) == 1 {
		value = l[0]
	}
	if len(matched) == 0 {
		// `replace emails[type eq "work"].value` on a user without a work email: IdPs expect the
		// element to be created from the filter's equalities, as Entra and Okta both rely on.
		seed, ok := equalities(filter)
		if !ok {
			return scimerr.ScimError{ScimType: scimerr.ScimTypeNoTarget, Status: 400,
				Detail: fmt.Sprintf("no %s element matches the filter", name)}
		}
		el := map[string]any(seed)
		if sub != "" {
			el[sub] = value
		} else if mm, ok := value.(map[string]any); ok {
			for k, v := range mm {
				el[k] = v
			}
		}
		container[name] = append(list, el)
		return nil
	}
	for _, i := range matched {
		switch {
		case sub != "":
			list[i].(map[string]any)[sub] = value
		case op == OpAdd:
			list[i] = mergeObject(list[i], value)
		default:
			if mm, ok := value.(map[string]any); ok {
				list[i] = mm
			}
		}
	}
	container[name] = list
	return nil
}

// equalities turns `a eq "x" and b eq "y"` into {a: x, b: y}; anything else is not a seed.
func equalities(e fp.Expression) (map[string]any, bool) {
	switch e := e.(type) {
	case *fp.AttributeExpression:
		if e.Operator != fp.EQ || e.AttributePath.SubAttribute != nil {
			return nil, false
		}
		return map[string]any{e.AttributePath.AttributeName: e.CompareValue}, true
	case *fp.LogicalExpression:
		if e.Operator != fp.AND {
			return nil, false
		}
		l, ok1 := equalities(e.Left)
		r, ok2 := equalities(e.Right)
		if !ok1 || !ok2 {
			return nil, false
		}
		for k, v := range r {
			l[k] = v
		}
		return l, true
	}
	return nil, false
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// AsList returns a multi-valued attribute's elements as a fresh slice; a single value becomes
// one element.
func AsList(v any) []any {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		return append([]any(nil), v...)
	}
	return []any{v}
}

func appendUnique(list, add []any) []any {
	for _, a := range add {
		dup := false
		for _, l := range list {
			if sameElement(l, a) {
				dup = true
				break
			}
		}
		if !dup {
			list = append(list, a)
		}
	}
	return list
}

// sameElement compares elements of a multi-valued attribute by their "value" (members, emails)
// or, for plain values, by equality.
func sameElement(a, b any) bool {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		av, bv := am["value"], bm["value"]
		if av != nil || bv != nil {
			return fmt.Sprint(av) == fmt.Sprint(bv) && fmt.Sprint(am["type"]) == fmt.Sprint(bm["type"])
		}
	}
	return JSONEqual(a, b)
}

func mergeObject(cur, value any) any {
	add, ok := value.(map[string]any)
	if !ok {
		return value
	}
	out := map[string]any{}
	if c, ok := cur.(map[string]any); ok {
		for k, v := range c {
			out[k] = v
		}
	}
	for k, v := range add {
		out[k] = v
	}
	return out
}

func pathString(p fp.Path) string {
	s := p.AttributePath.String()
	if p.ValueExpression != nil {
		s += "[…]"
	}
	if p.SubAttribute != nil {
		s += "." + *p.SubAttribute
	}
	return s
}
