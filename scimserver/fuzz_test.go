package scimserver

import (
	"strings"
	"testing"

	fp "github.com/scim2/filter-parser/v2"

	"github.com/scimsync/scimsync/scim"
)

// FuzzFilter: any filter is rewritten without losing its conjunction, and whatever the parser
// accepts after the rewrite is evaluated without panicking.
func FuzzFilter(f *testing.F) {
	for _, s := range []string{`userName eq "a"`, `emails[type eq "work"].value ew "x"`, `emails.value co "@"`,
		`emails[type eq "w]or"].value pr`, `members[value eq "u1"]`} {
		f.Add(s)
	}
	m := scim.Matcher{Index: scim.UserIndex()}
	attrs := map[string]any{"userName": "alice", "emails": []any{map[string]any{"type": "work", "value": "a@x.org"}}}
	f.Fuzz(func(t *testing.T, s string) {
		rewritten := rewriteFilter(s)
		if s != rewritten && !strings.Contains(rewritten, " and ") {
			t.Fatalf("rewrite of %q lost its conjunction: %q", s, rewritten)
		}
		e, err := fp.ParseFilter([]byte(rewritten))
		if err != nil {
			return
		}
		_ = m.Match(e, attrs, &scim.Meta{ID: "x"})
	})
}

func TestRewriteFilter(t *testing.T) {
	tests := map[string]string{
		`emails[type eq "work"].value ew "x.org"`:         `emails[type eq "work" and value ew "x.org"]`,
		`emails[type eq "w]or"].value pr`:                 `emails[type eq "w]or" and value pr]`,
		`emails[type eq "a" or type eq "b"].value eq "x"`: `emails[type eq "a" or type eq "b"].value eq "x"`,
		`userName eq "x"`:                                 `userName eq "x"`,
	}
	for in, want := range tests {
		if got := rewriteFilter(in); got != want {
			t.Errorf("rewriteFilter(%q) = %q, want %q", in, got, want)
		}
	}
}
