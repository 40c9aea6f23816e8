package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
)

// TestLoggerRedactsSecrets: the logger every command builds redacts every secret of the file,
// inline or from a *_file, in messages and fields, whatever the text came from.
func TestLoggerRedactsSecrets(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "ldap.secret")
	if err := os.WriteFile(pwFile, []byte("ldap-password-xyz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TARGET_TOKEN", "target-token-abc123")
	f, err := config.Parse("c.yaml", []byte(`
ldap:
  url: ldap://127.0.0.1:389
  bind_dn: cn=x
  bind_password_file: `+pwFile+`
  base_dn: dc=x
target:
  url: https://scim.example.org/scim/v2
  token: ${TARGET_TOKEN}
log:
  format: json
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := decodeConfig(f, needLDAP, needTarget)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log, _, err := newLeveledLogger(cfg.Log, &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.With(zap.String("echo", "Bearer target-token-abc123")).Error("target said: Bearer target-token-abc123",
		zap.Error(errors.New("bind as ldap-password-xyz failed")))
	out := buf.String()
	if strings.Contains(out, "target-token-abc123") || strings.Contains(out, "ldap-password-xyz") || !strings.Contains(out, config.Redacted) {
		t.Fatalf("%s", out)
	}
}

// TestReloadTeachesTheLoggersRedactorTheNewSecrets: a SIGHUP reload reads the file again; a
// secret that is new in it must be redacted from the logs of the running process, whose
// logger was built with the first file's Redactor.
func TestReloadTeachesTheLoggersRedactorTheNewSecrets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	write := func(targetToken string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(`ldap:
  url: ldap://127.0.0.1:389
  base_dn: dc=x
target:
  url: https://scim.example.org/scim/v2
  token: `+targetToken+`
admin:
  listen: 127.0.0.1:0
state:
  path: `+filepath.Join(dir, "state.db")+`
log:
  format: json
`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("first-token-0123456789")
	a := &app{configPath: path}
	cfg, err := a.load(needLDAP, needTarget, needDaemon)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log, _, err := newLeveledLogger(cfg.Log, &buf)
	if err != nil {
		t.Fatal(err)
	}
	write("rotated-token-9876543210")
	next, err := a.reloader(cfg.Log.redact)()
	if err != nil {
		t.Fatal(err)
	}
	log.Error("target said: Bearer rotated-token-9876543210")
	if out := buf.String(); strings.Contains(out, "rotated-token-9876543210") || !strings.Contains(out, config.Redacted) {
		t.Fatalf("the logger printed the new token: %s", out)
	}
	if next.Redactor != cfg.Log.redact {
		t.Fatal("the reloaded settings carry another Redactor than the logger's")
	}
}
