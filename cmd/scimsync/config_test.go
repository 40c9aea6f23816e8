package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/scimsync/scimsync/config"
)

func TestExampleConfigIsValid(t *testing.T) {
	t.Setenv("ENTRA_SCIM_TOKEN", "x")
	if _, err := loadConfig(filepath.Join("..", "..", "config.example.yaml"), needLDAP, needTarget, needServer); err != nil {
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
