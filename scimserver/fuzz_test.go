package scimserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fp "github.com/scim2/filter-parser/v2"
	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

// FuzzFilter: any filter is rewritten without losing its conjunction, and whatever the parser
// accepts after the rewrite is evaluated without panicking.
func FuzzFilter(f *testing.F) {
	for _, s := range []string{`userName eq "a"`, `emails[type eq "work"].value ew "x"`, `emails.value co "@"`,
		`emails[type eq "w]or"].value pr`, `members[value eq "u1"]`} {
		f.Add(s)
	}
	m := scim.Matcher{Index: scim.UserIndex()}
	attrs := map[string]any{"userName": "alice", "emails": []any{map[string]any{"type": "work", "value": "a@x.org"}}}
	f.Fuzz(func(t *testing.T, s string) {
		rewritten := rewriteFilter(s)
		if s != rewritten && !strings.Contains(rewritten, " and ") {
			t.Fatalf("rewrite of %q lost its conjunction: %q", s, rewritten)
		}
		e, err := fp.ParseFilter([]byte(rewritten))
		if err != nil {
			return
		}
		_ = m.Match(e, attrs, &scim.Meta{ID: "x"})
	})
}

func TestRewriteFilter(t *testing.T) {
	tests := map[string]string{
		`emails[type eq "work"].value ew "x.org"`:         `emails[type eq "work" and value ew "x.org"]`,
		`emails[type eq "w]or"].value pr`:                 `emails[type eq "w]or" and value pr]`,
		`emails[type eq "a" or type eq "b"].value eq "x"`: `emails[type eq "a" or type eq "b"].value eq "x"`,
		`userName eq "x"`:                                 `userName eq "x"`,
	}
	for in, want := range tests {
		if got := rewriteFilter(in); got != want {
			t.Errorf("rewriteFilter(%q) = %q, want %q", in, got, want)
		}
	}
}

// corpus is a set of stored shapes for the fast/slow agreement checks: present, absent and
// empty values, non-ASCII and mixed case, several emails.
func corpus(t testing.TB, srv *Server) (users, groups []*record) {
	docs := []string{
		`{"userName":"Alice","externalId":"E1","displayName":"Alice A","active":true,"name":{"givenName":"Alice","familyName":"Zed"},"emails":[{"value":"alice@Work.example","type":"work"},{"value":"a@home.example","type":"home"}]}`,
		`{"userName":"bob","active":false,"name":{"familyName":"Family12"},"emails":[{"value":"bob@x.example"}]}`,
		`{"userName":"\u00c5sa","externalId":"e1","displayName":"","name":{"givenName":"\u00c5"}}`,
		`{"userName":"carol","displayName":"CAROL","emails":[]}`,
		`{"userName":"Stra\u00dfe","title":"x","active":true}`,
	}
	for i, d := range docs {
		r := &record{id: fmt.Sprintf("id-%d", i), attrs: []byte(d), seq: uint64(i + 1), version: 1}
		if err := r.computeHot(state.KindUser); err != nil {
			t.Fatal(err)
		}
		users = append(users, r)
	}
	for i, d := range []string{`{"displayName":"Eng"}`, `{"displayName":"eng ops","externalId":"G"}`} {
		r := &record{id: fmt.Sprintf("g-%d", i), attrs: []byte(d), seq: uint64(i + 10), version: 1,
			members: sortMembers([]member{{value: "id-0"}, {value: fmt.Sprint("id-", i+1), display: "x"}})}
		if err := r.computeHot(state.KindGroup); err != nil {
			t.Fatal(err)
		}
		groups = append(groups, r)
	}
	return users, groups
}

func agreementServer(t testing.TB) *Server {
	st, err := state.Open(filepath.Join(t.TempDir(), "s.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cfg := DefaultServerConfig()
	cfg.Tokens = []TokenConfig{{Name: "t", Token: config.NewSecret("x")}}
	srv, err := NewServer(cfg, st, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func checkAgreement(t *testing.T, srv *Server, users, groups []*record, f string) bool {
	used := false
	for _, c := range []struct {
		kind state.Kind
		recs []*record
	}{{state.KindUser, users}, {state.KindGroup, groups}} {
		e, err := fp.ParseFilter([]byte(f))
		if err != nil || validateFilter(srv.idx[c.kind], e, nil) != nil {
			continue
		}
		pred, ok := compileFast(c.kind, e)
		if !ok {
			continue
		}
		used = true
		for _, r := range c.recs {
			if fast, slow := pred(r), srv.slowMatch(c.kind, e, r); fast != slow {
				t.Fatalf("%s on %s %s: fast path %v, Matcher %v", f, c.kind, r.attrs, fast, slow)
			}
		}
	}
	return used
}

var agreementFilters = []string{
	`userName eq "alice"`, `userName eq "ALICE"`, `userName eq "a\u030asa"`, `userName eq "STRASSE"`, `userName ne "bob"`,
	`userName co "L"`, `userName sw "a"`, `userName ew "E"`, `userName gt "b"`, `userName le "bob"`, `userName pr`,
	`externalId eq "e1"`, `externalId eq "E1"`, `externalId pr`, `externalId ne "e1"`, `id eq "id-1"`, `id sw "id"`,
	`displayName eq "carol"`, `displayName pr`, `displayName co "a"`, `displayName eq "eng"`, `displayName sw "ENG"`,
	`name.givenName sw "a"`, `name.familyName sw "Family1"`, `name.familyName pr`, `name.familyName ne "zed"`,
	`emails eq "bob@x.example"`, `emails.value ew "EXAMPLE"`, `emails.type eq "work"`, `emails pr`, `emails.value ne "a@home.example"`,
	`emails[type eq "work" and value co "alice"]`, `emails[type eq "home" or value sw "bob"]`, `emails[not (type eq "work")]`,
	`emails[value pr]`, `active eq true`, `active eq false`, `active ne true`, `active pr`, `active eq "true"`,
	`meta.created gt "2000-01-01T00:00:00Z"`, `meta.lastModified lt "2000-01-01T00:00:00Z"`,
	`members[value eq "id-0"]`, `members[value eq "ID-1"]`, `members.value eq "id-2"`, `members pr`, `members[value sw "id"]`,
	`not (userName eq "alice") and (active eq true or emails pr)`, `userName eq 1`, `userName eq true`, `userName eq null`,
}

// TestFastFilterAgreesWithMatcher: the precomputed fast path and the shared Matcher answer every
// filter alike on every stored shape.
func TestFastFilterAgreesWithMatcher(t *testing.T) {
	srv := agreementServer(t)
	users, groups := corpus(t, srv)
	n := 0
	for _, f := range agreementFilters {
		if checkAgreement(t, srv, users, groups, f) {
			n++
		}
	}
	if n < len(agreementFilters)-8 {
		t.Fatalf("only %d of %d filters took the fast path", n, len(agreementFilters))
	}
}

// FuzzFastFilterAgreesWithMatcher extends the agreement check to generated filters.
func FuzzFastFilterAgreesWithMatcher(f *testing.F) {
	for _, s := range agreementFilters {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 512 {
			return
		}
		srv := fuzzAgreement.get(t)
		checkAgreement(t, srv.srv, srv.users, srv.groups, s)
	})
}

type agreementFixture struct {
	srv           *Server
	users, groups []*record
}

type lazyAgreement struct{ f *agreementFixture }

var fuzzAgreement lazyAgreement

func (l *lazyAgreement) get(t *testing.T) *agreementFixture {
	if l.f == nil {
		st, err := state.Open(filepath.Join(t.TempDir(), "s.db"), state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		cfg := DefaultServerConfig()
		cfg.Tokens = []TokenConfig{{Name: "t", Token: config.NewSecret("x")}}
		srv, err := NewServer(cfg, st, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		u, g := corpus(t, srv)
		l.f = &agreementFixture{srv, u, g}
	}
	return l.f
}

// FuzzServerHTTP drives the whole handler (authentication, routing, limits, parsing, PATCH,
// filters, storage) with arbitrary requests: it must answer every one with a well-formed
// response and never panic, hang or return a 5xx.
func FuzzServerHTTP(f *testing.F) {
	seeds := []struct{ method, path, body string }{
		{"GET", "/scim/v2/Users?filter=" + `userName%20eq%20%22alice%22`, ""},
		{"GET", "/scim/v2/Users?filter=" + strings.Repeat("(", 40) + "userName%20pr" + strings.Repeat(")", 40), ""},
		{"GET", "/scim/v2/Groups?excludedAttributes=members&count=2&startIndex=0", ""},
		{"POST", "/scim/v2/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"z","emails":[{"value":"z@x","type":"work"}],"password":"p"}`},
		{"POST", "/scim/v2/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"g","members":[{"value":"u-alice"}]}`},
		{"PATCH", "/scim/v2/Users/u-alice", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"emails[type eq \"work\"].value","value":"n@x"}]}`},
		{"PATCH", "/scim/v2/Users/u-alice", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","value":{"name.givenName":"A","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager":"u-alice"}}]}`},
		{"PATCH", "/scim/v2/Groups/g-eng", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \"u-alice\"]"},{"op":"add","path":"members","value":[{"value":"u-alice"}]}]}`},
		{"PUT", "/scim/v2/Users/u-alice", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"alice"}`},
		{"DELETE", "/scim/v2/Users/nope", ""},
		{"GET", "/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", ""},
		// deep nesting and huge inputs, refused by the limits before any parser sees them
		{"GET", "/scim/v2/Users?filter=" + strings.Repeat("(", 20000) + "userName%20pr" + strings.Repeat(")", 20000), ""},
		{"GET", "/scim/v2/Users?filter=" + strings.Repeat("userName%20eq%20%22a%22%20or%20", 3000) + "active%20eq%20true", ""},
		{"POST", "/scim/v2/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"d","x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`},
		{"POST", "/scim/v2/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"` + strings.Repeat("n", 2<<20) + `"}`},
		{"PATCH", "/scim/v2/Groups/g-eng", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[` +
			strings.TrimSuffix(strings.Repeat(`{"op":"add","path":"members","value":[{"value":"u-alice"}]},`, 2000), ",") + `]}`},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.body, true)
	}
	st, err := state.Open(filepath.Join(f.TempDir(), "s.db"), state.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = st.Close() })
	cfg := DefaultServerConfig()
	cfg.Tokens = []TokenConfig{{Name: "fuzz", Token: config.NewSecret("fuzz-token")}}
	cfg.MaxBodyBytes, cfg.MaxGroupBodyBytes = 64<<10, 64<<10
	srv, err := NewServer(cfg, st, zap.NewNop())
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	// real resources for the seeds' placeholders, so PATCH and PUT reach the store
	mk := func(path, body string) string {
		req, _ := http.NewRequest("POST", "http://127.0.0.1"+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer fuzz-token")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var out struct{ ID string }
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		if rec.Code != 201 {
			f.Fatalf("setup %s: %d %s", path, rec.Code, rec.Body.String())
		}
		return out.ID
	}
	alice := mk("/scim/v2/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"alice"}`)
	eng := mk("/scim/v2/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"eng","members":[{"value":"`+alice+`"}]}`)
	ids := strings.NewReplacer("u-alice", alice, "g-eng", eng)
	f.Fuzz(func(t *testing.T, method, path, body string, auth bool) {
		path, body = ids.Replace(path), ids.Replace(body)
		if !strings.HasPrefix(path, "/") {
			path = "/scim/v2/" + path
		}
		req, err := http.NewRequest(method, "http://127.0.0.1"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		if auth {
			req.Header.Set("Authorization", "Bearer fuzz-token")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusNotImplemented {
			t.Fatalf("%s %s %q: %d %s", method, path, body, rec.Code, rec.Body.String())
		}
		// net/http's mux redirects unclean paths (/scim/v2/./Users) before the server sees them
		redirect := rec.Code >= 300 && rec.Code < 400
		if rec.Code != http.StatusNoContent && !redirect && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: invalid JSON %q", method, path, rec.Body.String())
		}
		if !strings.Contains(path, "/Schemas") && bytes.Contains(bytes.ToLower(rec.Body.Bytes()), []byte(`"password"`)) {
			t.Fatalf("a password came back: %s", rec.Body.String())
		}
	})
}

// FuzzLoadScan: whenever the start-up scanner reads a stored record or its hot attributes, it
// reads exactly what encoding/json reads.
func FuzzLoadScan(f *testing.F) {
	for _, attrs := range []string{
		`{"active":true,"emails":[{"type":"work","value":"u@x.example"}],"externalId":"e","name":{"familyName":"F","givenName":"G"},"userName":"u"}`,
		`{"userName":"\u00c5sa","emails":[{"value":"a","primary":true,"display":"q\"x"},{}],"title":"t","x":[1,{"a":[]}],"active":false}`,
		`{"userName":"a\\"b"}`, `{}`, `{"emails":null}`,
	} {
		r := &record{id: "id-1", seq: 7, version: 3, owner: "okta", attrs: []byte(attrs),
			created: time.Unix(1e9, 5).UTC(), modified: time.Unix(2e9, 0).UTC()}
		raw, _ := r.encode()
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, ok := scanStored(data); ok {
			var sr storedRecord
			if err := json.Unmarshal(data, &sr); err != nil {
				t.Fatalf("scanner read what encoding/json refuses: %q: %v", data, err)
			}
			if sr.ID != r.id || sr.Seq != r.seq || sr.Version != r.version || sr.Owner != r.owner || sr.PwHash != r.pwHash ||
				!sr.Created.Equal(r.created) || !sr.Modified.Equal(r.modified) {
				t.Fatalf("header differs: %+v vs %+v", sr, r)
			}
			if !bytes.Equal(bytes.TrimSpace(sr.Attrs), r.attrs) {
				t.Fatalf("attrs differ: %q vs %q", sr.Attrs, r.attrs)
			}
		}
		if h, ok := scanHot(data); ok {
			var want hotJSON
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatalf("scanner read what encoding/json refuses: %q: %v", data, err)
			}
			gotRaw, _ := json.Marshal(h)
			wantRaw, _ := json.Marshal(want)
			if !bytes.Equal(gotRaw, wantRaw) {
				t.Fatalf("hot values differ for %q:\n%s\n%s", data, gotRaw, wantRaw)
			}
		}
	})
}
