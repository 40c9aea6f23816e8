package scim

import "testing"

// TestValidateUser: what is refused before it is sent, and which attribute the error names.
func TestValidateUser(t *testing.T) {
	ok := func() Doc {
		return Doc{"schemas": []any{UserSchema}, "userName": "alice", "name": map[string]any{"givenName": "Alice", "familyName": "Smith"},
			"emails": []any{map[string]any{"value": "alice@example.org", "type": "work"}},
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"department": "R&D"}}
	}
	if err := ValidateUser(ok()); err != nil {
		t.Fatalf("a valid user: %+v", err)
	}
	for _, tt := range []struct {
		name      string
		change    func(Doc)
		attribute string
		rule      string
	}{
		{"empty userName", func(d Doc) { d["userName"] = "  " }, "userName", "required"},
		{"ESC in a sub-attribute", func(d Doc) { d["name"].(map[string]any)["familyName"] = "Sm\x1bith" }, "name.familyName", "no control characters"},
		{"NUL in an extension", func(d Doc) {
			d["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"].(map[string]any)["department"] = "R\x00D"
		}, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User.department", "no control characters"},
		{"two bad attributes: the first in order is named", func(d Doc) {
			d["title"] = "x\ny"
			d["displayName"] = "a\rb"
		}, "displayName", "no control characters"},
		{"a key whose path another key also has", func(d Doc) {
			// "name.familyName" (a key with a dot) and name.familyName flatten to one path
			d["name.familyName"] = "ok"
			d["name"].(map[string]any)["familyName"] = "x\x01y"
		}, "name.familyName", "no control characters"},
		{"an empty key", func(d Doc) { d[""] = map[string]any{"title": "x\x01y"}; d["title"] = "ok" }, "title", "no control characters"},
		{"CR in a multi-valued attribute", func(d Doc) { d["emails"].([]any)[0].(map[string]any)["value"] = "a\r@x.org" }, "emails[0].value", "no control characters"},
		{"not an email", func(d Doc) { d["emails"].([]any)[0].(map[string]any)["value"] = "alice" }, `emails[type eq "work"].value`, "email address"},
	} {
		d := ok()
		tt.change(d)
		err := ValidateUser(d)
		if err == nil || err.Attribute != tt.attribute || err.Rule != tt.rule {
			t.Errorf("%s: %+v, want %s / %s", tt.name, err, tt.attribute, tt.rule)
		}
	}
}
