package scim

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	fp "github.com/scim2/filter-parser/v2"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Matcher evaluates a parsed SCIM filter against resources. elimity parses and validates the
// filter; its own PassesFilter misses multi-valued sub-attributes and extension attributes and
// panics on complex values, so evaluation is ours.
type Matcher struct {
	Index Index
}

// Meta is what a filter can ask of a resource beyond its attributes: id and meta.*.
type Meta struct {
	ID       string
	Created  time.Time
	Modified time.Time
	Version  string // the ETag, e.g. W/"3"
}

// Match reports whether a resource with attrs and meta satisfies e. It never panics on any
// stored shape.
func (m Matcher) Match(e fp.Expression, attrs map[string]any, meta *Meta) bool {
	return m.eval(e, attrs, meta, true)
}

// eval evaluates e against obj: the resource's attributes at the top level, or one element of a
// multi-valued attribute inside a value path (top=false).
func (m Matcher) eval(e fp.Expression, obj map[string]any, r *Meta, top bool) bool {
	switch e := e.(type) {
	case *fp.LogicalExpression:
		if e.Operator == fp.AND {
			return m.eval(e.Left, obj, r, top) && m.eval(e.Right, obj, r, top)
		}
		return m.eval(e.Left, obj, r, top) || m.eval(e.Right, obj, r, top)
	case *fp.NotExpression:
		return !m.eval(e.Expression, obj, r, top)
	case *fp.ValuePath:
		vals := m.values(e.AttributePath, obj, r, top, false)
		for _, v := range vals {
			if el, ok := v.(map[string]any); ok && m.eval(e.ValueFilter, el, r, false) {
				return true
			}
		}
		return false
	case *fp.AttributeExpression:
		vals := m.values(e.AttributePath, obj, r, top, true)
		return compareAny(e, vals, m.caseExact(e.AttributePath, top))
	}
	return false
}

// values returns the values a path selects; with leaf set, a multi-valued complex attribute
// without a sub-attribute yields its elements' "value".
func (m Matcher) values(p fp.AttributePath, obj map[string]any, r *Meta, top, leaf bool) []any {
	name := p.AttributeName
	sub := p.SubAttributeName()
	if top {
		if r == nil {
			r = &Meta{}
		}
		if strings.EqualFold(name, "id") && sub == "" {
			return []any{r.ID}
		}
		if strings.EqualFold(name, "meta") {
			switch strings.ToLower(sub) {
			case "created":
				return []any{r.Created}
			case "lastmodified":
				return []any{r.Modified}
			case "version":
				return []any{r.Version}
			}
			return nil
		}
		if uri := p.URI(); uri != "" && !IsCoreURN(strings.ToLower(uri)) {
			ext, _ := GetFold(obj, uri).(map[string]any)
			obj = ext
		}
	}
	if top && strings.EqualFold(name, "password") {
		return nil // returned:never, so never filterable: a filter must not probe it
	}
	v := GetFold(obj, name)
	if v == nil {
		return nil
	}
	list, multi := v.([]any)
	if !multi {
		list = []any{v}
	}
	var out []any
	for _, el := range list {
		switch {
		case sub != "":
			if mm, ok := el.(map[string]any); ok {
				if sv := GetFold(mm, sub); sv != nil {
					out = append(out, sv)
				}
			}
		case leaf && multi:
			if mm, ok := el.(map[string]any); ok {
				if sv := GetFold(mm, "value"); sv != nil {
					out = append(out, sv)
				}
				continue
			}
			out = append(out, el)
		default:
			out = append(out, el)
		}
	}
	return out
}

func (m Matcher) caseExact(p fp.AttributePath, top bool) bool {
	if !top {
		return false // sub-attributes of the core multi-valued types are all caseExact=false, but for "value" of members
	}
	uri := p.URI()
	_, info, ok := m.Index.Lookup(uri, p.AttributeName)
	if !ok {
		return false
	}
	if sub := p.SubAttributeName(); sub != "" {
		if si, ok := info.Subs[strings.ToLower(sub)]; ok {
			return si.CaseExact
		}
		return false
	}
	return info.CaseExact
}

// GetFold reads key from obj, matching the key case-insensitively as SCIM attribute names are.
func GetFold(obj map[string]any, key string) any {
	if obj == nil {
		return nil
	}
	if v, ok := obj[key]; ok {
		return v
	}
	for k, v := range obj {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}

func compareAny(e *fp.AttributeExpression, vals []any, caseExact bool) bool {
	if e.Operator == fp.PR {
		for _, v := range vals {
			if !isEmpty(v) {
				return true
			}
		}
		return false
	}
	if e.Operator == fp.NE {
		for _, v := range vals {
			if compareOne(fp.EQ, v, e.CompareValue, caseExact) {
				return false
			}
		}
		return true
	}
	for _, v := range vals {
		if compareOne(e.Operator, v, e.CompareValue, caseExact) {
			return true
		}
	}
	return false
}

func isEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

// compareOne applies op to a stored value and the filter's literal, by the stored value's type.
func compareOne(op fp.CompareOperator, stored, lit any, caseExact bool) bool {
	switch sv := stored.(type) {
	case time.Time:
		ls, ok := lit.(string)
		if !ok {
			return false
		}
		lt, err := time.Parse(time.RFC3339Nano, ls)
		if err != nil {
			return false
		}
		// stored times are reported at second precision; compare at that precision
		return order(op, sv.Truncate(time.Second).Compare(lt.Truncate(time.Second)))
	case bool:
		lb, ok := lit.(bool)
		if !ok {
			if ls, isStr := lit.(string); isStr {
				lb, ok = strings.EqualFold(ls, "true"), strings.EqualFold(ls, "true") || strings.EqualFold(ls, "false")
			}
		}
		if !ok {
			return false
		}
		switch op {
		case fp.EQ:
			return sv == lb
		}
		return false
	case json.Number, float64, int, int64:
		a, ok1 := toFloat(sv)
		b, ok2 := toFloat(lit)
		if !ok1 || !ok2 {
			return false
		}
		switch {
		case a < b:
			return order(op, -1)
		case a > b:
			return order(op, 1)
		}
		return order(op, 0)
	case string:
		ls, ok := lit.(string)
		if !ok {
			ls = fmt.Sprint(lit)
		}
		a, b := sv, ls
		if !caseExact {
			a, b = FoldKey(a), FoldKey(b)
		}
		switch op {
		case fp.CO:
			return strings.Contains(a, b)
		case fp.SW:
			return strings.HasPrefix(a, b)
		case fp.EW:
			return strings.HasSuffix(a, b)
		}
		return order(op, strings.Compare(a, b))
	}
	return false
}

// CompareOne applies a filter operator (not pr or ne, which are about sets of values) to one
// stored value and a filter literal: the comparison semantics every evaluator of the built-in
// server shares.
func CompareOne(op fp.CompareOperator, stored, literal any, caseExact bool) bool {
	return compareOne(op, stored, literal, caseExact)
}

// FoldKey is the form in which case-insensitive strings compare: Unicode canonical caseless
// matching (NFC of the case fold of NFD), so "Ǻ", "Å" + U+0301 and "ǻ" are one name. ASCII,
// the common case, is only lower-cased.
func FoldKey(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return norm.NFC.String(cases.Fold().String(norm.NFD.String(s)))
		}
	}
	return strings.ToLower(s)
}

func order(op fp.CompareOperator, c int) bool {
	switch op {
	case fp.EQ:
		return c == 0
	case fp.GT:
		return c > 0
	case fp.GE:
		return c >= 0
	case fp.LT:
		return c < 0
	case fp.LE:
		return c <= 0
	}
	return false
}

func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	case float64:
		return v, true
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	}
	return 0, false
}

// EqLookup recognises the filters IdPs send on every sync (`userName eq "x"`,
// `externalId eq "x"`) so they can be answered from an index instead of a scan.
func EqLookup(e fp.Expression) (attr, value string, ok bool) {
	ae, isAttr := e.(*fp.AttributeExpression)
	if !isAttr || ae.Operator != fp.EQ || ae.AttributePath.SubAttribute != nil {
		return "", "", false
	}
	if uri := ae.AttributePath.URI(); uri != "" && !IsCoreURN(strings.ToLower(uri)) {
		return "", "", false
	}
	v, isStr := ae.CompareValue.(string)
	if !isStr {
		return "", "", false
	}
	switch {
	case strings.EqualFold(ae.AttributePath.AttributeName, "userName"):
		return "userName", v, true
	case ae.AttributePath.AttributeName == "externalId" || strings.EqualFold(ae.AttributePath.AttributeName, "externalId"):
		return "externalId", v, true
	}
	return "", "", false
}
