package scim

import (
	"fmt"
	"strings"
	gosync "sync"
	"unicode"
)

// ValidationError names the attribute and the rule a payload breaks.
type ValidationError struct {
	Attribute string
	Rule      string
	Detail    string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("%s: %s (%s)", e.Attribute, e.Detail, e.Rule)
}

// ValidateUser checks a User payload before it is sent: the rules the built-in server applies
// (schema types, required userName) plus ones every target enforces (an email has an @, no
// control characters). The dry run calls it too, so it cannot promise what the run would refuse.
func ValidateUser(doc Doc) *ValidationError {
	name, _ := doc["userName"].(string)
	if strings.TrimSpace(name) == "" {
		return &ValidationError{Attribute: "userName", Rule: "required", Detail: "is empty"}
	}
	if anyString(doc, hasControl) {
		// found: name the first offending attribute in sorted order, so the message is stable
		var path, value string
		found := false
		eachString(doc, "", func(p, v string) {
			if hasControl(v) && (!found || p < path) {
				path, value, found = p, v, true
			}
		})
		return &ValidationError{Attribute: path, Rule: "no control characters", Detail: fmt.Sprintf("%q contains a control character", value)}
	}
	if list, ok := doc["emails"].([]any); ok {
		for _, el := range list {
			m, _ := el.(map[string]any)
			v, _ := m["value"].(string)
			if at := strings.LastIndexByte(v, '@'); at < 1 || at == len(v)-1 || strings.ContainsAny(v, " \t") {
				return &ValidationError{Attribute: fmt.Sprintf("emails[type eq %q].value", m["type"]), Rule: "email address", Detail: fmt.Sprintf("%q is not an email address", v)}
			}
		}
	}
	core := map[string]any{}
	for k, v := range doc {
		if !strings.HasPrefix(strings.ToLower(k), "urn:") {
			core[k] = v
		}
	}
	if _, err := validationSchema().Validate(core); err != nil {
		return &ValidationError{Attribute: "User", Rule: "schema " + UserSchema, Detail: err.Detail}
	}
	return nil
}

// validationSchema is the User schema ValidateUser checks against, built once: building it
// compiles a regular expression per attribute name, which cost more than everything else
// planning a create does.
var validationSchema = gosync.OnceValue(UserResourceSchema)

func hasControl(s string) bool { return strings.IndexFunc(s, unicode.IsControl) >= 0 }

// anyString reports whether pred holds for any string in v, walking it without building the
// paths flatten builds: every create is checked, and almost none has anything to report.
func anyString(v any, pred func(string) bool) bool {
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			if anyString(x, pred) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if anyString(x, pred) {
				return true
			}
		}
	case string:
		return pred(v)
	}
	return false
}

// eachString calls fn with every string in v and its path (a.b[0].c). Paths are not unique (a
// key may contain a dot), which is why nothing here is keyed by them.
func eachString(v any, prefix string, fn func(path, v string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			eachString(x, p, fn)
		}
	case []any:
		for i, x := range v {
			eachString(x, fmt.Sprintf("%s[%d]", prefix, i), fn)
		}
	case string:
		fn(prefix, v)
	}
}
