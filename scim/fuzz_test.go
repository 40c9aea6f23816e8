package scim

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/elimity-com/scim"
	fp "github.com/scim2/filter-parser/v2"
)

func fuzzResource() *resource {
	var attrs map[string]any
	_ = json.Unmarshal([]byte(`{"userName":"alice","externalId":"e1","active":true,"title":3,
		"name":{"givenName":"A"},"emails":[{"value":"a@x.org","type":"work"},"odd",{"value":7}],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"RD","manager":{"value":"m"}},
		"members":[{"value":"u1"},null]}`), &attrs)
	return &resource{ID: "id-1", Created: time.Unix(0, 0), Modified: time.Unix(1e9, 0), Version: 3, Attrs: attrs}
}

func testIndex() schemaIndex {
	return newSchemaIndex(userSchema(), scimsyncExtension())
}

// FuzzFilter: any filter the parser accepts is evaluated without panicking, on a resource
// whose stored shapes include the odd ones (numbers where strings are expected, nulls, scalars
// inside complex lists).
func FuzzFilter(f *testing.F) {
	for _, s := range []string{`userName eq "a"`, `emails[type eq "work"].value ew "x"`, `emails.value co "@"`,
		`not (active eq true) or title gt 2`, `meta.lastModified ge "2001-01-01T00:00:00Z"`, `name pr`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m"`, `members[value eq "u1"]`} {
		f.Add(s)
	}
	m := matcher{idx: testIndex()}
	r := fuzzResource()
	f.Fuzz(func(t *testing.T, s string) {
		rewritten := rewriteFilter(s)
		if s != rewritten && !strings.Contains(rewritten, " and ") {
			t.Fatalf("rewrite of %q lost its conjunction: %q", s, rewritten)
		}
		e, err := fp.ParseFilter([]byte(rewritten))
		if err != nil {
			return
		}
		_ = m.matches(e, r)
		_, _, _ = eqLookup(e)
	})
}

// FuzzPatchPath: any path the parser accepts, with any JSON value, is applied or refused with
// a SCIM error, never a panic, and never touches the original attributes.
func FuzzPatchPath(f *testing.F) {
	for _, s := range []string{`emails[type eq "work"].value`, `name.givenName`, `members`, `title`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`, `emails[value co "a"]`} {
		f.Add("replace", s, `"x"`)
		f.Add("remove", s, `[{"value":"u1"}]`)
		f.Add("add", s, `{"value":"v","type":"work"}`)
	}
	p := patcher{idx: testIndex()}
	f.Fuzz(func(t *testing.T, op, path, value string) {
		parsed, err := fp.ParsePath([]byte(path))
		if err != nil {
			return
		}
		var v any
		if json.Unmarshal([]byte(value), &v) != nil {
			return
		}
		r := fuzzResource()
		before, _ := json.Marshal(r.Attrs)
		attrs := deepCopy(r.Attrs).(map[string]any)
		_ = p.apply(attrs, []scim.PatchOperation{{Op: strings.ToLower(op), Path: &parsed, Value: v}})
		_ = p.apply(attrs, []scim.PatchOperation{{Op: "replace", Value: map[string]any{path: v}}})
		after, _ := json.Marshal(r.Attrs)
		if string(before) != string(after) {
			t.Fatal("patch mutated the original attributes")
		}
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
