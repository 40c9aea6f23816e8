package scim

import (
	"bytes"
	"encoding/json"
)

// Doc is a SCIM resource as JSON.
type Doc = map[string]any

// CopyDoc deep-copies a SCIM resource, so a change can be tried without touching the original.
func CopyDoc(d Doc) Doc { return DeepCopy(map[string]any(d)).(map[string]any) }

// DeepCopy copies a JSON-shaped value so a PATCH can be tried without touching the original.
func DeepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = DeepCopy(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = DeepCopy(x)
		}
		return out
	case json.Number, string, bool, float64, nil:
		return v
	}
	return v
}

// MemberIDs returns the "value" of every element of a members list.
func MemberIDs(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, m := range list {
		if mm, ok := m.(map[string]any); ok {
			if id, ok := mm["value"].(string); ok {
				out = append(out, id)
			}
		}
	}
	return out
}

// WithoutMembers returns a members list without the elements whose value is in drop.
func WithoutMembers(v any, drop map[string]bool) []any {
	list, _ := v.([]any)
	out := make([]any, 0, len(list))
	for _, m := range list {
		if mm, ok := m.(map[string]any); ok {
			if id, _ := mm["value"].(string); drop[id] {
				continue
			}
		}
		out = append(out, m)
	}
	return out
}

// JSONEqual reports whether a and b encode to the same JSON.
func JSONEqual(a, b any) bool {
	ra, err1 := json.Marshal(a)
	rb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ra, rb)
}
