package scimserver

import (
	"regexp"
	"strings"
)

// subAfterValuePath matches `attr[filter].sub op value` (or `… pr`): the PATCH-path form that
// administrators and some clients also write in filters, which RFC 7644's filter grammar (and
// so the filter parser) rejects. It is equivalent to `attr[(filter) and sub op value]`.
var subAfterValuePath = regexp.MustCompile(
	`([A-Za-z][\w:.\-]*)\[([^\[\]"]*(?:"(?:[^"\\]|\\.)*"[^\[\]"]*)*)\]\.([A-Za-z][\w\-]*)\s+(pr\b|(?:eq|ne|co|sw|ew|gt|ge|lt|le)\s+(?:"(?:[^"\\]|\\.)*"|true|false|null|-?[\d.eE+\-]+))`)

// orOutsideQuotes finds an "or" in a value filter once quoted strings are blanked out.
var (
	quoted          = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	orOutsideQuotes = regexp.MustCompile(`(?i)\sor\s`)
)

// rewriteFilter turns every `attr[f].sub op v` into `attr[f and sub op v]`. The parser allows
// no parentheses inside brackets, so a value filter containing "or" (where appending "and"
// would change its meaning) is left alone and gets the parser's 400.
func rewriteFilter(f string) string {
	if !strings.Contains(f, "].") {
		return f // the common case: nothing to rewrite, and no regexp to run
	}
	return subAfterValuePath.ReplaceAllStringFunc(f, func(m string) string {
		sub := subAfterValuePath.FindStringSubmatch(m)
		if orOutsideQuotes.MatchString(quoted.ReplaceAllString(sub[2], `""`)) {
			return m
		}
		return sub[1] + "[" + sub[2] + " and " + sub[3] + " " + sub[4] + "]"
	})
}
