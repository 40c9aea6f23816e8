package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scimsync/scimsync/config"
)

const ldapSecret = "ldap-pass-4f9a2c7e"

// runInProcess runs one command line in this process.
func runInProcess(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = execute(context.Background(), args, &o, &e)
	return o.String(), e.String(), code
}

func TestCheckReportCarriesNoSecretOfTheFile(t *testing.T) {
	// a target that quotes, in its error, a secret of the file it was never sent
	tgt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/scim+json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"400","detail":"no tenant for password ` + ldapSecret + `"}`))
	}))
	t.Cleanup(tgt.Close)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte(`ldap:
  url: ldap://127.0.0.1:1
  base_dn: dc=example,dc=org
  bind_dn: cn=admin,dc=example,dc=org
  bind_password: `+ldapSecret+`
  dial_timeout: 1s
target:
  url: `+tgt.URL+`/scim/v2
  token: target-token-0123456789abcdef
  max_retries: 0
state:
  path: `+filepath.Join(dir, "state.db")+`
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, output := range []string{"text", "json"} {
		out, errOut, code := runInProcess(t, "check", "-c", cfg, "-o", output)
		if code != 1 || !strings.Contains(out, "no tenant for password") {
			t.Fatalf("check -o %s: exit %d, the target's answer is not reported:\n%s\n%s", output, code, out, errOut)
		}
		if strings.Contains(out+errOut, ldapSecret) || !strings.Contains(out, config.Redacted) {
			t.Fatalf("check -o %s printed the bind password:\n%s\n%s", output, out, errOut)
		}
	}
}

func TestCommandErrorCarriesNoSecretOfTheFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	// the state file's directory happens to be named like the bind password: the error that
	// quotes the path must not quote the password
	if err := os.WriteFile(cfg, []byte(`ldap:
  url: ldap://127.0.0.1:1
  base_dn: dc=example,dc=org
  bind_dn: cn=admin,dc=example,dc=org
  bind_password: `+ldapSecret+`
state:
  path: `+filepath.Join(dir, ldapSecret, "state.db")+`
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, output := range []string{"text", "json"} {
		out, errOut, code := runInProcess(t, "override", "set", "alice", "CMS", "-c", cfg, "-o", output)
		if code != 1 || !strings.Contains(out+errOut, config.Redacted) {
			t.Fatalf("override set -o %s: exit %d\n%s\n%s", output, code, out, errOut)
		}
		if strings.Contains(out+errOut, ldapSecret) {
			t.Fatalf("override set -o %s printed the bind password:\n%s\n%s", output, out, errOut)
		}
	}
}

func TestLDAPURLWithCredentialsIsRefusedWithoutQuotingThem(t *testing.T) {
	dir := t.TempDir()
	for _, url := range []string{
		"ldap://syncer:" + ldapSecret + "@dc1.example.org",
		"ldap://syncer:" + ldapSecret + "%zz@dc1.example.org", // does not parse
	} {
		cfg := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(cfg, []byte("ldap:\n  url: "+url+"\n  base_dn: dc=example,dc=org\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := runInProcess(t, "check", "-c", cfg)
		if code != 1 || !strings.Contains(out, "ldap.url (line 2)") {
			t.Fatalf("check of url %q: exit %d\n%s\n%s", url, code, out, errOut)
		}
		if strings.Contains(out+errOut, ldapSecret) {
			t.Fatalf("check of url %q printed the password:\n%s\n%s", url, out, errOut)
		}
	}
}

func TestCheckWarnsAboutAnUnprotectedTargetToken(t *testing.T) {
	tgt := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	}))
	t.Cleanup(tgt.Close)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte(`target:
  url: `+tgt.URL+`/scim/v2
  token: target-token-0123456789abcdef
  insecure_skip_verify: true
  max_retries: 0
ldap:
  url: LDAP://127.0.0.1:1
  base_dn: dc=example,dc=org
  dial_timeout: 1s
state:
  path: `+filepath.Join(dir, "state.db")+`
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, _ := runInProcess(t, "check", "-c", cfg)
	if !strings.Contains(out, "target: warning: target.insecure_skip_verify is on") {
		t.Fatalf("check says nothing of the unverified target:\n%s\n%s", out, errOut)
	}
}
