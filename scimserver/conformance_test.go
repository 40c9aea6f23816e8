package scimserver

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

func patchOps(ops ...map[string]any) map[string]any {
	return map[string]any{"schemas": []string{scim.PatchOpSchema}, "Operations": ops}
}

func patchList(ops []any) map[string]any {
	return map[string]any{"schemas": []string{scim.PatchOpSchema}, "Operations": ops}
}

func wantError(t *testing.T, rep reply, status int, scimType string) {
	t.Helper()
	if rep.status != status || (scimType != "" && rep.body["scimType"] != scimType) {
		t.Fatalf("status %d scimType %v, want %d %q: %s", rep.status, rep.body["scimType"], status, scimType, rep.raw)
	}
}

// TestRFC7644Conformance covers what issue 9's strict targets and Entra rely on.
func TestRFC7644Conformance(t *testing.T) {
	ts := startTestServer(t, "")
	id := ts.mustStatus(ts.do("POST", "/Users", userBody("alice", "e1")), 201).body["id"].(string)
	boss := ts.mustStatus(ts.do("POST", "/Users", userBody("boss", "e2")), 201).body["id"].(string)

	t.Run("unknown schema URN is invalidValue", func(t *testing.T) {
		b := userBody("carol", "")
		b["schemas"] = []string{scim.UserSchema, "urn:example:params:scim:schemas:extension:nope:2.0:User"}
		wantError(t, ts.do("POST", "/Users", b), 400, "invalidValue")
		b["schemas"] = []string{}
		wantError(t, ts.do("POST", "/Users", b), 400, "invalidValue")
		delete(b, "schemas")
		wantError(t, ts.do("POST", "/Users", b), 400, "invalidValue")
		b["schemas"] = []string{scim.GroupSchema}
		wantError(t, ts.do("POST", "/Users", b), 400, "invalidValue")
	})
	t.Run("Entra's ADSCIM group schema is tolerated", func(t *testing.T) {
		ts.mustStatus(ts.do("POST", "/Groups", map[string]any{"schemas": []string{scim.GroupSchema, entraGroupSchema},
			"displayName": "G", "externalId": "g", "meta": map[string]any{"resourceType": "Group"}}), 201)
	})
	t.Run("remove without path is noTarget", func(t *testing.T) {
		wantError(t, ts.do("PATCH", "/Users/"+id, patchOps(map[string]any{"op": "remove"})), 400, "noTarget")
	})
	t.Run("replace with a value filter matching nothing is noTarget", func(t *testing.T) {
		wantError(t, ts.do("PATCH", "/Users/"+id, patchOps(map[string]any{"op": "replace",
			"path": `phoneNumbers[type eq "mobile"].value`, "value": "+1 555"})), 400, "noTarget")
		// and the failed PATCH changed nothing
		if u := ts.do("GET", "/Users/"+id, nil).body; u["phoneNumbers"] != nil || u["meta"].(map[string]any)["version"] != `W/"1"` {
			t.Fatalf("failed PATCH left a trace: %v", u)
		}
	})
	t.Run("Entra's string manager", func(t *testing.T) {
		ts.mustStatus(ts.do("PATCH", "/Users/"+id, patchOps(map[string]any{"op": "Add",
			"path": scim.EnterpriseSchema + ":manager", "value": boss})), 200)
		m := ts.do("GET", "/Users/"+id, nil).body[scim.EnterpriseSchema].(map[string]any)["manager"].(map[string]any)
		if m["value"] != boss {
			t.Fatalf("manager %v", m)
		}
	})
	t.Run("control characters are refused", func(t *testing.T) {
		for _, bad := range []string{"nul\x00x", "esc\x1b[31m", "crlf\r\nInjected: 1", "del\x7f"} {
			wantError(t, ts.do("POST", "/Users", userBody(bad, "")), 400, "invalidValue")
			wantError(t, ts.do("POST", "/Users", userBody("ok-"+fmt.Sprint(len(bad)), bad)), 400, "invalidValue")
		}
		wantError(t, ts.do("PATCH", "/Users/"+id, patchOps(map[string]any{"op": "replace", "path": "userName", "value": "a\nb"})), 400, "invalidValue")
	})
	t.Run("userName unique after NFC and case folding", func(t *testing.T) {
		ts.mustStatus(ts.do("POST", "/Users", userBody("\u00c5sa", "")), 201) // Å precomposed
		wantError(t, ts.do("POST", "/Users", userBody("A\u030aSA", "")), 409, "uniqueness")
		if n := total(ts.do("GET", filterQ("userName eq \"a\u030asa\""), nil)); n != 1 {
			t.Fatalf("decomposed lookup found %d", n)
		}
	})
	t.Run("Host header never decides locations", func(t *testing.T) {
		rep := ts.do("POST", "/Users", userBody("dave", ""), "Host", "evil.example")
		ts.mustStatus(rep, 201)
		loc := rep.header.Get("Location")
		if !strings.HasPrefix(loc, ts.base+"/Users/") || strings.Contains(rep.raw, "evil.example") {
			t.Fatalf("Location %q body %s", loc, rep.raw)
		}
	})
	t.Run("password is discarded and never filterable", func(t *testing.T) {
		b := userBody("erin", "")
		b["password"] = "Hunter2-secret"
		rep := ts.mustStatus(ts.do("POST", "/Users", b), 201)
		if strings.Contains(rep.raw, "Hunter2") || strings.Contains(strings.ToLower(rep.raw), `"password"`) {
			t.Fatalf("password returned: %s", rep.raw)
		}
		wantError(t, ts.do("GET", filterQ(`password sw "H"`), nil), 400, "invalidFilter")
		wantError(t, ts.do("GET", filterQ(`userName eq "erin" and password pr`), nil), 400, "invalidFilter")
		ts.mustStatus(ts.do("PATCH", "/Users/"+rep.body["id"].(string), patchOps(map[string]any{"op": "replace", "value": map[string]any{"password": "Other-secret"}})), 200)
		var found bool
		_ = ts.st.ForEachResource(state.KindUser, func(_ string, data []byte) error {
			found = found || strings.Contains(string(data), "secret")
			return nil
		})
		if found {
			t.Fatal("a password reached the state file")
		}
	})
	t.Run("unknown endpoints and methods", func(t *testing.T) {
		wantError(t, ts.do("POST", "/Bulk", `{}`), 501, "")
		wantError(t, ts.do("GET", "/Me", nil), 501, "")
		wantError(t, ts.do("PUT", "/Users", `{}`), 405, "")
		wantError(t, ts.do("GET", "/Nope", nil), 404, "")
	})
}

func TestPasswordHashOption(t *testing.T) {
	ts := startTestServerWith(t, "", func(c *ServerConfig) { c.Password = PasswordHash }, zap.NewNop())
	b := userBody("frank", "")
	b["password"] = "Correct-Horse"
	id := ts.mustStatus(ts.do("POST", "/Users", b), 201).body["id"].(string)
	r := ts.srv.store.get(state.KindUser, id)
	if r.pwHash == "" || strings.Contains(r.pwHash, "Correct") || !verifyPassword(r.pwHash, "Correct-Horse") || verifyPassword(r.pwHash, "wrong") {
		t.Fatalf("stored hash %q", r.pwHash)
	}
	if rep := ts.do("GET", "/Users/"+id, nil); strings.Contains(rep.raw, "argon2") {
		t.Fatalf("hash returned: %s", rep.raw)
	}
	ts.mustStatus(ts.do("PATCH", "/Users/"+id, patchOps(map[string]any{"op": "remove", "path": "password"})), 200)
	if ts.srv.store.get(state.KindUser, id).pwHash != "" {
		t.Fatal("remove password kept the hash")
	}
}

// TestLimitsAnswerWithTheirKey sends one request over each limit.
func TestLimitsAnswerWithTheirKey(t *testing.T) {
	ts := startTestServerWith(t, "", func(c *ServerConfig) {
		c.MaxFilterLength, c.MaxFilterDepth, c.MaxFilterTerms = 200, 4, 5
		c.MaxPatchOperations, c.MaxValuesPerAttribute, c.MaxMembersPerRequest, c.MaxGroupMembers = 3, 4, 5, 6
		c.MaxResources, c.MaxResourcesPerToken = 12, 10
		c.MaxGroupBodyBytes = 128 << 10
		c.MaxPatchMemberWork = 16 // the least it may be: max_group_members + 2 × max_members_per_request
	}, zap.NewNop())
	reg := prometheus.NewRegistry()
	if err := ts.srv.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	id := ts.mustStatus(ts.do("POST", "/Users", userBody("alice", "")), 201).body["id"].(string)
	g := ts.mustStatus(ts.do("POST", "/Groups", map[string]any{"schemas": []string{scim.GroupSchema}, "displayName": "G"}), 201).body["id"].(string)
	many := func(n int, f func(i int) any) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	email := func(i int) any { return map[string]any{"value": fmt.Sprintf("a%d@x.example", i), "type": "other"} }
	tests := []struct {
		key          string
		method, path string
		body         any
		status       int
		scimType     string
	}{
		{"max_filter_length", "GET", filterQ(`userName eq "` + strings.Repeat("a", 300) + `"`), nil, 400, "invalidFilter"},
		{"max_filter_depth", "GET", filterQ(strings.Repeat("(", 5) + `userName eq "a"` + strings.Repeat(")", 5)), nil, 400, "invalidFilter"},
		{"max_filter_terms", "GET", filterQ(strings.TrimSuffix(strings.Repeat(`userName eq "a" or `, 6), " or ")), nil, 400, "invalidFilter"},
		{"max_filter_depth", "PATCH", "/Users/" + id, patchOps(map[string]any{"op": "remove", "path": `emails[not (not (not (not (not (value eq "x")))))]`}), 400, "invalidFilter"},
		{"max_patch_operations", "PATCH", "/Users/" + id, patchList(many(4, func(int) any { return map[string]any{"op": "replace", "path": "title", "value": "t"} })), 413, ""},
		{"max_values_per_attribute", "PATCH", "/Users/" + id, patchOps(map[string]any{"op": "add", "path": "emails", "value": many(5, email)}), 400, "invalidValue"},
		{"max_values_per_attribute", "POST", "/Users", func() any { b := userBody("bob", ""); b["emails"] = many(5, email); return b }(), 400, "invalidValue"},
		{"max_members_per_request", "PATCH", "/Groups/" + g, patchOps(map[string]any{"op": "add", "path": "members", "value": many(6, func(i int) any { return map[string]any{"value": fmt.Sprint("m", i)} })}), 413, ""},
		{"max_group_body_bytes", "POST", "/Groups", map[string]any{"schemas": []string{scim.GroupSchema}, "displayName": strings.Repeat("x", 130<<10)}, 413, ""},
		{"max_body_bytes", "POST", "/Users", func() any { b := userBody("big", ""); b["title"] = strings.Repeat("x", 70<<10); return b }(), 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.key+" "+tt.method, func(t *testing.T) {
			rep := ts.do(tt.method, tt.path, tt.body)
			wantError(t, rep, tt.status, tt.scimType)
			if !strings.Contains(rep.raw, "server."+tt.key) {
				t.Fatalf("detail does not name server.%s: %s", tt.key, rep.raw)
			}
		})
	}
	// quotas: 10 per token, 12 in total (2 stored already)
	for i := 0; i < 8; i++ {
		ts.mustStatus(ts.do("POST", "/Users", userBody(fmt.Sprint("q", i), "")), 201)
	}
	rep := ts.do("POST", "/Users", userBody("q-over", ""))
	wantError(t, rep, 400, "")
	if !strings.Contains(rep.raw, "server.max_resources_per_token") {
		t.Fatalf("quota detail: %s", rep.raw)
	}
	// members per group: 6 users exist besides alice; a 7th member is over max_group_members
	users := ts.do("GET", "/Users?attributes=id", nil).body["Resources"].([]any)
	var ms []any
	for _, u := range users {
		ms = append(ms, map[string]any{"value": u.(map[string]any)["id"]})
	}
	for i := 0; i < len(ms); i += 5 {
		rep = ts.do("PATCH", "/Groups/"+g, patchOps(map[string]any{"op": "add", "path": "members", "value": ms[i:min(i+5, len(ms))]}))
	}
	wantError(t, rep, 400, "")
	if !strings.Contains(rep.raw, "server.max_group_members") {
		t.Fatalf("group size detail: %s", rep.raw)
	}
	// the group has 5 members: two filter scans and the passes around them are over 16 visits,
	// a member looked up by id is not
	scans := patchOps(map[string]any{"op": "replace", "path": "members.display", "value": "y"},
		map[string]any{"op": "replace", "path": `members[type eq "User"].display`, "value": "z"})
	rep = ts.do("PATCH", "/Groups/"+g, scans)
	wantError(t, rep, 413, "")
	if !strings.Contains(rep.raw, "server.max_patch_member_work") {
		t.Fatalf("member work detail: %s", rep.raw)
	}
	byID := patchOps(map[string]any{"op": "replace", "path": fmt.Sprintf(`members[value eq "%s"].display`, ms[0].(map[string]any)["value"]), "value": "y"})
	ts.mustStatus(ts.do("PATCH", "/Groups/"+g, byID), 204)
	if got := testutil.ToFloat64(ts.srv.metrics.refused.WithLabelValues("max_patch_member_work")); got != 1 {
		t.Fatalf("member work refusals counted %v, want 1", got)
	}
	if got := testutil.ToFloat64(ts.srv.metrics.refused.WithLabelValues("max_filter_depth")); got != 2 {
		t.Fatalf("refusals counted %v, want 2", got)
	}
}

func TestFailedAuthLoggedRateLimitedAndCounted(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	ts := startTestServerWith(t, "", nil, zap.New(core))
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest("GET", ts.base+"/Users", nil)
		req.Header.Set("Authorization", "Bearer wrong-token-"+fmt.Sprint(i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	entries := logs.FilterMessage("authentication failed").All()
	if len(entries) != 1 {
		t.Fatalf("%d log lines for 20 failures from one host, want 1", len(entries))
	}
	f := entries[0].ContextMap()
	if f["remote"] != "127.0.0.1" || f["reason"] != "unknown token" {
		t.Fatalf("fields %v", f)
	}
	for _, e := range logs.All() {
		for _, v := range e.ContextMap() {
			if strings.Contains(fmt.Sprint(v), "wrong-token") {
				t.Fatalf("token logged: %v", e.ContextMap())
			}
		}
	}
	if got := testutil.ToFloat64(ts.srv.metrics.authFailures.WithLabelValues("unknown token")); got != 20 {
		t.Fatalf("metric %v, want 20", got)
	}
}
