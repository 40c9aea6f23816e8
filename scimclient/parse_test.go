package scimclient

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/scim"
)

func TestParseListPage(t *testing.T) {
	for _, tt := range []struct {
		name          string
		in            string
		total, start  int
		n             int
		wantErrSubstr string
	}{
		{"rfc", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":2,"startIndex":1,"itemsPerPage":2,"Resources":[{"id":"a"},{"id":"b"}]}`, 2, 1, 2, ""},
		{"lower-case resources", `{"totalResults":1,"resources":[{"id":"a"}]}`, 1, 0, 1, ""},
		{"numbers as strings", `{"totalResults":"3","startIndex":"2","Resources":[]}`, 3, 2, 0, ""},
		{"exponent", `{"totalResults":1e9,"Resources":[]}`, 1_000_000_000, 0, 0, ""},
		{"no totalResults", `{"Resources":[{"id":"a"}]}`, -1, 0, 1, ""},
		{"null Resources", `{"totalResults":0,"Resources":null}`, 0, 0, 0, ""},
		{"negative total", `{"totalResults":-1}`, 0, 0, 0, "totalResults"},
		{"fractional total", `{"totalResults":1.5}`, 0, 0, 0, "totalResults"},
		{"resource not an object", `{"totalResults":1,"Resources":["a"]}`, 0, 0, 0, "Resources[0]"},
		{"not JSON", `<html>`, 0, 0, 0, "not a ListResponse"},
		{"an array", `[]`, 0, 0, 0, "not a ListResponse"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseListPage([]byte(tt.in))
			if tt.wantErrSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrSubstr) {
					t.Fatalf("err %v, want %q", err, tt.wantErrSubstr)
				}
				return
			}
			if err != nil || p.total != tt.total || p.startIndex != tt.start || len(p.resources) != tt.n {
				t.Fatalf("%+v %v", p, err)
			}
		})
	}
}

func TestParseErrorBody(t *testing.T) {
	for _, tt := range []struct{ in, scimType, detail string }{
		{`{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"400","scimType":"noTarget","detail":"no match"}`, "noTarget", "no match"},
		{`{"status":409,"scimType":"uniqueness","detail":"taken"}`, "uniqueness", "taken"},
		{`{"message":"rate limited"}`, "", "rate limited"},
		{`{"error":"invalid_token","error_description":"expired"}`, "", "expired"},
		{`{"Errors":[{"description":"SCIM 1.1 style","code":400}]}`, "", "SCIM 1.1 style"},
		{`{"detail":{"nested":true}}`, "", `{"nested":true}`},
		{`<html><body>502 Bad Gateway</body></html>`, "", `<html><body>502 Bad Gateway</body></html>`},
		{``, "", ""},
	} {
		st, d := parseErrorBody([]byte(tt.in))
		if st != tt.scimType || d != tt.detail {
			t.Errorf("parseErrorBody(%s) = %q, %q", tt.in, st, d)
		}
	}
}

func TestParseDiscoveryLeniently(t *testing.T) {
	spc, err := parseServiceProviderConfig([]byte(`{"patch":{"supported":"true"},"etag":{"supported":true},"filter":{"supported":true,"maxResults":"100"}}`))
	if err != nil || !spc.patch || !spc.etag || spc.maxResults != 100 {
		t.Fatalf("%+v %v", spc, err)
	}
	spc, err = parseServiceProviderConfig([]byte(`{"filter":{"maxResults":0}}`))
	if err != nil || spc.maxResults != 0 || spc.patch {
		t.Fatalf("%+v %v", spc, err)
	}
	rts, err := parseResourceTypes([]byte(`[{"name":"User","endpoint":"Users","schemaExtensions":[{"schema":"urn:x","required":"false"}]},
		{"name":"Group","endpoint":"https://t.example/scim/v2/Groups"}, "junk"]`))
	if err != nil || len(rts) != 2 || rts[0].endpoint != Users || rts[1].endpoint != Groups {
		t.Fatalf("%+v %v", rts, err)
	}
	if required, declared := rts[0].extensions["urn:x"]; !declared || required {
		t.Fatalf("%+v %v", rts, err)
	}
	for in, want := range map[string]Endpoint{"/Groups": Groups, "Groups/": Groups, "../..": "", "/a b": "", "": "", "https://h/x/Teams": "/Teams"} {
		if got := endpointOf(in); got != want {
			t.Errorf("endpointOf(%q) = %q, want %q", in, got, want)
		}
	}
	docs, err := parseSchemas([]byte(`{"totalResults":1,"Resources":[{"id":"urn:ietf:params:scim:schemas:core:2.0:User","attributes":[
		{"name":"emails","type":"complex","multiValued":"true","subAttributes":[{"name":"value"}]},{"type":"string"}]}]}`))
	if err != nil || len(docs) != 1 || len(docs[0].Attributes) != 1 || !docs[0].Attributes[0].MultiValued || len(docs[0].Attributes[0].SubAttributes) != 1 {
		t.Fatalf("%+v %v", docs, err)
	}
	if _, err := parseSchemas([]byte(`{"detail":"nope"}`)); err == nil {
		t.Fatal("an error document is not a schema list")
	}
}

func FuzzParseListPage(f *testing.F) {
	f.Add([]byte(`{"totalResults":2,"startIndex":1,"Resources":[{"id":"a"},{"id":"b"}]}`))
	f.Add([]byte(`{"totalResults":"1e400","Resources":[{}]}`))
	f.Add([]byte(strings.Repeat(`{"a":`, 10000)))
	f.Add([]byte(`{"Resources":[` + strings.Repeat(`[`, 5000) + `]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parseListPage(data)
		if err != nil {
			return
		}
		if p.total < -1 || p.startIndex < 0 {
			t.Fatalf("%+v", p)
		}
		for _, r := range p.resources {
			if r == nil {
				t.Fatal("nil resource")
			}
		}
	})
}

func FuzzErrorBody(f *testing.F) {
	f.Add([]byte(`{"scimType":"x\u001b[2J","detail":"a\nRun 99: 200 created"}`))
	f.Add([]byte(`{"Errors":[{"description":"` + strings.Repeat("é", 1000) + `"}]}`))
	f.Add([]byte(strings.Repeat("[", 12000))) // past encoding/json's nesting limit
	c := &Client{red: config.NewRedactor(testToken), log: zap.NewNop()}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := c.apiError("GET", "GET /Users", response{status: 400, body: append(data, []byte(testToken)...)})
		ae := err.(*APIError)
		checkClean(t, string(data), ae.Detail, MaxTextLen)
		checkClean(t, string(data), ae.ScimType, 64)
		if strings.Contains(err.Error(), testToken) {
			t.Fatalf("token in %q", err.Error())
		}
	})
}

func FuzzDiscoveryDocuments(f *testing.F) {
	f.Add([]byte(`{"patch":{"supported":true},"filter":{"maxResults":1e99}}`))
	f.Add([]byte(`{"Resources":[{"name":"Group","endpoint":"../../x","schemaExtensions":[{"schema":1}]}]}`))
	f.Add([]byte(`[{"id":"u","attributes":[{"name":"a","subAttributes":[{"name":"b","subAttributes":[{"name":"c"}]}]}]}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if spc, err := parseServiceProviderConfig(data); err == nil && spc.maxResults < 0 {
			t.Fatalf("%+v", spc)
		}
		if rts, err := parseResourceTypes(data); err == nil {
			for _, rt := range rts {
				if rt.endpoint != "" && (strings.Contains(string(rt.endpoint[1:]), "/") || strings.Contains(string(rt.endpoint), "..")) {
					t.Fatalf("endpoint %q", rt.endpoint)
				}
			}
		}
		_, _ = parseSchemas(data)
	})
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "999999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT", "1.5", "-1", "NaN", "+5", "0x10", "1e9"} {
		f.Add(s)
	}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, h string) {
		d, ok := parseRetryAfter(h, now)
		if !ok && d != 0 || d < 0 || d > forever {
			t.Fatalf("parseRetryAfter(%q) = %v, %v", h, d, ok)
		}
	})
}

func TestHolds(t *testing.T) {
	d := Doc{"id": "abc", "userName": "Alice", "name": map[string]any{"givenName": "Al"},
		"emails":              []any{map[string]any{"value": "a@x.org", "type": "work"}},
		scim.EnterpriseSchema: map[string]any{"employeeNumber": "42"}}
	for _, tt := range []struct {
		attr, value string
		want        bool
	}{
		{"userName", "ALICE", true}, {"userName", "bob", false}, {"id", "abc", true},
		{"name.givenName", "al", true}, {"emails", "a@x.org", true}, {"emails.value", "A@X.ORG", true},
		{"emails.type", "home", false}, {scim.EnterpriseSchema + ":employeeNumber", "42", true},
		{"externalId", "", false}, {"urn:nope:x", "42", false},
	} {
		if got := holds(d, tt.attr, tt.value); got != tt.want {
			t.Errorf("holds(%q, %q) = %v", tt.attr, tt.value, got)
		}
	}
}
