package scim

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

var (
	pathTitle  = AttrPath{Attr: "title"}
	pathActive = AttrPath{Attr: "active", Bool: true, Default: "true"}
	pathGiven  = AttrPath{Attr: "name", Sub: "givenName"}
	pathFamily = AttrPath{Attr: "name", Sub: "familyName"}
	pathWork   = AttrPath{Attr: "emails", Sub: "value", Type: "work"}
	pathMobile = AttrPath{Attr: "phoneNumbers", Sub: "value", Type: "mobile"}
	pathPhone  = AttrPath{Attr: "phoneNumbers", Sub: "value", Type: "work"}
	pathDept   = AttrPath{Ext: EnterpriseSchema, Attr: "department"}
	pathDesc   = AttrPath{Ext: ScimsyncSchema, Attr: "description"}
	allPaths   = []AttrPath{pathTitle, pathActive, pathGiven, pathFamily, pathWork, pathMobile, pathPhone, pathDept, pathDesc}
)

func doc(t *testing.T, s string) Doc {
	t.Helper()
	var d Doc
	if err := json.Unmarshal([]byte(s), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAttrPathString(t *testing.T) {
	for p, want := range map[AttrPath]string{
		pathTitle: "title",
		pathGiven: "name.givenName",
		pathWork:  `emails[type eq "work"].value`,
		pathDept:  EnterpriseSchema + ":department",
		{Ext: EnterpriseSchema, Attr: "manager", Sub: "value"}: EnterpriseSchema + ":manager.value",
	} {
		if got := p.String(); got != want {
			t.Errorf("%+v: %q, want %q", p, got, want)
		}
	}
}

// TestDiffChoosesTheOperationFromTheCurrentValue covers issue 9 case 1: a value that is absent is
// added, never replaced through a filter that matches nothing.
func TestDiffChoosesTheOperationFromTheCurrentValue(t *testing.T) {
	tests := []struct {
		name    string
		current string
		want    Values
		ops     []PatchOp
	}{
		{"first mobile number", `{"userName":"a","phoneNumbers":[{"type":"work","value":"1"}]}`,
			Values{pathMobile: "2", pathPhone: "1"},
			[]PatchOp{{Op: "add", Path: "phoneNumbers", Value: []any{map[string]any{"type": "mobile", "value": "2"}}}}},
		{"work email added back to a user with none", `{"userName":"a"}`,
			Values{pathWork: "a@x.org"},
			[]PatchOp{{Op: "add", Path: "emails", Value: []any{map[string]any{"type": "work", "value": "a@x.org", "primary": true}}}}},
		{"changed work email", `{"emails":[{"type":"work","value":"old@x.org"}]}`,
			Values{pathWork: "new@x.org"},
			[]PatchOp{{Op: "replace", Path: `emails[type eq "work"].value`, Value: "new@x.org"}}},
		{"mobile number gone", `{"phoneNumbers":[{"type":"mobile","value":"2"},{"type":"work","value":"1"}]}`,
			Values{pathPhone: "1"},
			[]PatchOp{{Op: "remove", Path: `phoneNumbers[type eq "mobile"]`}}},
		{"name absent", `{"userName":"a"}`,
			Values{pathGiven: "Ann", pathFamily: "Lee"},
			[]PatchOp{{Op: "add", Path: "name", Value: map[string]any{"givenName": "Ann", "familyName": "Lee"}}}},
		{"one name part absent, one changed", `{"name":{"familyName":"Lee"}}`,
			Values{pathGiven: "Ann", pathFamily: "Li"},
			[]PatchOp{{Op: "replace", Path: "name.familyName", Value: "Li"}, {Op: "add", Path: "name.givenName", Value: "Ann"}}},
		{"name part removed", `{"name":{"givenName":"Ann","familyName":"Lee"}}`,
			Values{pathGiven: "Ann"},
			[]PatchOp{{Op: "remove", Path: "name.familyName"}}},
		{"simple attribute: added, changed, removed", `{"title":"x"}`,
			Values{pathTitle: "y"},
			[]PatchOp{{Op: "replace", Path: "title", Value: "y"}}},
		{"simple attribute absent", `{}`, Values{pathTitle: "y"}, []PatchOp{{Op: "add", Path: "title", Value: "y"}}},
		{"simple attribute gone", `{"title":"x"}`, Values{}, []PatchOp{{Op: "remove", Path: "title"}}},
		{"extension object absent", `{"userName":"a"}`,
			Values{pathDept: "R&D", pathDesc: "d"},
			[]PatchOp{{Op: "add", Path: EnterpriseSchema + ":department", Value: "R&D"},
				{Op: "add", Path: ScimsyncSchema + ":description", Value: "d"}}},
		{"extension value changed", `{"` + EnterpriseSchema + `":{"department":"Ops"}}`,
			Values{pathDept: "R&D"},
			[]PatchOp{{Op: "replace", Path: EnterpriseSchema + ":department", Value: "R&D"}}},
		{"disable a user with no active attribute", `{}`, Values{pathActive: "false"},
			[]PatchOp{{Op: "add", Path: "active", Value: false}}},
		{"absent active reads as active", `{}`, Values{pathActive: "true"}, nil},
		{"re-enable", `{"active":false}`, Values{pathActive: "true"},
			[]PatchOp{{Op: "replace", Path: "active", Value: true}}},
		{"nothing to do", `{"title":"x","emails":[{"type":"work","value":"a@x.org"}]}`,
			Values{pathTitle: "x", pathWork: "a@x.org"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := doc(t, tt.current)
			before := CopyDoc(cur)
			ops, result, err := Diff(UserIndex(), cur, tt.want, allPaths)
			if err != nil {
				t.Fatal(err)
			}
			if !JSONEqual(ops, tt.ops) {
				got, _ := json.Marshal(ops)
				want, _ := json.Marshal(tt.ops)
				t.Fatalf("ops\n got %s\nwant %s", got, want)
			}
			if !reflect.DeepEqual(cur, before) {
				t.Fatal("Diff changed the current document")
			}
			for _, p := range allPaths {
				if got, _ := p.Read(result); got != wanted(tt.want, p) {
					t.Errorf("result %s = %q, want %q", p, got, wanted(tt.want, p))
				}
			}
		})
	}
}

// FuzzDiff: for any current document and any wanted values, Diff's operations apply cleanly,
// produce exactly what is wanted, and never `replace` through a value filter that matches no
// element of the current document (RFC 7644 §3.5.2.3: 400 noTarget on strict servers).
func FuzzDiff(f *testing.F) {
	f.Add(`{"emails":[{"type":"work","value":"a"}],"name":{"givenName":"x"}}`, "b", "", "y", "1", "false")
	f.Add(`{"phoneNumbers":"odd","name":"odd","active":"yes"}`, "", "c", "", "", "true")
	f.Add(`{"emails":[{"type":"work"},{"type":"work","value":"b"},7]}`, "c", "d", "", "2", "false")
	f.Fuzz(func(t *testing.T, current, work, mobile, given, title, active string) {
		var cur Doc
		if json.Unmarshal([]byte(current), &cur) != nil || cur == nil {
			return
		}
		want := Values{pathActive: active}
		for p, v := range map[AttrPath]string{pathWork: work, pathMobile: mobile, pathGiven: given, pathTitle: title} {
			if v != "" {
				want[p] = v
			}
		}
		if active != "true" && active != "false" {
			return
		}
		ops, _, err := Diff(UserIndex(), cur, want, allPaths)
		if err != nil {
			// a document whose shapes the model cannot patch (a string where an object is
			// expected) is refused, never patched wrongly
			if !strings.Contains(err.Error(), "scim:") {
				t.Fatal(err)
			}
			return
		}
		for _, op := range ops {
			if op.Op == OpReplace && strings.Contains(op.Path, "[") {
				p := AttrPath{Attr: strings.SplitN(op.Path, "[", 2)[0]}
				typ := strings.SplitN(strings.SplitN(op.Path, `"`, 3)[1], `"`, 2)[0]
				p.Type = typ
				if len(p.elements(GetFold(cur, p.Attr))) == 0 {
					t.Fatalf("replace %s matches nothing in %s", op.Path, current)
				}
			}
		}
	})
}
