package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/scimsync/scimsync/ldap/slapdtest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "scimsync-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "scimsync")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type proc struct {
	cmd  *exec.Cmd
	logs *lockedBuffer
}

// lockedBuffer is written by the child's output copier while the test reads it.
type lockedBuffer struct {
	mu  gosync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startServe(t *testing.T, cfgPath, addr string) *proc {
	t.Helper()
	cmd := exec.Command(binary, "serve", "--config", cfgPath)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: logs}
	t.Cleanup(func() { p.stop(t) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not listen on %s: %s", addr, logs.String())
		}
		time.Sleep(30 * time.Millisecond)
	}
}

func (p *proc) stop(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve exited with %v: %s", err, p.logs.String())
		}
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Error("serve did not stop on SIGINT")
	}
}

type idp struct {
	t     *testing.T
	base  string
	token string
}

func (c idp) call(method, path string, body any, wantStatus int) map[string]any {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, wantStatus, raw)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

func patchBody(ops ...map[string]any) map[string]any {
	return map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"}, "Operations": ops}
}

func TestServeOktaAndEntraSequencesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	for name, tok := range map[string]string{"okta": "okta-token-1234567890", "entra": "entra-token-0987654321"} {
		if err := os.WriteFile(filepath.Join(dir, name+".secret"), []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf(`server:
  listen: %s
  tokens:
    - name: okta
      token_file: %s/okta.secret
    - name: entra
      token_file: %s/entra.secret
state:
  path: %s/state.db
log:
  format: json
`, addr, dir, dir, dir)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, cfgPath, addr)
	base := "http://" + addr + "/scim/v2"
	okta := idp{t, base, "okta-token-1234567890"}
	entra := idp{t, base, "entra-token-0987654321"}

	// Okta: create, get, filter by userName, PATCH active=false, PUT, 409 duplicate, groups
	user := map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": "jane@example.org",
		"name": map[string]any{"givenName": "Jane", "familyName": "Doe"}, "active": true,
		"emails": []any{map[string]any{"value": "jane@example.org", "type": "work", "primary": true}}}
	jane := okta.call("POST", "/Users", user, 201)["id"].(string)
	okta.call("GET", "/Users/"+jane, nil, 200)
	lr := okta.call("GET", "/Users?filter="+url.QueryEscape(`userName eq "JANE@example.org"`)+"&startIndex=1&count=100", nil, 200)
	if lr["totalResults"].(float64) != 1 {
		t.Fatalf("okta lookup: %v", lr)
	}
	okta.call("PATCH", "/Users/"+jane, patchBody(map[string]any{"op": "replace", "value": map[string]any{"active": false}}), 200)
	user["name"] = map[string]any{"givenName": "Janet", "familyName": "Doe"}
	okta.call("PUT", "/Users/"+jane, user, 200)
	okta.call("POST", "/Users", user, 409)
	grp := okta.call("POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"},
		"displayName": "Okta Group", "members": []any{map[string]any{"value": jane}}}, 201)["id"].(string)

	// Entra: externalId lookups, capitalised ops, string booleans, excludedAttributes, members
	lr = entra.call("GET", "/Users?filter="+url.QueryEscape(`externalId eq "0a1b2c3d"`), nil, 200)
	if lr["totalResults"].(float64) != 0 {
		t.Fatalf("entra existence check: %v", lr)
	}
	bob := entra.call("POST", "/Users", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User",
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"}, "externalId": "0a1b2c3d", "userName": "bob@example.org",
		"active": true, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"department": "Ops"}}, 201)["id"].(string)
	if lr = entra.call("GET", "/Users?filter="+url.QueryEscape(`externalId eq "0a1b2c3d"`), nil, 200); lr["totalResults"].(float64) != 1 {
		t.Fatalf("entra externalId: %v", lr)
	}
	entra.call("PATCH", "/Users/"+bob, patchBody(
		map[string]any{"op": "Replace", "path": "active", "value": "False"},
		map[string]any{"op": "Add", "value": map[string]any{"name.givenName": "Bob", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Sales"}}), 200)
	eg := entra.call("POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"},
		"displayName": "Entra Group", "externalId": "g-1"}, 201)["id"].(string)
	gl := entra.call("GET", "/Groups?excludedAttributes=members&filter="+url.QueryEscape(`displayName eq "Entra Group"`), nil, 200)
	if gl["totalResults"].(float64) != 1 {
		t.Fatalf("group lookup: %v", gl)
	}
	entra.call("PATCH", "/Groups/"+eg, patchBody(map[string]any{"op": "Add", "path": "members", "value": []any{map[string]any{"value": bob}, map[string]any{"value": jane}}}), 204)
	entra.call("PATCH", "/Groups/"+eg, patchBody(map[string]any{"op": "Remove", "path": "members", "value": []any{map[string]any{"value": jane}}}), 204)

	// a wrong token learns nothing
	idp{t, base, "nope"}.call("GET", "/Users", nil, 401)

	before := map[string]map[string]any{
		"jane": okta.call("GET", "/Users/"+jane, nil, 200), "bob": entra.call("GET", "/Users/"+bob, nil, 200),
		"okta group": okta.call("GET", "/Groups/"+grp, nil, 200), "entra group": entra.call("GET", "/Groups/"+eg, nil, 200),
	}
	if !strings.Contains(p.logs.String(), `"who":"entra"`) || strings.Contains(p.logs.String(), "entra-token") {
		t.Fatalf("write log must name the caller and never the token: %s", p.logs.String())
	}
	p.stop(t)

	startServe(t, cfgPath, addr)
	after := map[string]map[string]any{
		"jane": okta.call("GET", "/Users/"+jane, nil, 200), "bob": entra.call("GET", "/Users/"+bob, nil, 200),
		"okta group": okta.call("GET", "/Groups/"+grp, nil, 200), "entra group": entra.call("GET", "/Groups/"+eg, nil, 200),
	}
	for k := range before {
		b, _ := json.Marshal(before[k])
		a, _ := json.Marshal(after[k])
		if !bytes.Equal(a, b) {
			t.Errorf("%s changed across restart:\n%s\n%s", k, b, a)
		}
	}
	bobAfter := after["bob"]
	if bobAfter["active"] != false || bobAfter["name"].(map[string]any)["givenName"] != "Bob" ||
		bobAfter["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"].(map[string]any)["department"] != "Sales" {
		t.Fatalf("entra patches lost: %v", bobAfter)
	}
	if m := after["entra group"]["members"].([]any); len(m) != 1 || m[0].(map[string]any)["value"] != bob {
		t.Fatalf("entra group members: %v", m)
	}
	if after["jane"]["name"].(map[string]any)["givenName"] != "Janet" || after["jane"]["active"] != true {
		t.Fatalf("okta PUT lost: %v", after["jane"])
	}
}

func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}

func TestSyncCLIExitCodesAgainstSlapdAndServe(t *testing.T) {
	var seed strings.Builder
	for i := 0; i < 15; i++ {
		seed.WriteString(slapdtest.Person(fmt.Sprintf("user%02d", i), slapdtest.UUID(i), "G", fmt.Sprintf("S%d", i), fmt.Sprintf("user%02d@example.org", i)))
	}
	ds := slapdtest.Start(t, seed.String())
	dir := t.TempDir()
	addr := freeAddr(t)
	serveCfg := filepath.Join(dir, "serve.yaml")
	_ = os.WriteFile(serveCfg, []byte(fmt.Sprintf("server:\n  listen: %s\n  tokens:\n    - name: sync\n      token: ${SCIMSYNC_E2E_TOKEN}\nstate:\n  path: %s/server.db\n", addr, dir)), 0o600)
	t.Setenv("SCIMSYNC_E2E_TOKEN", "e2e-token-abcdefghij")
	t.Setenv("SCIMSYNC_E2E_LDAP_PW", slapdtest.AdminPW)
	startServe(t, serveCfg, addr)
	syncCfg := filepath.Join(dir, "sync.yaml")
	_ = os.WriteFile(syncCfg, []byte(fmt.Sprintf(`ldap:
  url: %s
  bind_dn: %s
  bind_password: ${SCIMSYNC_E2E_LDAP_PW}
  base_dn: %s
target:
  url: http://%s/scim/v2
  token: ${SCIMSYNC_E2E_TOKEN}
state:
  path: %s/sync.db
`, ds.URL, slapdtest.AdminDN, slapdtest.People, addr, dir)), 0o600)

	out, code := runCLI(t, "check", "--config", syncCfg)
	if code != 0 || !strings.Contains(out, "PATCH supported") {
		t.Fatalf("check: %d %s", code, out)
	}
	out, code = runCLI(t, "sync", "--config", syncCfg, "--dry-run")
	if code != exitPending || !strings.Contains(out, "): 15 to create") {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "sync.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("dry run created the state file")
	}
	out, code = runCLI(t, "sync", "--config", syncCfg, "--output", "json")
	if code != 0 || !strings.Contains(out, `"format_version": 2`) {
		t.Fatalf("sync: exit %d\n%s", code, out)
	}
	out, code = runCLI(t, "sync", "--config", syncCfg, "--dry-run")
	if code != 0 || !strings.Contains(out, "Plan (delta, syncrepl): 0 to create, 0 to update") {
		t.Fatalf("second dry run: exit %d\n%s", code, out)
	}
	out, code = runCLI(t, "status", "--config", syncCfg)
	if code != 0 || !strings.Contains(out, "create=15") || !strings.Contains(out, "15 managed users") {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	if out, code = runCLI(t, "override", "--config", syncCfg, "set", "user03", "cms"); code != 0 {
		t.Fatalf("override: %s", out)
	}
	out, code = runCLI(t, "sync", "--config", syncCfg, "--user", "user03")
	if code != 0 || !strings.Contains(out, "action:  skip") {
		t.Fatalf("--user: exit %d\n%s", code, out)
	}
	// deprovisioning 11 of 15 is over the limit: exit 3 with the way out
	for i := 0; i < 11; i++ {
		ds.Modify(t, fmt.Sprintf("dn: uid=user%02d,%s\nchangetype: delete\n", i+4, slapdtest.People))
	}
	out, code = runCLI(t, "sync", "--config", syncCfg)
	if code != exitStopped || !strings.Contains(out, "--allow-deprovision 11") {
		t.Fatalf("limit: exit %d\n%s", code, out)
	}
	// a broken config names the key and its line, and never prints a secret
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("ldap:\n  url: gopher://x\n  bind_dn: cn=a\n  bind_password: hunter2-secret\n  base_dn: dc=x\n  scope: all\ntarget:\n  url: http://127.0.0.1:1/scim/v2\n  token: bad-config-token-0123456789\n  concurrency: 0\n"), 0o600)
	out, code = runCLI(t, "sync", "--config", bad)
	for _, want := range []string{"ldap.url (line 2)", "ldap.scope (line 6)", "target.concurrency (line 10)"} {
		if !strings.Contains(out, want) {
			t.Errorf("bad config output lacks %q:\n%s", want, out)
		}
	}
	// (the error is redacted of the file's secrets: a one-letter token would hide that letter
	// in every key it names)
	if code != exitError || strings.Contains(out, "hunter2") || strings.Contains(out, "bad-config-token") {
		t.Fatalf("bad config: exit %d\n%s", code, out)
	}
}

// TestServeIdPConformance replays what Okta and Entra send, including the RFC 7644 points a
// lenient server gets wrong (issue 10 "Conformance"), against `scimsync serve` with base_url set.
func TestServeIdPConformance(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	publicBase := "https://scim.example.org/scim/v2"
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("server:\n  listen: %s\n  base_url: %s\n  tokens:\n    - name: okta\n      token: okta-token-1234567890\n    - name: entra\n      token: entra-token-0987654321\nstate:\n  path: %s/state.db\n", addr, publicBase, dir)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, cfgPath, addr)
	base := "http://" + addr + "/scim/v2"
	okta := idp{t, base, "okta-token-1234567890"}
	entra := idp{t, base, "entra-token-0987654321"}
	coreUser := "urn:ietf:params:scim:schemas:core:2.0:User"
	enterprise := "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

	// Okta: create with a password (Push Password), which is never returned
	jane := okta.call("POST", "/Users", map[string]any{"schemas": []string{coreUser}, "userName": "Jane.Doe@example.org",
		"password": "Okta-Pushed-Secret1", "active": true, "name": map[string]any{"givenName": "Jane", "familyName": "Doe"},
		"emails": []any{map[string]any{"value": "jane@example.org", "type": "work", "primary": true}}}, 201)
	if raw, _ := json.Marshal(jane); strings.Contains(string(raw), "Okta-Pushed") {
		t.Fatalf("password returned: %s", raw)
	}
	if loc := jane["meta"].(map[string]any)["location"].(string); !strings.HasPrefix(loc, publicBase+"/Users/") {
		t.Fatalf("meta.location %q not from server.base_url", loc)
	}
	janeID := jane["id"].(string)
	// Okta's lookup; uniqueness is case-insensitive
	if lr := okta.call("GET", "/Users?filter="+url.QueryEscape(`userName eq "jane.doe@EXAMPLE.org"`), nil, 200); lr["totalResults"].(float64) != 1 {
		t.Fatalf("okta lookup: %v", lr)
	}
	okta.call("POST", "/Users", map[string]any{"schemas": []string{coreUser}, "userName": "JANE.DOE@example.org"}, 409)
	okta.call("PATCH", "/Users/"+janeID, patchBody(map[string]any{"op": "replace", "value": map[string]any{"password": "Rotated-Secret2"}}), 200)
	// Okta group push: create empty, add with display, remove by filter (twice: idempotent)
	grp := okta.call("POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"},
		"displayName": "Okta Eng", "members": []any{}}, 201)["id"].(string)
	okta.call("PATCH", "/Groups/"+grp, patchBody(map[string]any{"op": "add", "path": "members",
		"value": []any{map[string]any{"value": janeID, "display": "Jane.Doe@example.org"}}}), 204)
	okta.call("PUT", "/Groups/"+grp, map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"},
		"id": grp, "displayName": "Okta Engineering"}, 200)
	if m := okta.call("GET", "/Groups/"+grp, nil, 200)["members"].([]any); len(m) != 1 {
		t.Fatalf("a PUT renaming the group dropped its members: %v", m)
	}
	for i := 0; i < 2; i++ {
		okta.call("PATCH", "/Groups/"+grp, patchBody(map[string]any{"op": "remove", "path": fmt.Sprintf(`members[value eq "%s"]`, janeID)}), 204)
	}

	// Entra: existence check by externalId, create, manager as a plain string
	if lr := entra.call("GET", "/Users?filter="+url.QueryEscape(`externalId eq "6c75de36"`), nil, 200); lr["totalResults"].(float64) != 0 {
		t.Fatalf("entra existence check: %v", lr)
	}
	bob := entra.call("POST", "/Users", map[string]any{"schemas": []string{coreUser, enterprise}, "externalId": "6c75de36",
		"userName": "bob@example.org", "active": true, "meta": map[string]any{"resourceType": "User"}, "roles": []any{},
		enterprise: map[string]any{"department": "Ops"}}, 201)["id"].(string)
	entra.call("PATCH", "/Users/"+bob, patchBody(map[string]any{"op": "Add", "path": enterprise + ":manager", "value": janeID}), 200)
	if m := entra.call("GET", "/Users/"+bob, nil, 200)[enterprise].(map[string]any)["manager"].(map[string]any); m["value"] != janeID {
		t.Fatalf("manager: %v", m)
	}
	// Entra's group: its ADSCIM schema URN, members with "$ref": null, 204 on PATCH
	eg := entra.call("POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group",
		"http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"}, "externalId": "8aa1a0c0", "displayName": "Entra Group",
		"meta": map[string]any{"resourceType": "Group"}}, 201)["id"].(string)
	entra.call("PATCH", "/Groups/"+eg, patchBody(map[string]any{"op": "Add", "path": "members",
		"value": []any{map[string]any{"$ref": nil, "value": bob}}}), 204)
	if g := entra.call("GET", "/Groups?excludedAttributes=members&filter="+url.QueryEscape(`displayName eq "Entra Group"`), nil, 200); g["totalResults"].(float64) != 1 {
		t.Fatalf("group lookup: %v", g)
	}
	if g := entra.call("GET", "/Groups?filter="+url.QueryEscape(fmt.Sprintf(`id eq "%s" and members[value eq "%s"]`, eg, bob))+"&excludedAttributes=members", nil, 200); g["totalResults"].(float64) != 1 {
		t.Fatalf("membership check: %v", g)
	}

	// strict where RFC 7644 says MUST: these are the answers issue 9's client must handle
	for _, c := range []struct {
		name   string
		body   map[string]any
		status int
		typ    string
	}{
		{"replace with a filter matching nothing", patchBody(map[string]any{"op": "Replace", "path": `phoneNumbers[type eq "mobile"].value`, "value": "+1 555"}), 400, "noTarget"},
		{"remove without a path", patchBody(map[string]any{"op": "Remove"}), 400, "noTarget"},
		{"remove of the required userName", patchBody(map[string]any{"op": "remove", "path": "userName"}), 400, "mutability"},
	} {
		out := entra.call("PATCH", "/Users/"+bob, c.body, c.status)
		if out["scimType"] != c.typ {
			t.Errorf("%s: scimType %v, want %s", c.name, out["scimType"], c.typ)
		}
	}
	// … while add with the same filter creates the typed value, as Entra expects
	entra.call("PATCH", "/Users/"+bob, patchBody(map[string]any{"op": "Add", "path": `phoneNumbers[type eq "mobile"].value`, "value": "+1 555"}), 200)
	entra.call("PATCH", "/Users/"+bob, patchBody(map[string]any{"op": "Replace", "path": `phoneNumbers[type eq "mobile"].value`, "value": "+1 556"}), 200)
	if out := entra.call("POST", "/Users", map[string]any{"schemas": []string{coreUser, "urn:example:unknown:2.0:User"}, "userName": "x"}, 400); out["scimType"] != "invalidValue" {
		t.Errorf("unknown schema: %v", out)
	}
	if out := entra.call("POST", "/Users", map[string]any{"schemas": []string{coreUser}, "userName": "tab\tand\x1bescape"}, 400); out["scimType"] != "invalidValue" {
		t.Errorf("control characters: %v", out)
	}
	// a forged Host header does not move locations
	req, _ := http.NewRequest("GET", base+"/Users/"+bob, nil)
	req.Host = "attacker.example"
	req.Header.Set("Authorization", "Bearer entra-token-0987654321")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(raw), "attacker") || !strings.Contains(string(raw), publicBase+"/Users/"+bob) {
		t.Fatalf("location follows Host: %s", raw)
	}
	p.stop(t)
	if data, _ := os.ReadFile(filepath.Join(dir, "state.db")); bytes.Contains(data, []byte("Secret1")) || bytes.Contains(data, []byte("Secret2")) {
		t.Fatal("a password reached the state file")
	}
}
