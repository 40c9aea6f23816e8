package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type sample struct {
	LDAP struct {
		URL      string `yaml:"url"`
		Password Secret `yaml:"bind_password"`
	} `yaml:"ldap"`
	Grace Duration `yaml:"grace"`
}

func TestDecodeUnknownKeyNamesLine(t *testing.T) {
	f, err := Parse("c.yaml", []byte("ldap:\n  url: ldap://x\n  bind_pasword: oops\n"))
	if err != nil {
		t.Fatal(err)
	}
	var s sample
	err = f.Decode(&s)
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), `unknown key "bind_pasword"`) {
		t.Fatalf("got %v", err)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	t.Setenv("SCIMSYNC_TEST_PW", "hunter2")
	f, _ := Parse("c.yaml", []byte("ldap:\n  bind_password: ${SCIMSYNC_TEST_PW}\n"))
	var s sample
	if err := f.Decode(&s); err != nil {
		t.Fatal(err)
	}
	if s.LDAP.Password.Reveal() != "hunter2" {
		t.Fatalf("env not expanded: %q", s.LDAP.Password.Reveal())
	}
	js, _ := json.Marshal(s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%+v %#v %s %q", s, s, s.LDAP.Password, s.LDAP.Password), string(js)} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("secret leaked: %s", out)
		}
	}
}

func TestUnsetEnvIsAnError(t *testing.T) {
	f, _ := Parse("c.yaml", []byte("ldap:\n  bind_password: ${SCIMSYNC_SURELY_UNSET_VAR}\n"))
	var s sample
	if err := f.Decode(&s); err == nil || !strings.Contains(err.Error(), "SCIMSYNC_SURELY_UNSET_VAR") {
		t.Fatalf("got %v", err)
	}
}

func TestResolveSecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	_ = os.WriteFile(file, []byte("s3cret\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, nil, 0o600)
	tests := []struct {
		name    string
		inline  Secret
		file    string
		want    string
		wantErr bool
	}{
		{"inline", NewSecret("a"), "", "a", false},
		{"file trims newline", Secret{}, file, "s3cret", false},
		{"both", NewSecret("a"), file, "", true},
		{"missing file", Secret{}, filepath.Join(dir, "nope"), "", true},
		{"empty file", Secret{}, empty, "", true},
		{"neither", Secret{}, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveSecret(tt.inline, tt.file)
			if (err != nil) != tt.wantErr || got.Reveal() != tt.want {
				t.Fatalf("got %q, %v", got.Reveal(), err)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Fatal("error leaks the secret")
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"0", 0, false}, {"30d", 720 * time.Hour, false}, {"90s", 90 * time.Second, false},
		{"1.5d", 0, true}, {"-1d", 0, true}, {"-5m", 0, true}, {"x", 0, true}, {"3dd", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func TestLocateFindsLines(t *testing.T) {
	f, _ := Parse("c.yaml", []byte("ldap:\n  url: x\nsync:\n  overrides:\n    - dn: a\n    - dn: b\n"))
	var ps Problems
	ps.Add("sync.overrides[1].dn", "bad")
	ps.Add("ldap.url", "bad")
	ps.Add("ldap.base_dn", "missing")
	got := f.Locate(ps)
	want := map[string]int{"sync.overrides[1].dn": 6, "ldap.url": 2, "ldap.base_dn": 1}
	for _, p := range got {
		if p.Line != want[p.Path] {
			t.Errorf("%s: line %d, want %d", p.Path, p.Line, want[p.Path])
		}
	}
	var perr Problems
	if !errors.As(got.Err(), &perr) || len(perr) != 3 {
		t.Fatalf("Err() = %v", got.Err())
	}
}

func FuzzConfigParse(f *testing.F) {
	f.Add([]byte("ldap:\n  url: x\n  bind_password: ${HOME}\ngrace: 3d\n"))
	f.Add([]byte("- [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		var s sample
		_ = cf.Decode(&s)
		_ = cf.Line("ldap.url")
		_ = cf.Locate(Problems{{Path: "a[0].b"}, {Path: "]["}})
	})
}
