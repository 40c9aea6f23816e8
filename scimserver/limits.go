package scimserver

import (
	"fmt"
	"net/http"

	scimerr "github.com/elimity-com/scim/errors"
)

// limitError is a request refused by a configured limit: the detail names the config key so an
// administrator knows what to raise, and the limit label feeds the refusals metric.
type limitError struct {
	key    string
	status int
	detail string
}

func (e *limitError) Error() string { return e.detail }

func (e *limitError) scim() scimerr.ScimError {
	t := scimerr.ScimTypeInvalidValue
	if e.status == http.StatusBadRequest && (e.key == "max_filter_length" || e.key == "max_filter_depth" || e.key == "max_filter_terms") {
		t = scimerr.ScimTypeInvalidFilter
	}
	if e.status == http.StatusRequestEntityTooLarge {
		t = ""
	}
	return scimerr.ScimError{ScimType: t, Status: e.status, Detail: e.detail}
}

func overLimit(key string, status int, format string, args ...any) *limitError {
	return &limitError{key: key, status: status, detail: fmt.Sprintf(format, args...) + fmt.Sprintf(" (limit: server.%s)", key)}
}

// filterShape is what checkFilter measures: the parser recurses once per nesting level, and
// evaluation costs one comparison per term per resource.
type filterShape struct{ depth, terms int }

// measureFilter scans a filter or PATCH path without parsing it: quoted strings are skipped,
// "(" and "[" nest, and every "and"/"or" word outside quotes adds a term. It never recurses,
// so it is safe on input the parser would overflow its stack on.
func measureFilter(f string) filterShape {
	var s filterShape
	s.terms = 1
	depth := 0
	inQuote, escaped := false, false
	wordStart := -1
	endWord := func(i int) {
		if wordStart < 0 {
			return
		}
		w := f[wordStart:i]
		if len(w) == 2 && (w[0]|0x20) == 'o' && (w[1]|0x20) == 'r' ||
			len(w) == 3 && (w[0]|0x20) == 'a' && (w[1]|0x20) == 'n' && (w[2]|0x20) == 'd' {
			s.terms++
		}
		wordStart = -1
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if inQuote {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inQuote = false
			}
			continue
		}
		isWord := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if isWord {
			if wordStart < 0 {
				wordStart = i
			}
			continue
		}
		endWord(i)
		switch c {
		case '"':
			inQuote = true
		case '(', '[':
			depth++
			s.depth = max(s.depth, depth)
		case ')', ']':
			depth--
		}
	}
	endWord(len(f))
	return s
}

// checkFilter refuses a filter (or a PATCH path, which can hold a value filter) over the limits.
func (c ServerConfig) checkFilter(what, f string) error {
	if len(f) > c.MaxFilterLength {
		return overLimit("max_filter_length", http.StatusBadRequest, "%s is %d bytes, over %d", what, len(f), c.MaxFilterLength)
	}
	s := measureFilter(f)
	if s.depth > c.MaxFilterDepth {
		return overLimit("max_filter_depth", http.StatusBadRequest, "%s nests %d levels deep, over %d", what, s.depth, c.MaxFilterDepth)
	}
	if s.terms > c.MaxFilterTerms {
		return overLimit("max_filter_terms", http.StatusBadRequest, "%s has %d terms, over %d", what, s.terms, c.MaxFilterTerms)
	}
	return nil
}
