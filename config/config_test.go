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
	f.Add([]byte("sync:\n  schedual: x\n  grace: 3x\n  max_deprovision: [a]\n  overrides:\n    - username: 1\nadmn: {}\n"))
	f.Add([]byte(strings.Repeat("a:\n ", 200) + "b: 1\n"))
	f.Add([]byte("ldap: " + strings.Repeat("[", 500) + strings.Repeat("]", 500) + "\n"))
	f.Add([]byte("ldap:\n  url: ${X:-${Y}}\n  bind_password: ${A:-}${B:-c}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		var s sample
		_ = cf.Decode(&s)
		var n nested
		err = cf.Decode(&n)
		var ps Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				if p.Path == "" || p.Msg == "" {
					t.Fatalf("problem without path or message: %+v", p)
				}
			}
		}
		_ = cf.Line("ldap.url")
		_ = cf.Locate(Problems{{Path: "a[0].b"}, {Path: "]["}})
	})
}

type nested struct {
	Sync struct {
		Schedule string   `yaml:"schedule"`
		Grace    Duration `yaml:"grace"`
		Max      int      `yaml:"max_deprovision"`
		Rules    []struct {
			UserName string `yaml:"user_name"`
		} `yaml:"overrides"`
	} `yaml:"sync"`
	Admin struct {
		Listen string `yaml:"listen"`
	} `yaml:"admin"`
}

func TestDecodeReportsEveryProblemWithSuggestions(t *testing.T) {
	src := "sync:\n" +
		"  schedual: \"@hourly\"\n" + // 2: typo
		"  grace: 3x\n" + // 3: bad duration
		"  max_deprovision: many\n" + // 4: wrong type
		"  overrides:\n" +
		"    - username: \"svc-*\"\n" + // 6: typo in a list item
		"admn:\n" + // 7: typo of a section
		"  listen: x\n" +
		"zzz_unrelated: 1\n" // 9: nothing close
	f, err := Parse("c.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var v nested
	err = f.Decode(&v)
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("want Problems, got %v", err)
	}
	want := []string{
		`sync.schedual (line 2): unknown key "schedual" (did you mean "schedule"?)`,
		`sync.grace (line 3): invalid duration "3x"`,
		`sync.max_deprovision (line 4): want a whole number, got text "many"`,
		`sync.overrides[0].username (line 6): unknown key "username" (did you mean "user_name"?)`,
		`admn (line 7): unknown key "admn" (did you mean "admin"?)`,
		`zzz_unrelated (line 9): unknown key "zzz_unrelated" (keys here: admin, sync)`,
	}
	got := err.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
	if len(ps) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(ps), len(want), got)
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"base_dn", "bind_dn", "bind_password", "bind_password_file", "url", "user_filter"}
	for in, want := range map[string]string{
		"bind_pasword": "bind_password", "baseDN": "base_dn", "BIND-DN": "bind_dn", "usr_filter": "user_filter",
		"uri": "url", "password": "", "completely_else": "",
	} {
		if got := Suggest(in, keys); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExpandEnvDefault(t *testing.T) {
	t.Setenv("SCIMSYNC_SET", "/run/credentials/scimsync.service")
	t.Setenv("SCIMSYNC_EMPTY", "")
	tests := map[string]string{
		"${SCIMSYNC_SET:-/etc/scimsync}/ldap.secret":          "/run/credentials/scimsync.service/ldap.secret",
		"${SCIMSYNC_SURELY_UNSET:-/etc/scimsync}/ldap.secret": "/etc/scimsync/ldap.secret",
		"${SCIMSYNC_EMPTY:-dflt}":                             "dflt",
		"${SCIMSYNC_EMPTY}":                                   "",
		"plain $HOME {x}":                                     "plain $HOME {x}",
	}
	for in, want := range tests {
		got, err := ExpandEnv(in)
		if err != nil || got != want {
			t.Errorf("ExpandEnv(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestResolveSecretExpandsTheFilePath(t *testing.T) {
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "ldap.secret"), []byte("pw\n"), 0o600)
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	got, err := ResolveSecret(Secret{}, "${CREDENTIALS_DIRECTORY:-/etc/scimsync}/ldap.secret")
	if err != nil || got.Reveal() != "pw" {
		t.Fatalf("got %q, %v", got.Reveal(), err)
	}
}

func TestCheckSecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(p, mode)
		return p
	}
	tests := []struct {
		name  string
		path  string
		want  string // "" = ok
		loose bool
	}{
		{"ok", write("ok", "s3cret", 0o600), "", false},
		{"owner read-only", write("ro", "s3cret", 0o400), "", false},
		{"group readable", write("grp", "s3cret", 0o640), "mode 0640", true},
		{"world readable", write("world", "s3cret", 0o644), "mode 0644", true},
		{"empty", write("empty", "", 0o600), "is empty", false},
		{"missing", filepath.Join(dir, "nope"), "no such file", false},
		{"directory", dir, "not a regular file", false},
		{"unset env", "${SCIMSYNC_SURELY_UNSET}/x", "SCIMSYNC_SURELY_UNSET", false},
	}
	for _, tt := range tests {
		err := CheckSecretFile(tt.path)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		case errors.Is(err, ErrLoosePermissions) != tt.loose:
			t.Errorf("%s: loose = %v", tt.name, errors.Is(err, ErrLoosePermissions))
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error shows the content", tt.name)
		}
	}
}

func FuzzExpandEnv(f *testing.F) {
	f.Add("${HOME}/x")
	f.Add("${CREDENTIALS_DIRECTORY:-/etc/scimsync}/ldap.secret")
	f.Add("${A:-${B:-c}}")
	f.Add(strings.Repeat("${X:-", 1000) + strings.Repeat("}", 1000))
	f.Add("$${}{}${:-}")
	f.Fuzz(func(t *testing.T, s string) {
		out, err := ExpandEnv(s)
		if !strings.Contains(s, "${") && (err != nil || out != s) {
			t.Fatalf("ExpandEnv(%q) = %q, %v; want it unchanged", s, out, err)
		}
	})
}

// TestTypeErrorsDoNotQuoteMisplacedSecrets: a value of the wrong type is quoted (its start,
// as the YAML library gives it) except where a secret belongs, where the value given is likely
// that secret written in the wrong shape.
func TestTypeErrorsDoNotQuoteMisplacedSecrets(t *testing.T) {
	type token struct {
		Name  string `yaml:"name"`
		Token Secret `yaml:"token"`
	}
	type doc struct {
		Tokens  []token `yaml:"tokens"`
		Webhook struct {
			URL Secret `yaml:"url"`
		} `yaml:"webhook"`
		Server struct {
			Tokens []token `yaml:"tokens"`
			Count  int     `yaml:"count"`
		} `yaml:"server"`
	}
	src := "tokens:\n" +
		"  - s3cr3tlistitem-0123456789\n" + // 2: the token written as a list item
		"webhook: s3cr3twebhook-0123456789\n" + // 3: the URL written as the section
		"server:\n" +
		"  tokens: s3cr3tsection-0123456789\n" + // 5: the token written as the list
		"  count: manymanymany\n" // 6: not a secret: quoted
	f, err := Parse("c.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var v doc
	err = f.Decode(&v)
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 4 {
		t.Fatalf("want 4 problems, got %v", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "s3cr3t") {
		t.Fatalf("a start of a secret is quoted:\n%s", msg)
	}
	for _, want := range []string{"tokens (line 2)", "webhook (line 3)", "server.tokens (line 5)", `server.count (line 6): want a whole number, got text "manyman`} {
		if !strings.Contains(msg, want) {
			t.Errorf("no %q in\n%s", want, msg)
		}
	}
}
