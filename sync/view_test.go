package sync

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func samplePlan() *Plan {
	p := &Plan{FormatVersion: FormatVersion, Summary: map[Action]int{}, Unchanged: 17, Source: 23, Target: 20, Known: 20,
		Warnings: []string{"mapping enterprise.department is not sent: the target does not declare urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"},
		Items: []Item{
			{Action: ActionCreate, UserName: "zoe", ExternalID: "u-20", DN: "uid=zoe,ou=people,dc=example,dc=org"},
			{Action: ActionUpdate, UserName: "alice", ExternalID: "u-1", TargetID: "t-1", MatchedBy: "link",
				Changes: []Diff{{Attribute: "title", Old: "Engineer", New: "Principal Engineer"}, {Attribute: "emails.work", Old: "", New: "alice@example.org"}}},
			{Action: ActionUpdate, UserName: "bob", ExternalID: "u-2", TargetID: "t-2", Adopt: true, MatchedBy: "userName",
				Reason: "exists on the target (matched by userName): adopting"},
			{Action: ActionDisable, UserName: "mallory", ExternalID: "u-9", TargetID: "t-9", Reason: "gone from the directory",
				Changes: []Diff{{Attribute: "active", Old: "true", New: "false"}}},
			{Action: ActionSkip, UserName: "svc-backup", ExternalID: "u-90", Reason: "managementMode CMS from sync.overrides[0]"},
			{Action: ActionInvalid, DN: "cn=Nameless Person,ou=people,dc=example,dc=org", ExternalID: "u-91", Attribute: "userName",
				Rule: "required", Reason: "userName is required but uid is missing"},
		}}
	p.finish()
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
		if err := write(&got, samplePlan()); err != nil {
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
