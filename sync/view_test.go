package sync

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scimsync/scimsync/scim"
)

func samplePlan(t *testing.T) *Plan {
	p := newPlan("delta")
	t.Cleanup(func() { _ = p.Close() })
	p.Unchanged, p.Source, p.Target, p.Known = 17, 23, -1, 20
	p.Read = ReadInfo{Mechanism: "syncrepl", Entries: 23}
	p.Warnings = []string{"mapping enterprise.department is not sent: the target does not declare urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"}
	for _, it := range []Item{
		{Action: ActionCreate, Name: "zoe", ExternalID: "u-20", DN: "uid=zoe,ou=people,dc=example,dc=org",
			Values: map[string]string{"userName": "zoe", "externalId": "u-20", "active": "true"},
			Body:   map[string]any{"schemas": []any{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": "zoe", "externalId": "u-20", "active": true}},
		{Action: ActionUpdate, Name: "alice", ExternalID: "u-1", TargetID: "t-1", MatchedBy: "link", Version: `W/"3"`,
			Changes: []Diff{{Attribute: "emails.work", Old: "", New: "alice@example.org"}, {Attribute: "title", Old: "Engineer", New: "Principal Engineer"}},
			Operations: []scim.PatchOp{
				{Op: "add", Path: "emails", Value: []any{map[string]any{"type": "work", "value": "alice@example.org", "primary": true}}},
				{Op: "replace", Path: "title", Value: "Principal Engineer"}}},
		{Action: ActionUpdate, Name: "bob", ExternalID: "u-2", TargetID: "t-2", Adopt: true, MatchedBy: "userName",
			Reason: "exists on the target (matched by userName): adopting"},
		{Action: ActionUpdate, Name: "carol", ExternalID: "u-30", TargetID: "t-3", MatchedBy: "userName",
			Relink: &Relink{From: "u-3", To: "u-30"}, Reason: "re-linked: externalId u-3 → u-30 (the old directory entry is gone)",
			Changes:    []Diff{{Attribute: "externalId", Old: "u-3", New: "u-30"}},
			Operations: []scim.PatchOp{{Op: "replace", Path: "externalId", Value: "u-30"}}},
		{Action: ActionDisable, Name: "mallory", ExternalID: "u-9", TargetID: "t-9", Reason: "gone from the directory",
			Changes:    []Diff{{Attribute: "active", Old: "true", New: "false"}},
			Operations: []scim.PatchOp{{Op: "replace", Path: "active", Value: false}}},
		{Action: ActionSkip, Name: "svc-backup", ExternalID: "u-90", Reason: "managementMode CMS from sync.overrides[0]"},
		{Action: ActionInvalid, DN: "cn=Nameless Person,ou=people,dc=example,dc=org", ExternalID: "u-91", Attribute: "userName",
			Rule: "required", Reason: "userName is required but uid is missing"},
	} {
		if err := p.add(it); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestPlanViewsGolden pins what administrators read (text) and what scripts parse (JSON).
// UPDATE_GOLDEN=1 rewrites the files after an intended change.
func TestPlanViewsGolden(t *testing.T) {
	for name, write := range map[string]func(*bytes.Buffer, *Plan) error{
		"plan.txt":  func(b *bytes.Buffer, p *Plan) error { return WriteText(b, p) },
		"plan.json": func(b *bytes.Buffer, p *Plan) error { return WriteJSON(b, p) },
	} {
		var got bytes.Buffer
		if err := write(&got, samplePlan(t)); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", name)
		if os.Getenv("UPDATE_GOLDEN") != "" {
			_ = os.MkdirAll("testdata", 0o755)
			if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s changed (UPDATE_GOLDEN=1 to accept):\n%s", name, got.String())
		}
	}
}

// TestPlanJSONRoundTrip: a plan the daemon printed reads back into the same plan (the CLI shows
// the daemon's plans as text).
func TestPlanJSONRoundTrip(t *testing.T) {
	var first, second bytes.Buffer
	p := samplePlan(t)
	if err := WriteJSON(&first, p); err != nil {
		t.Fatal(err)
	}
	var back Plan
	if err := json.Unmarshal(first.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if err := WriteJSON(&second, &back); err != nil {
		t.Fatal(err)
	}
	if first.String() != second.String() || back.Pending() != p.Pending() || len(back.Items()) != len(p.Items()) {
		t.Fatalf("round trip differs:\n%s\n%s", first.String(), second.String())
	}
}

// TestLargePlanSpillsAndStreams: a plan too large to keep spills to disk, reads back in order,
// and its JSON (streamed from the spool without decoding) is the same document item for item.
func TestLargePlanSpillsAndStreams(t *testing.T) {
	p := newPlan("full")
	defer p.Close()
	const n = sortLimit + 5000
	for i := 0; i < n; i++ {
		body := map[string]any{"userName": fmt.Sprintf("user%06d", i), "title": strings.Repeat("x", 200)}
		if err := p.add(Item{Action: ActionCreate, Name: fmt.Sprintf("user%06d", i), ExternalID: fmt.Sprint(i), Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	if seg := p.items.segs[segKey{KindUser, ActionCreate}]; seg.file == nil {
		t.Fatal("a 5 MB segment did not spill to disk")
	}
	i := 0
	err := p.Each(func(it Item) error {
		if it.Name != fmt.Sprintf("user%06d", i) || it.Body["title"] == nil {
			t.Fatalf("item %d: %+v", i, it)
		}
		i++
		return nil
	})
	if err != nil || i != n {
		t.Fatalf("read back %d of %d: %v", i, n, err)
	}
	var out bytes.Buffer
	if err := WriteJSON(&out, p); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Items []Item `json:"items"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || len(doc.Items) != n || doc.Items[n-1].Name != fmt.Sprintf("user%06d", n-1) {
		t.Fatalf("streamed JSON: %d items, %v", len(doc.Items), err)
	}
}

// TestTextPlanIsSafeToPrint: a name, value or reason that a directory or target controls cannot
// clear or recolour the terminal, forge a plan line, or reorder a line with bidi controls; the
// JSON plan keeps the exact values.
func TestTextPlanIsSafeToPrint(t *testing.T) {
	p := newPlan("delta")
	t.Cleanup(func() { _ = p.Close() })
	hostile := "eve\x1b[2J\x1b]0;owned\x07\u202egnp.exe\nDELETE  user  alice  gone"
	for _, it := range []Item{
		{Action: ActionCreate, Name: hostile, ExternalID: "u-1", DN: "uid=eve,dc=x\r\nnote: all clear",
			Values: map[string]string{"userName": hostile}},
		{Action: ActionUpdate, Name: "bob", ExternalID: "u-2", TargetID: "t-2", Reason: "target said: \u009b31mred",
			Changes:    []Diff{{Attribute: "title", Old: "a\u202eb", New: strings.Repeat("x", 5000)}},
			Operations: []scim.PatchOp{{Op: "replace", Path: "title", Value: "\u009b2J" + strings.Repeat("y", 5000)}}},
	} {
		if err := p.add(it); err != nil {
			t.Fatal(err)
		}
	}
	p.Warnings = []string{"w\x1b[31m\nSTOPPED: fake"}
	var out bytes.Buffer
	if err := WriteText(&out, p); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, bad := range []string{"\x1b", "\u009b", "\u202e", "\x07", "\r"} {
		if strings.Contains(text, bad) {
			t.Errorf("text plan carries %q:\n%s", bad, text)
		}
	}
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if strings.HasPrefix(line, "DELETE") || strings.HasPrefix(line, "note: all clear") || strings.HasPrefix(line, "STOPPED") {
			t.Errorf("a value forged the line %q", line)
		}
		if len(line) > 4*maxTextColumn {
			t.Errorf("line of %d bytes: values are not bounded", len(line))
		}
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, p); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Items []Item `json:"items"`
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Items) != 2 || back.Items[0].Name != hostile {
		t.Errorf("the JSON plan must keep the exact name; got %+v", back.Items)
	}
}
