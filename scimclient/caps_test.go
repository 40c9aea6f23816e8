package scimclient

import (
	"encoding/json"
	"testing"

	"github.com/scimsync/scimsync/scim"
)

func TestCapabilitiesDeclares(t *testing.T) {
	var docs []scim.SchemaDocument
	raw := `[{"id":"urn:ietf:params:scim:schemas:core:2.0:User","attributes":[
		{"name":"userName","type":"string"},
		{"name":"name","type":"complex","subAttributes":[{"name":"givenName","type":"string"}]},
		{"name":"emails","type":"complex","multiValued":true,"subAttributes":[{"name":"value"},{"name":"type"}]}]},
	 {"id":"urn:ietf:params:scim:schemas:extension:scimsync:2.0:User","attributes":[
		{"name":"ldapUserDN","type":"string"},{"name":"managementMode","type":"string"}]}]`
	if err := json.Unmarshal([]byte(raw), &docs); err != nil {
		t.Fatal(err)
	}
	caps := Capabilities{Extensions: map[string]bool{scim.ScimsyncSchema: true}, Schemas: scim.IndexDocuments(scim.UserSchema, docs)}
	for _, tt := range []struct {
		urn, attr, sub string
		want           bool
	}{
		{"", "userName", "", true},
		{"", "externalId", "", true}, // a common attribute: no schema lists it
		{"", "title", "", false},
		{"", "name", "givenName", true},
		{"", "name", "familyName", false},
		{"", "emails", "value", true},
		{scim.UserSchema, "userName", "", true},
		{scim.ScimsyncSchema, "ldapUserDN", "", true},
		{scim.ScimsyncSchema, "description", "", false},  // issue 9 case 3
		{scim.EnterpriseSchema, "department", "", false}, // extension not on the resource type
	} {
		if got := caps.Declares(tt.urn, tt.attr, tt.sub); got != tt.want {
			t.Errorf("Declares(%q, %q, %q) = %v, want %v", tt.urn, tt.attr, tt.sub, got, tt.want)
		}
	}
	// without /Schemas, whatever /ResourceTypes declares is trusted whole
	caps.Schemas = nil
	if !caps.Declares(scim.ScimsyncSchema, "description", "") || caps.Declares(scim.EnterpriseSchema, "department", "") {
		t.Error("fallback to /ResourceTypes alone is wrong")
	}
}
