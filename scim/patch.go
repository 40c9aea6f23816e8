package scim

import (
	"encoding/json"
	"fmt"
	"maps"
	"sort"
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

// NoTarget is the 400 noTarget error: a path that selects nothing an operation can act on.
func NoTarget(format string, args ...any) error {
	return scimerr.ScimError{ScimType: scimerr.ScimTypeNoTarget, Status: 400, Detail: fmt.Sprintf(format, args...)}
}

// Mutability is the 400 mutability error: the operation would change a read-only attribute or
// unassign a required one.
func Mutability(format string, args ...any) error {
	return scimerr.ScimError{ScimType: scimerr.ScimTypeMutability, Status: 400, Detail: fmt.Sprintf(format, args...)}
}

// Apply runs ops on attrs in place. Callers pass a deep copy: a failing op leaves the stored
// resource untouched. Every operation costs time linear in the size of the attribute it
// touches plus the size of its value.
func (p Patcher) Apply(attrs map[string]any, ops []Operation) error {
	for i, op := range ops {
		if err := p.ApplyOp(attrs, op); err != nil {
			return OpError(i, err)
		}
	}
	return nil
}

// ApplyOp runs one operation on attrs in place, like Apply; its errors do not say which
// operation failed, for callers that number operations themselves (see OpError).
func (p Patcher) ApplyOp(attrs map[string]any, op Operation) error {
	kind := strings.ToLower(op.Op)
	switch kind {
	case OpAdd, OpRemove, OpReplace:
	default:
		return InvalidValue("unknown op %q (want add, remove or replace)", op.Op)
	}
	if op.Path != nil {
		return p.applyPath(attrs, kind, *op.Path, op.Value)
	}
	if kind == OpRemove {
		// RFC 7644 §3.5.2.2: remove without a path fails with noTarget
		return NoTarget("remove needs a path")
	}
	obj, ok := op.Value.(map[string]any)
	if !ok {
		return InvalidValue("without a path the value must be an object")
	}
	for _, key := range sortedKeys(obj) {
		v := obj[key]
		if sub, isObj := v.(map[string]any); isObj && p.Index.IsExtension(key) {
			// a whole extension object: {"urn:…:enterprise:2.0:User": {"department": "x"}}
			for _, sk := range sortedKeys(sub) {
				uri := key
				path := fp.Path{AttributePath: fp.AttributePath{URIPrefix: &uri, AttributeName: sk}}
				if err := p.applyPath(attrs, kind, path, sub[sk]); err != nil {
					return err
				}
			}
			continue
		}
		if strings.EqualFold(key, "schemas") || strings.EqualFold(key, "id") || strings.EqualFold(key, "meta") {
			// Okta echoes id and schemas in no-path values; they are not attributes to set
			continue
		}
		path, err := fp.ParsePath([]byte(key))
		if err != nil {
			return InvalidPath("path %q: %v", key, err)
		}
		if err := p.applyPath(attrs, kind, path, v); err != nil {
			return err
		}
	}
	return nil
}

// OpError prefixes a SCIM error's detail with the index of the operation that failed
// ("operation 3: …"), keeping its type; other errors are returned as they are.
func OpError(i int, err error) error {
	if se, ok := err.(scimerr.ScimError); ok {
		se.Detail = fmt.Sprintf("operation %d: %s", i, se.Detail)
		return se
	}
	return err
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (p Patcher) applyPath(attrs map[string]any, op string, path fp.Path, value any) error {
	ap := path.AttributePath
	ext, info, ok := p.Index.Lookup(ap.URI(), ap.AttributeName)
	if !ok {
		return InvalidPath("unknown attribute %q", pathString(path))
	}
	if info.Name == "id" || info.Name == "meta" || info.Mutability == "readOnly" {
		return Mutability("attribute %q is read-only", info.Name)
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
		if subName != "" {
			return InvalidPath("path %q names two sub-attributes", pathString(path))
		}
		subName = *path.SubAttribute
	}
	if subName != "" {
		si, ok := info.Subs[strings.ToLower(subName)]
		if !ok {
			return InvalidPath("unknown sub-attribute %q of %q", subName, info.Name)
		}
		if si.Mutability == "readOnly" {
			return Mutability("attribute %q.%q is read-only", info.Name, si.Name)
		}
		if op == OpRemove && si.Required && path.ValueExpression == nil && !info.Multi {
			return Mutability("attribute %q.%q is required", info.Name, si.Name)
		}
		subName = si.Name
	}
	name := info.Name
	value = shapeValue(info, subName, value)
	if path.ValueExpression != nil {
		return p.applyFiltered(container, op, name, info, path.ValueExpression, subName, value)
	}
	if subName != "" {
		return applySub(container, op, name, info, subName, value)
	}
	switch op {
	case OpRemove:
		if info.Required {
			// RFC 7644 §3.5.2.2: unassigning a required attribute is a mutability error
			return Mutability("attribute %q is required and cannot be removed", name)
		}
		if list, isList := value.([]any); isList && info.Multi && len(list) > 0 {
			// Entra: {"op":"Remove","path":"members","value":[{"value":"id"}]} removes those values only
			container[name] = withoutValues(container[name], list)
			if len(AsList(container[name])) == 0 {
				delete(container, name)
			}
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
			container[name] = uniqueList(AsList(value))
		case info.Subs != nil:
			container[name] = mergeObject(container[name], value)
		default:
			container[name] = value
		}
	}
	return nil
}

// shapeValue accepts the shapes IdPs send for a complex singular attribute that has a "value"
// sub-attribute: Entra sends the enterprise manager as a plain id string
// ({"op":"add","path":"urn:…:enterprise:2.0:User:manager","value":"<id>"}), RFC 7643 defines
// it as {"value": "<id>", …}.
func shapeValue(info Attribute, sub string, value any) any {
	if sub != "" || info.Multi || info.Subs == nil {
		return value
	}
	if _, hasValue := info.Subs["value"]; !hasValue {
		return value
	}
	if s, ok := value.(string); ok {
		return map[string]any{"value": s}
	}
	return value
}

// ShapeAttributes rewrites, in a POST or PUT body, the same shapes shapeValue accepts in PATCH:
// a plain string where a complex attribute with a "value" sub-attribute is defined.
func (idx Index) ShapeAttributes(attrs map[string]any) {
	for key, v := range attrs {
		if idx.IsExtension(key) {
			ext, _ := v.(map[string]any)
			for sk, sv := range ext {
				if _, info, ok := idx.Lookup(key, sk); ok {
					ext[sk] = shapeValue(info, "", sv)
				}
			}
			continue
		}
		if _, info, ok := idx.Lookup("", key); ok {
			attrs[key] = shapeValue(info, "", v)
		}
	}
}

func applySub(container map[string]any, op, name string, info Attribute, sub string, value any) error {
	if info.Multi {
		// emails.value without a filter targets every element
		list := AsList(container[name])
		if len(list) == 0 && op != OpRemove {
			// the target does not exist: add and replace both add it (RFC 7644 §3.5.2.1, .3)
			container[name] = []any{map[string]any{sub: value}}
			return nil
		}
		for i, el := range list {
			if mm, ok := el.(map[string]any); ok {
				mm = maps.Clone(mm)
				if op == OpRemove {
					delete(mm, sub)
				} else {
					mm[sub] = value
				}
				list[i] = mm
			}
		}
		container[name] = list
		return nil
	}
	obj, _ := container[name].(map[string]any)
	if op == OpRemove {
		if obj != nil {
			obj = maps.Clone(obj)
			delete(obj, sub)
			if len(obj) == 0 {
				delete(container, name)
			} else {
				container[name] = obj
			}
		}
		return nil
	}
	obj = maps.Clone(obj)
	if obj == nil {
		obj = map[string]any{}
	}
	obj[sub] = value
	container[name] = obj
	return nil
}

// applyFiltered applies op to the elements of a multi-valued attribute that a value filter
// selects (RFC 7644 §3.5.2.1–3):
//   - replace: every match is replaced (or its sub-attribute set); no match is 400 noTarget, a
//     MUST of §3.5.2.3;
//   - add: matches get the value; with no match, an element is created from the filter's
//     equalities (`emails[type eq "work"].value` on a user without a work email), which is
//     how IdPs add a typed value and what §3.5.2.1 "the target location does not exist, the
//     attribute and value are added" asks; a filter that cannot describe an element is noTarget;
//   - remove: matches are removed (or their sub-attribute); no match changes nothing, as
//     §3.5.2.2 defines no error for it and IdPs retry removals.
func (p Patcher) applyFiltered(container map[string]any, op, name string, info Attribute, filter fp.Expression, sub string, value any) error {
	if !info.Multi {
		return InvalidPath("attribute %q is not multi-valued; a value filter does not apply", name)
	}
	m := Matcher(p)
	list := AsList(container[name])
	matched := make([]bool, len(list))
	n := 0
	for i, el := range list {
		if mm, ok := el.(map[string]any); ok && m.eval(filter, mm, nil, false) {
			matched[i] = true
			n++
		}
	}
	if op == OpRemove {
		if sub == "" {
			keep := make([]any, 0, len(list)-n)
			for i, el := range list {
				if !matched[i] {
					keep = append(keep, el)
				}
			}
			if len(keep) == 0 {
				delete(container, name)
			} else {
				container[name] = keep
			}
			return nil
		}
		for i := range list {
			if matched[i] {
				mm := maps.Clone(list[i].(map[string]any))
				delete(mm, sub)
				list[i] = mm
			}
		}
		container[name] = list
		return nil
	}
	// a single value for a filtered path may arrive wrapped in a one-element list
	if l, ok := value.([]any); ok && len(l) == 1 {
		value = l[0]
	}
	if n == 0 {
		if op == OpReplace {
			return NoTarget("no %s value matches the filter of %s", name, name)
		}
		seed, ok := equalities(filter)
		if !ok {
			return NoTarget("no %s value matches the filter, and the filter does not describe a new one (use eq and and)", name)
		}
		el := map[string]any(seed)
		if sub != "" {
			el[sub] = value
		} else if mm, ok := value.(map[string]any); ok {
			for k, v := range mm {
				el[k] = v
			}
		} else {
			return InvalidValue("the value for %s[…] must be an object", name)
		}
		container[name] = append(list, el)
		return nil
	}
	for i := range list {
		if !matched[i] {
			continue
		}
		switch {
		case sub != "":
			mm := maps.Clone(list[i].(map[string]any))
			mm[sub] = value
			list[i] = mm
		case op == OpAdd:
			list[i] = mergeObject(list[i], value)
		default:
			mm, ok := value.(map[string]any)
			if !ok {
				return InvalidValue("the value for %s[…] must be an object", name)
			}
			list[i] = mm
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

// elementKey identifies an element of a multi-valued attribute for duplicate detection: by
// "value" and "type" for complex elements that have a value (members, emails), otherwise by
// its JSON encoding.
func elementKey(v any) string {
	if m, ok := v.(map[string]any); ok {
		if val, has := m["value"]; has && val != nil {
			return "v\x00" + fmt.Sprint(val) + "\x00" + fmt.Sprint(m["type"])
		}
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("x\x00%v", v)
	}
	return "j\x00" + string(raw)
}

// appendUnique adds the elements of add that list lacks, in linear time: RFC 7644 §3.5.2.1
// asks that adding a value already present changes nothing.
func appendUnique(list, add []any) []any {
	seen := make(map[string]struct{}, len(list)+len(add))
	for _, l := range list {
		seen[elementKey(l)] = struct{}{}
	}
	for _, a := range add {
		k := elementKey(a)
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		list = append(list, a)
	}
	return list
}

func uniqueList(list []any) []any { return appendUnique(nil, list) }

// withoutValues drops the elements of list matching any of drop by elementKey, or by "value"
// alone when a drop element carries only a value (Entra's member removal sends {"value": id}).
func withoutValues(v any, drop []any) []any {
	byKey := map[string]bool{}
	byValue := map[string]bool{}
	for _, d := range drop {
		byKey[elementKey(d)] = true
		if m, ok := d.(map[string]any); ok {
			if val, has := m["value"]; has && val != nil && m["type"] == nil {
				byValue[fmt.Sprint(val)] = true
			}
		}
	}
	list := AsList(v)
	out := make([]any, 0, len(list))
	for _, el := range list {
		if byKey[elementKey(el)] {
			continue
		}
		if m, ok := el.(map[string]any); ok && m["value"] != nil && byValue[fmt.Sprint(m["value"])] {
			continue
		}
		out = append(out, el)
	}
	return out
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
