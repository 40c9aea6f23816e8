package scim

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	scimerr "github.com/elimity-com/scim/errors"
	fp "github.com/scim2/filter-parser/v2"
)

func mustPath(t *testing.T, s string) *fp.Path {
	t.Helper()
	p, err := fp.ParsePath([]byte(s))
	if err != nil {
		t.Fatalf("path %q: %v", s, err)
	}
	return &p
}

func userDoc(t *testing.T) map[string]any {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal([]byte(`{"userName":"alice","title":"x",
		"emails":[{"value":"a@work.example","type":"work"},{"value":"a@home.example","type":"home"}],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"RD"}}`), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func scimType(err error) string {
	var se scimerr.ScimError
	if errors.As(err, &se) {
		return string(se.ScimType)
	}
	return ""
}

// TestPatchRFC7644Targets pins the §3.5.2.1–3 rules for value filters and missing paths.
func TestPatchRFC7644Targets(t *testing.T) {
	p := Patcher{Index: UserIndex()}
	tests := []struct {
		name     string
		op       Operation
		wantType string                      // "" = success
		check    func(d map[string]any) bool // on success
	}{
		{"replace with a filter matching nothing is noTarget (§3.5.2.3 MUST)",
			Operation{Op: OpReplace, Path: mustPath(t, `phoneNumbers[type eq "mobile"].value`), Value: "+1"}, "noTarget", nil},
		{"replace of a filtered element that matches nothing is noTarget",
			Operation{Op: OpReplace, Path: mustPath(t, `emails[type eq "other"]`), Value: map[string]any{"value": "x@y"}}, "noTarget", nil},
		{"replace with a matching filter replaces the sub-attribute",
			Operation{Op: OpReplace, Path: mustPath(t, `emails[type eq "work"].value`), Value: "new@work.example"}, "",
			func(d map[string]any) bool {
				return d["emails"].([]any)[0].(map[string]any)["value"] == "new@work.example"
			}},
		{"add with a filter matching nothing creates the element from its equalities",
			Operation{Op: OpAdd, Path: mustPath(t, `phoneNumbers[type eq "mobile"].value`), Value: "+1"}, "",
			func(d map[string]any) bool {
				ph := d["phoneNumbers"].([]any)[0].(map[string]any)
				return ph["type"] == "mobile" && ph["value"] == "+1"
			}},
		{"add with a filter that cannot describe an element is noTarget",
			Operation{Op: OpAdd, Path: mustPath(t, `phoneNumbers[type ne "mobile"].value`), Value: "+1"}, "noTarget", nil},
		{"remove without a path is noTarget (§3.5.2.2)",
			Operation{Op: OpRemove}, "noTarget", nil},
		{"remove with a filter matching nothing changes nothing",
			Operation{Op: OpRemove, Path: mustPath(t, `emails[type eq "other"]`)}, "",
			func(d map[string]any) bool { return len(d["emails"].([]any)) == 2 }},
		{"remove with a filter removes the matches",
			Operation{Op: OpRemove, Path: mustPath(t, `emails[type eq "home"]`)}, "",
			func(d map[string]any) bool { return len(d["emails"].([]any)) == 1 }},
		{"remove of the last element unassigns the attribute",
			Operation{Op: OpRemove, Path: mustPath(t, `emails[value ew "example"]`)}, "",
			func(d map[string]any) bool { _, ok := d["emails"]; return !ok }},
		{"remove of a required attribute is mutability",
			Operation{Op: OpRemove, Path: mustPath(t, `userName`)}, "mutability", nil},
		{"replace of a read-only attribute is mutability",
			Operation{Op: OpReplace, Path: mustPath(t, `groups`), Value: []any{}}, "mutability", nil},
		{"Entra's string manager becomes {value}",
			Operation{Op: OpAdd, Path: mustPath(t, EnterpriseSchema+`:manager`), Value: "boss-id"}, "",
			func(d map[string]any) bool {
				m, _ := d[EnterpriseSchema].(map[string]any)["manager"].(map[string]any)
				return m["value"] == "boss-id"
			}},
		{"no-path string manager too",
			Operation{Op: OpReplace, Value: map[string]any{EnterpriseSchema + ":manager": "boss-2"}}, "",
			func(d map[string]any) bool {
				m, _ := d[EnterpriseSchema].(map[string]any)["manager"].(map[string]any)
				return m["value"] == "boss-2"
			}},
		{"adding a value already present changes nothing",
			Operation{Op: OpAdd, Path: mustPath(t, `emails`), Value: []any{map[string]any{"value": "a@work.example", "type": "work"}}}, "",
			func(d map[string]any) bool { return len(d["emails"].([]any)) == 2 }},
		{"replace of a missing sub-attribute path adds it",
			Operation{Op: OpReplace, Path: mustPath(t, `phoneNumbers.value`), Value: "+2"}, "",
			func(d map[string]any) bool { return d["phoneNumbers"].([]any)[0].(map[string]any)["value"] == "+2" }},
		{"unknown op is invalidValue", Operation{Op: "merge", Path: mustPath(t, "title"), Value: "y"}, "invalidValue", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := userDoc(t)
			err := p.Apply(d, []Operation{tt.op})
			if got := scimType(err); got != tt.wantType || (tt.wantType == "" && err != nil) {
				t.Fatalf("error %v (type %q), want type %q", err, got, tt.wantType)
			}
			if tt.check != nil && !tt.check(d) {
				raw, _ := json.Marshal(d)
				t.Fatalf("not applied as the RFC says: %s", raw)
			}
		})
	}
}

// TestPatchAddManyValuesIsLinear: 20,000 new values plus 20,000 present ones would take
// minutes with the old pairwise duplicate check; linear, it is a few milliseconds.
func TestPatchAddManyValuesIsLinear(t *testing.T) {
	p := Patcher{Index: GroupIndex()}
	var present, add []any
	for i := 0; i < 20000; i++ {
		present = append(present, map[string]any{"value": fmt.Sprint("p", i)})
		add = append(add, map[string]any{"value": fmt.Sprint("a", i)}, map[string]any{"value": fmt.Sprint("p", i)})
	}
	d := map[string]any{"displayName": "g", "members": present}
	start := time.Now()
	if err := p.Apply(d, []Operation{{Op: OpAdd, Path: mustPath(t, "members"), Value: add}}); err != nil {
		t.Fatal(err)
	}
	if n := len(d["members"].([]any)); n != 40000 {
		t.Fatalf("%d members, want 40000", n)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("adding 40,000 values took %v", took)
	}
}

func TestFilterNeverMatchesPassword(t *testing.T) {
	m := Matcher{Index: UserIndex()}
	attrs := map[string]any{"userName": "a", "password": "Hunter2"}
	for _, f := range []string{`password sw "H"`, `password pr`, `password eq "Hunter2"`} {
		e, err := fp.ParseFilter([]byte(f))
		if err != nil {
			t.Fatal(err)
		}
		if m.Match(e, attrs, nil) {
			t.Errorf("%s matched", f)
		}
	}
}

func TestFoldKeyCanonicalCaseless(t *testing.T) {
	pairs := [][2]string{{"ALICE", "alice"}, {"\u00c5sa", "A\u030asa"}, {"\u00c5SA", "\u00e5sa"}, {"Stra\u00dfe", "STRASSE"}}
	for _, p := range pairs {
		if FoldKey(p[0]) != FoldKey(p[1]) {
			t.Errorf("FoldKey(%q) %q != FoldKey(%q) %q", p[0], FoldKey(p[0]), p[1], FoldKey(p[1]))
		}
	}
	if FoldKey("alice") == FoldKey("alicf") {
		t.Error("different names folded together")
	}
}
