package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scimsync/scimsync/config"
)

func TestExampleConfigIsValid(t *testing.T) {
	t.Setenv("ENTRA_SCIM_TOKEN", "x")
	if _, err := loadConfig(filepath.Join("..", "..", "config", "example.yaml"), needLDAP, needTarget, needServer); err != nil {
		t.Fatal(err)
	}
}

// TestDefaults pins the defaults: changing one is a visible, reviewed decision.
func TestDefaults(t *testing.T) {
	got, err := json.Marshal(defaults())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "defaults.golden.json")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		_ = os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(got)+"\n" {
		t.Fatalf("defaults changed (UPDATE_GOLDEN=1 to accept):\n got %s\nwant %s", got, want)
	}
}

func TestMissingSectionAndUnknownKey(t *testing.T) {
	f, _ := config.Parse("c.yaml", []byte("state:\n  path: /tmp/x\n"))
	if _, err := decodeConfig(f, needLDAP); err == nil {
		t.Fatal("missing ldap section accepted")
	}
	f, _ = config.Parse("c.yaml", []byte("state:\n  path: /tmp/x\n  pth: y\n"))
	if _, err := decodeConfig(f); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestProfilesCommand(t *testing.T) {
	out, code := runCLI(t, "profiles")
	for _, p := range []string{"generic", "nuage-vsd", "passbolt", "civis", "cloudomation"} {
		if !strings.Contains(out, p) {
			t.Errorf("profiles lacks %s:\n%s", p, out)
		}
	}
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	out, code = runCLI(t, "profiles", "--show", "passbolt")
	if code != 0 || !strings.Contains(out, "{mail | lower}") {
		t.Fatalf("--show passbolt: %d\n%s", code, out)
	}
	// what --show prints is a valid mapping section, ready to paste
	f, err := config.Parse("show.yaml", []byte(out+"target:\n  url: http://127.0.0.1:1/scim/v2\n  token: x\n  profile: passbolt\nldap:\n  url: file:///dev/null\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeConfig(f, needLDAP, needTarget); err != nil {
		t.Fatalf("--show output does not load back: %v", err)
	}
	if _, code = runCLI(t, "profiles", "--show", "nope"); code != exitError {
		t.Fatalf("unknown profile: exit %d", code)
	}
}

func TestCheckReportsEachUnreachableSide(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	_ = os.WriteFile(cfg, []byte("ldap:\n  url: ldap://127.0.0.1:1\n  base_dn: dc=example,dc=org\n  dial_timeout: 1s\n"+
		"target:\n  url: http://127.0.0.1:1/scim/v2\n  token: t\n  max_retries: 0\n  timeout: 1s\n"), 0o600)
	out, code := runCLI(t, "check", "--config", cfg)
	if code != exitError || !strings.Contains(out, "config: ") || !strings.Contains(out, "ldap: FAILED") || !strings.Contains(out, "target: FAILED") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
