package scim

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	fp "github.com/scim2/filter-parser/v2"
)

func fuzzResource() (map[string]any, *Meta) {
	var attrs map[string]any
	_ = json.Unmarshal([]byte(`{"userName":"alice","externalId":"e1","active":true,"title":3,
		"name":{"givenName":"A"},"emails":[{"value":"a@x.org","type":"work"},"odd",{"value":7}],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"RD","manager":{"value":"m"}},
		"members":[{"value":"u1"},null]}`), &attrs)
	return attrs, &Meta{ID: "id-1", Created: time.Unix(0, 0), Modified: time.Unix(1e9, 0), Version: `W/"3"`}
}

func testIndex() Index {
	return NewIndex(UserResourceSchema(), ScimsyncExtension())
}

// FuzzFilter: any filter the parser accepts is evaluated without panicking, on a resource
// whose stored shapes include the odd ones (numbers where strings are expected, nulls, scalars
// inside complex lists).
func FuzzFilter(f *testing.F) {
	for _, s := range []string{`userName eq "a"`, `emails[type eq "work"].value ew "x"`, `emails.value co "@"`,
		`not (active eq true) or title gt 2`, `meta.lastModified ge "2001-01-01T00:00:00Z"`, `name pr`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m"`, `members[value eq "u1"]`,
		// deep nesting and huge inputs: the parser must refuse or evaluate them, never blow up
		strings.Repeat("(", 2000) + `userName pr` + strings.Repeat(")", 2000),
		strings.Repeat("not (", 1000) + `active eq true` + strings.Repeat(")", 1000),
		strings.TrimSuffix(strings.Repeat(`userName eq "a" or `, 5000), " or "),
		`userName eq "` + strings.Repeat("x", 1<<20) + `"`} {
		f.Add(s)
	}
	m := Matcher{Index: testIndex()}
	attrs, meta := fuzzResource()
	f.Fuzz(func(t *testing.T, s string) {
		e, err := fp.ParseFilter([]byte(s))
		if err != nil {
			return
		}
		_ = m.Match(e, attrs, meta)
		_, _, _ = EqLookup(e)
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
	p := Patcher{Index: testIndex()}
	f.Fuzz(func(t *testing.T, op, path, value string) {
		parsed, err := fp.ParsePath([]byte(path))
		if err != nil {
			return
		}
		var v any
		if json.Unmarshal([]byte(value), &v) != nil {
			return
		}
		orig, _ := fuzzResource()
		before, _ := json.Marshal(orig)
		attrs := DeepCopy(orig).(map[string]any)
		_ = p.Apply(attrs, []Operation{{Op: strings.ToLower(op), Path: &parsed, Value: v}})
		_ = p.Apply(attrs, []Operation{{Op: "replace", Value: map[string]any{path: v}}})
		after, _ := json.Marshal(orig)
		if string(before) != string(after) {
			t.Fatal("patch mutated the original attributes")
		}
	})
}

// FuzzFilterString: whatever the value (quotes, backslashes, control characters, any
// script), FilterString writes it as one well-formed JSON string literal (json.Unmarshal refuses
// anything after it) that means exactly the value.
func FuzzFilterString(f *testing.F) {
	for _, s := range []string{`plain`, `we"ird\`, "ctl\x00\x1f", "Jürgen 山田", `a) or (b eq "c`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if !utf8.ValidString(v) {
			return // values come from LDAP as UTF-8
		}
		q := FilterString(v)
		var back string
		if err := json.Unmarshal([]byte(q), &back); err != nil || back != v {
			t.Fatalf("%q quoted as %s: %v", v, q, err)
		}
	})
}

// TestPathQuotesAsJSON: a type or id with a control or non-BMP character reaches the target as
// a JSON string literal, which RFC 7644 filters use, not as Go's \x or \U escapes.
func TestPathQuotesAsJSON(t *testing.T) {
	p := AttrPath{Attr: "emails", Type: "w\x01rk😀", Sub: "value"}
	if got, want := p.String(), `emails[type eq "w\u0001rk😀"].value`; got != want {
		t.Errorf("path %s, want %s", got, want)
	}
	if got, want := FilterString(`a"b\c<`), `"a\"b\\c<"`; got != want {
		t.Errorf("FilterString = %s, want %s", got, want)
	}
}
