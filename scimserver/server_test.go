package scimserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

const testToken = "test-token-0123456789"

type testServer struct {
	t    *testing.T
	base string
	srv  *Server
	st   *state.Store
	path string
}

func startTestServer(t *testing.T, path string) *testServer {
	t.Helper()
	return startTestServerWith(t, path, nil, zaptest.NewLogger(t))
}

// startTestServerWith starts a server whose config tweak may change, logging to log.
func startTestServerWith(t *testing.T, path string, tweak func(*ServerConfig), log *zap.Logger) *testServer {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "state.db")
	}
	st, err := state.Open(path, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultServerConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.MaxResults = 50
	cfg.MaxBodyBytes = 64 << 10
	cfg.Tokens = []TokenConfig{{Name: "okta", Token: config.NewSecret(testToken)}}
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := NewServer(cfg, st, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, base: "http://" + srv.Addr() + "/scim/v2", srv: srv, st: st, path: path}
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) stop() {
	if ts.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = ts.srv.Stop(ctx)
	_ = ts.st.Close()
	ts.srv = nil
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (ts *testServer) do(method, path string, body any, headers ...string) reply {
	ts.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, ts.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/scim+json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	rep := reply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &rep.body)
	return rep
}

func (ts *testServer) mustStatus(rep reply, want int) reply {
	ts.t.Helper()
	if rep.status != want {
		ts.t.Fatalf("status %d, want %d: %s", rep.status, want, rep.raw)
	}
	return rep
}

func userBody(name, ext string) map[string]any {
	return map[string]any{
		"schemas":             []string{scim.UserSchema, scim.EnterpriseSchema},
		"userName":            name,
		"externalId":          ext,
		"name":                map[string]any{"givenName": "Given " + name, "familyName": "Family"},
		"emails":              []any{map[string]any{"value": name + "@example.org", "type": "work", "primary": true}},
		"active":              true,
		scim.EnterpriseSchema: map[string]any{"department": "R&D"},
	}
}

func filterQ(f string) string { return "/Users?filter=" + url.QueryEscape(f) }

func total(rep reply) int {
	n, _ := rep.body["totalResults"].(float64)
	return int(n)
}

func TestCreateReturnsLocationAndCompleteMeta(t *testing.T) {
	ts := startTestServer(t, "")
	rep := ts.mustStatus(ts.do("POST", "/Users", userBody("alice", "ext-1")), 201)
	meta := rep.body["meta"].(map[string]any)
	id := rep.body["id"].(string)
	wantLoc := ts.base + "/Users/" + id
	if rep.header.Get("Location") != wantLoc || meta["location"] != wantLoc {
		t.Fatalf("Location %q meta.location %q, want %q", rep.header.Get("Location"), meta["location"], wantLoc)
	}
	for _, k := range []string{"resourceType", "created", "lastModified", "version"} {
		if meta[k] == nil || meta[k] == "" {
			t.Errorf("meta.%s missing: %v", k, meta)
		}
	}
	if rep.header.Get("ETag") != meta["version"] {
		t.Errorf("ETag %q != meta.version %q", rep.header.Get("ETag"), meta["version"])
	}
	ext := rep.body[scim.ScimsyncSchema].(map[string]any)
	if ext["managementMode"] != scim.ModeDefault {
		t.Errorf("managementMode default: %v", ext)
	}
}

func TestFilters(t *testing.T) {
	ts := startTestServer(t, "")
	for i, n := range []string{"alice", "bob", "carol"} {
		b := userBody(n, fmt.Sprintf("ext-%d", i))
		if n == "carol" {
			b["active"] = false
			b["emails"] = []any{map[string]any{"value": "carol@home.example", "type": "home"}}
		}
		ts.mustStatus(ts.do("POST", "/Users", b), 201)
	}
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	tests := []struct {
		filter string
		want   int
	}{
		{`userName eq "ALICE"`, 1},
		{`externalId eq "ext-1"`, 1},
		{`externalId eq "EXT-1"`, 0}, // externalId is caseExact
		{`userName ne "alice"`, 2},
		{`userName co "o"`, 2},
		{`userName sw "a"`, 1},
		{`userName ew "ol"`, 1},
		{`userName pr`, 3},
		{`title pr`, 0},
		{`userName gt "b"`, 2},
		{`userName ge "bob"`, 2},
		{`userName lt "bob"`, 1},
		{`userName le "bob"`, 2},
		{`active eq true`, 2},
		{`active eq false`, 1},
		{`emails.value eq "bob@example.org"`, 1},
		{`emails[type eq "work"].value ew "example.org"`, 2},
		{`emails[type eq "work" and value co "ali"]`, 1},
		{`name.givenName sw "Given b"`, 1},
		{`userName eq "alice" or userName eq "bob"`, 2},
		{`not (userName eq "alice")`, 2},
		{`(userName eq "alice" or userName eq "bob") and active eq true`, 2},
		{`meta.lastModified gt "` + past + `"`, 3},
		{`meta.lastModified lt "` + past + `"`, 0},
		{`displayName pr`, 0},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "R&D"`, 3},
		{`urn:ietf:params:scim:schemas:extension:scimsync:2.0:User:managementMode eq "DEFAULT"`, 3},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			rep := ts.mustStatus(ts.do("GET", filterQ(tt.filter), nil), 200)
			if got := total(rep); got != tt.want {
				t.Fatalf("totalResults %d, want %d", got, tt.want)
			}
		})
	}
	// the id attribute is filterable too
	id := ts.do("GET", filterQ(`userName eq "bob"`), nil).body["Resources"].([]any)[0].(map[string]any)["id"].(string)
	if got := total(ts.do("GET", filterQ(`id eq "`+id+`"`), nil)); got != 1 {
		t.Fatalf("id filter: %d", got)
	}
	rep := ts.do("GET", filterQ(`userName eq`), nil)
	if rep.status != 400 || rep.body["scimType"] != "invalidFilter" {
		t.Fatalf("bad filter: %d %s", rep.status, rep.raw)
	}
}

func TestPagination(t *testing.T) {
	ts := startTestServer(t, "")
	for i := 0; i < 7; i++ {
		ts.mustStatus(ts.do("POST", "/Users", userBody(fmt.Sprintf("u%d", i), "")), 201)
	}
	var seen []string
	for start := 1; start <= 7; start += 3 {
		rep := ts.mustStatus(ts.do("GET", fmt.Sprintf("/Users?startIndex=%d&count=3", start), nil), 200)
		res := rep.body["Resources"].([]any)
		if int(rep.body["itemsPerPage"].(float64)) != len(res) || total(rep) != 7 {
			t.Fatalf("page at %d: itemsPerPage %v, %d resources, total %d", start, rep.body["itemsPerPage"], len(res), total(rep))
		}
		for _, r := range res {
			seen = append(seen, r.(map[string]any)["userName"].(string))
		}
	}
	if strings.Join(seen, ",") != "u0,u1,u2,u3,u4,u5,u6" {
		t.Fatalf("order not stable: %v", seen)
	}
	rep := ts.mustStatus(ts.do("GET", "/Users?count=0", nil), 200)
	if total(rep) != 7 || len(rep.body["Resources"].([]any)) != 0 {
		t.Fatalf("count=0: %s", rep.raw)
	}
	rep = ts.mustStatus(ts.do("GET", "/Users?startIndex=-4&count=2", nil), 200)
	if first := rep.body["Resources"].([]any)[0].(map[string]any)["userName"]; first != "u0" {
		t.Fatalf("startIndex<1 not treated as 1: %v", first)
	}
	rep = ts.mustStatus(ts.do("GET", "/Users?count=5000", nil), 200)
	if n := len(rep.body["Resources"].([]any)); n != 7 {
		t.Fatalf("count cap: %d", n)
	}
}

func TestAttributesProjection(t *testing.T) {
	ts := startTestServer(t, "")
	id := ts.mustStatus(ts.do("POST", "/Users", userBody("alice", "e1")), 201).body["id"].(string)
	rep := ts.mustStatus(ts.do("GET", "/Users/"+id+"?attributes=userName,name.givenName,"+scim.EnterpriseSchema+":department", nil), 200)
	if rep.body["userName"] != "alice" || rep.body["emails"] != nil || rep.body["id"] != id {
		t.Fatalf("attributes: %s", rep.raw)
	}
	if n := rep.body["name"].(map[string]any); n["givenName"] == nil || n["familyName"] != nil {
		t.Fatalf("sub-attribute projection: %v", n)
	}
	if rep.body[scim.EnterpriseSchema].(map[string]any)["department"] != "R&D" {
		t.Fatalf("extension projection: %s", rep.raw)
	}
	rep = ts.mustStatus(ts.do("GET", "/Users?excludedAttributes=emails,name.familyName", nil), 200)
	u := rep.body["Resources"].([]any)[0].(map[string]any)
	if u["emails"] != nil || u["name"].(map[string]any)["familyName"] != nil || u["userName"] != "alice" {
		t.Fatalf("excludedAttributes: %v", u)
	}
}

func TestPatchVariants(t *testing.T) {
	ts := startTestServer(t, "")
	id := ts.mustStatus(ts.do("POST", "/Users", userBody("alice", "e1")), 201).body["id"].(string)
	patch := func(ops ...map[string]any) reply {
		t.Helper()
		return ts.do("PATCH", "/Users/"+id, map[string]any{"schemas": []string{scim.PatchOpSchema}, "Operations": ops})
	}
	tests := []struct {
		name  string
		ops   []map[string]any
		check func(u map[string]any) bool
	}{
		{"capitalised op, string boolean", []map[string]any{{"op": "Replace", "path": "active", "value": "False"}},
			func(u map[string]any) bool { return u["active"] == false }},
		{"no path, dotted keys", []map[string]any{{"op": "replace", "value": map[string]any{"name.givenName": "Alicia", "active": "True"}}},
			func(u map[string]any) bool {
				return u["name"].(map[string]any)["givenName"] == "Alicia" && u["active"] == true
			}},
		{"value filter sub-attribute", []map[string]any{{"op": "replace", "path": `emails[type eq "work"].value`, "value": "a@new.example"}},
			func(u map[string]any) bool {
				return u["emails"].([]any)[0].(map[string]any)["value"] == "a@new.example"
			}},
		{"value filter creates missing element", []map[string]any{{"op": "add", "path": `phoneNumbers[type eq "mobile"].value`, "value": "+1 555"}},
			func(u map[string]any) bool {
				p := u["phoneNumbers"].([]any)[0].(map[string]any)
				return p["value"] == "+1 555" && p["type"] == "mobile"
			}},
		{"enterprise URN path", []map[string]any{{"op": "replace", "path": scim.EnterpriseSchema + ":department", "value": "Sales"}},
			func(u map[string]any) bool { return u[scim.EnterpriseSchema].(map[string]any)["department"] == "Sales" }},
		{"no path, URN key", []map[string]any{{"op": "replace", "value": map[string]any{scim.EnterpriseSchema + ":costCenter": "42"}}},
			func(u map[string]any) bool { return u[scim.EnterpriseSchema].(map[string]any)["costCenter"] == "42" }},
		{"no path, scimsync URN key", []map[string]any{{"op": "add", "value": map[string]any{scim.ScimsyncSchema + ":managementMode": "CMS"}}},
			func(u map[string]any) bool {
				return u[scim.ScimsyncSchema].(map[string]any)["managementMode"] == scim.ModeCMS
			}},
		{"add to multi-valued", []map[string]any{{"op": "add", "path": "emails", "value": []any{map[string]any{"value": "x@y.example", "type": "home"}}}},
			func(u map[string]any) bool { return len(u["emails"].([]any)) == 2 }},
		{"remove filtered element", []map[string]any{{"op": "remove", "path": `emails[type eq "home"]`}},
			func(u map[string]any) bool { return len(u["emails"].([]any)) == 1 }},
		{"remove simple", []map[string]any{{"op": "remove", "path": "title"}, {"op": "add", "path": "nickName", "value": "Al"}},
			func(u map[string]any) bool { return u["title"] == nil && u["nickName"] == "Al" }},
		{"lower-case attribute names", []map[string]any{{"op": "replace", "path": "displayname", "value": "Alice A."}},
			func(u map[string]any) bool { return u["displayName"] == "Alice A." }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := patch(tt.ops...)
			if rep.status != 200 {
				t.Fatalf("status %d: %s", rep.status, rep.raw)
			}
			got := ts.mustStatus(ts.do("GET", "/Users/"+id, nil), 200).body
			if !tt.check(got) {
				t.Fatalf("not applied: %s", ts.do("GET", "/Users/"+id, nil).raw)
			}
		})
	}
	for _, bad := range []map[string]any{
		{"op": "remove", "path": "userName"},
		{"op": "replace", "path": "nosuch", "value": 1},
		{"op": "replace", "path": scim.ScimsyncSchema + ":managementMode", "value": "MAYBE"},
	} {
		if rep := patch(bad); rep.status != 400 {
			t.Errorf("%v: status %d, want 400: %s", bad, rep.status, rep.raw)
		}
	}
}

func TestPreconditionsAndErrors(t *testing.T) {
	ts := startTestServer(t, "")
	rep := ts.mustStatus(ts.do("POST", "/Users", userBody("alice", "e1")), 201)
	id, etag := rep.body["id"].(string), rep.header.Get("ETag")
	ts.mustStatus(ts.do("GET", "/Users/"+id, nil, "If-None-Match", etag), 304)
	body := userBody("alice", "e1")
	body["title"] = "Boss"
	ts.mustStatus(ts.do("PUT", "/Users/"+id, body, "If-Match", etag), 200)
	ts.mustStatus(ts.do("PUT", "/Users/"+id, body, "If-Match", etag), 412) // etag is stale now
	ts.mustStatus(ts.do("DELETE", "/Users/"+id, nil, "If-Match", etag), 412)
	ts.mustStatus(ts.do("GET", "/Users/"+id, nil, "If-None-Match", etag), 200)

	dup := ts.do("POST", "/Users", userBody("ALICE", "e2"))
	if dup.status != 409 || dup.body["scimType"] != "uniqueness" {
		t.Fatalf("duplicate: %d %s", dup.status, dup.raw)
	}
	nf := ts.do("GET", "/Users/does-not-exist", nil)
	if nf.status != 404 || nf.body["schemas"] == nil {
		t.Fatalf("unknown id: %d %s", nf.status, nf.raw)
	}
	ts.mustStatus(ts.do("POST", "/Users", `{"userName": "x",`), 400)
	big := userBody("big", "")
	big["title"] = strings.Repeat("x", 70<<10)
	ts.mustStatus(ts.do("POST", "/Users", big), 413)

	req, _ := http.NewRequest("GET", ts.base+"/Users", nil)
	req.Header.Set("Authorization", "Bearer wrong")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") || strings.Contains(string(raw), "alice") {
		t.Fatalf("unauthenticated: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), raw)
	}
}

func TestGroupsMembersAndUserDeletion(t *testing.T) {
	ts := startTestServer(t, "")
	a := ts.mustStatus(ts.do("POST", "/Users", userBody("alice", "")), 201).body["id"].(string)
	b := ts.mustStatus(ts.do("POST", "/Users", userBody("bob", "")), 201).body["id"].(string)
	g := ts.mustStatus(ts.do("POST", "/Groups", map[string]any{"schemas": []string{scim.GroupSchema}, "displayName": "Eng",
		"members": []any{map[string]any{"value": a}}}), 201).body["id"].(string)
	patch := func(op map[string]any) {
		// a group PATCH answers 204 (RFC 7644 §3.5.2 allows it; Entra asks for it)
		ts.mustStatus(ts.do("PATCH", "/Groups/"+g, map[string]any{"schemas": []string{scim.PatchOpSchema}, "Operations": []any{op}}), 204)
	}
	patch(map[string]any{"op": "Add", "path": "members", "value": []any{map[string]any{"value": b}}})
	if n := len(ts.do("GET", "/Groups/"+g, nil).body["members"].([]any)); n != 2 {
		t.Fatalf("members after add: %d", n)
	}
	groups := ts.do("GET", "/Users/"+b, nil).body["groups"].([]any)
	if groups[0].(map[string]any)["value"] != g {
		t.Fatalf("user.groups: %v", groups)
	}
	patch(map[string]any{"op": "Remove", "path": "members", "value": []any{map[string]any{"value": a}}})
	patch(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": a}}})
	patch(map[string]any{"op": "remove", "path": fmt.Sprintf(`members[value eq "%s"]`, a)})
	members := ts.do("GET", "/Groups/"+g, nil).body["members"].([]any)
	if len(members) != 1 || members[0].(map[string]any)["value"] != b {
		t.Fatalf("members after removes: %v", members)
	}
	list := ts.mustStatus(ts.do("GET", "/Groups?excludedAttributes=members&filter="+url.QueryEscape(`displayName eq "Eng"`), nil), 200)
	if grp := list.body["Resources"].([]any)[0].(map[string]any); grp["members"] != nil {
		t.Fatalf("excludedAttributes=members: %v", grp)
	}
	// soft delete keeps the user readable
	ts.mustStatus(ts.do("PATCH", "/Users/"+a, map[string]any{"schemas": []string{scim.PatchOpSchema},
		"Operations": []any{map[string]any{"op": "replace", "path": "active", "value": false}}}), 200)
	if ts.mustStatus(ts.do("GET", "/Users/"+a, nil), 200).body["active"] != false {
		t.Fatal("soft-deleted user not readable as inactive")
	}
	ts.mustStatus(ts.do("DELETE", "/Users/"+b, nil), 204)
	if m := ts.do("GET", "/Groups/"+g, nil).body["members"].([]any); len(m) != 0 {
		t.Fatalf("deleted user still a member: %v", m)
	}
}

func TestServiceProviderConfigIsTruthful(t *testing.T) {
	ts := startTestServer(t, "")
	rep := ts.mustStatus(ts.do("GET", "/ServiceProviderConfig", nil), 200)
	want := map[string]bool{"patch": true, "filter": true, "etag": true, "bulk": false, "sort": false, "changePassword": false}
	for k, v := range want {
		if got := rep.body[k].(map[string]any)["supported"]; got != v {
			t.Errorf("%s.supported = %v, want %v", k, got, v)
		}
	}
	if rep.body["filter"].(map[string]any)["maxResults"].(float64) != 50 {
		t.Errorf("filter.maxResults: %v", rep.body["filter"])
	}
	rts := ts.mustStatus(ts.do("GET", "/ResourceTypes/User", nil), 200)
	if !strings.Contains(rts.raw, scim.ScimsyncSchema) || !strings.Contains(rts.raw, scim.EnterpriseSchema) {
		t.Fatalf("ResourceTypes/User lacks extensions: %s", rts.raw)
	}
	ts.mustStatus(ts.do("GET", "/Schemas/"+scim.ScimsyncSchema, nil), 200)
}

func TestRestartKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	ts := startTestServer(t, path)
	id := ts.mustStatus(ts.do("POST", "/Users", userBody("alice", "e1")), 201).body["id"].(string)
	g := ts.mustStatus(ts.do("POST", "/Groups", map[string]any{"schemas": []string{scim.GroupSchema}, "displayName": "Eng",
		"members": []any{map[string]any{"value": id}}}), 201).body["id"].(string)
	before := ts.do("GET", "/Users/"+id, nil).raw
	ts.stop()
	ts2 := startTestServer(t, path)
	after := ts2.mustStatus(ts2.do("GET", "/Users/"+id, nil), 200)
	if after.raw != strings.ReplaceAll(before, ts.base, ts2.base) {
		t.Fatalf("user changed across restart:\n%s\n%s", before, after.raw)
	}
	if total(ts2.do("GET", filterQ(`externalId eq "e1"`), nil)) != 1 || ts2.do("GET", "/Groups/"+g, nil).status != 200 {
		t.Fatal("indexes not rebuilt after restart")
	}
}

func TestConcurrentWriters(t *testing.T) {
	ts := startTestServer(t, "")
	const writers, each = 32, 5
	var wg gosync.WaitGroup
	errs := make(chan string, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				rep := ts.do("POST", "/Users", userBody(fmt.Sprintf("w%d-%d", w, i), ""))
				if rep.status != 201 {
					errs <- rep.raw
					continue
				}
				id := rep.body["id"].(string)
				rep = ts.do("PATCH", "/Users/"+id, map[string]any{"schemas": []string{scim.PatchOpSchema},
					"Operations": []any{map[string]any{"op": "replace", "path": "title", "value": "t"}}})
				if rep.status != 200 {
					errs <- rep.raw
				}
				// everyone also races for the same userName: exactly one may win
				ts.do("POST", "/Users", userBody("contended", ""))
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := total(ts.do("GET", "/Users?count=0", nil)); got != writers*each+1 {
		t.Fatalf("stored %d users, want %d", got, writers*each+1)
	}
}

func TestHugeHeadersAreRefusedBeforeAuthentication(t *testing.T) {
	ts := startTestServer(t, "")
	for _, tt := range []struct {
		size int
		want int
	}{{1 << 10, http.StatusOK}, {200 << 10, http.StatusRequestHeaderFieldsTooLarge}} {
		req, _ := http.NewRequest("GET", ts.base+"/Users", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("X-Filler", strings.Repeat("a", tt.size))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("a %d-byte header: %d, want %d", tt.size, resp.StatusCode, tt.want)
		}
	}
}
