package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// runCLIEnv runs the binary with extra environment and returns stdout and stderr apart.
func runCLIEnv(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// oneJSON asserts that out is exactly one JSON document with a format_version and no null, and
// returns it.
func oneJSON(t *testing.T, what, out string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", what, err, out)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		t.Fatalf("%s: more than one JSON document:\n%s", what, out)
	}
	if _, ok := doc["format_version"]; !ok {
		t.Fatalf("%s: no format_version:\n%s", what, out)
	}
	if strings.Contains(out, ": null") {
		t.Fatalf("%s: null in the JSON (lists must be []):\n%s", what, out)
	}
	return doc
}

// demoDir runs the demo once: it leaves a config whose directory is a file and whose target is
// the server section of the same file.
func demoDir(t *testing.T) (dir, cfg string) {
	t.Helper()
	dir = t.TempDir()
	out, errOut, code := runCLIEnv(t, nil, "demo", "--dir", dir, "-o", "json")
	if code != 0 {
		t.Fatalf("demo: %d\n%s\n%s", code, out, errOut)
	}
	doc := oneJSON(t, "demo", out)
	steps := doc["steps"].([]any)
	if len(steps) != 5 || len(doc["next"].([]any)) != 3 {
		t.Fatalf("demo report: %v", doc)
	}
	// the membership step removes bob from engineering and from staff, which holds it: two
	// group PATCHes and nothing else
	member := steps[3].(map[string]any)["report"].(map[string]any)
	done := member["result"].(map[string]any)["groups_done"].(map[string]any)
	if done["update"] != 2.0 || member["scim_writes"] != 2.0 {
		t.Fatalf("demo membership step: %v, %v writes", done, member["scim_writes"])
	}
	return dir, filepath.Join(dir, "config.yaml")
}

func TestFlagsAfterArgumentsAreHonoured(t *testing.T) {
	dir := t.TempDir()
	site := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(site, []byte("state:\n  path: "+filepath.Join(dir, "site.db")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// a default pointing elsewhere proves the flag after the arguments is the one used
	other := filepath.Join(dir, "other.yaml")
	_ = os.WriteFile(other, []byte("state:\n  path: "+filepath.Join(dir, "other.db")+"\n"), 0o600)
	env := []string{"SCIMSYNC_CONFIG=" + other}

	out, errOut, code := runCLIEnv(t, env, "override", "set", "alice", "CMS", "--config", site)
	if code != 0 || !strings.Contains(out, "site.db") {
		t.Fatalf("override set … --config site.yaml: %d\n%s%s", code, out, errOut)
	}
	out, _, _ = runCLIEnv(t, env, "override", "list", "-o", "json", "-c", site)
	if !strings.Contains(out, `"userName": "alice"`) {
		t.Fatalf("the override is not in site.yaml's state:\n%s", out)
	}
	out, _, _ = runCLIEnv(t, env, "override", "list", "-o", "json")
	if strings.Contains(out, "alice") {
		t.Fatalf("the override landed in the default config's state:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.db")); err == nil {
		t.Fatal("a read of the default config's state created it")
	}
	// and flags between arguments
	if out, errOut, code = runCLIEnv(t, env, "override", "set", "-c", site, "bob", "DEFAULT"); code != 0 || !strings.Contains(out, "bob is now DEFAULT") {
		t.Fatalf("flag between arguments: %d %s %s", code, out, errOut)
	}
	// a group's override, apart from a user's of the same name
	if out, errOut, code = runCLIEnv(t, env, "override", "set", "alice", "DEFAULT", "--group", "-c", site); code != 0 || !strings.Contains(out, "group alice is now DEFAULT") {
		t.Fatalf("override set --group: %d %s %s", code, out, errOut)
	}
	out, _, _ = runCLIEnv(t, env, "override", "list", "-c", site)
	if !strings.Contains(out, "KIND") || !regexp.MustCompile(`(?m)^group +alice +DEFAULT`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^user +alice +CMS`).MatchString(out) {
		t.Fatalf("override list does not tell the group's from the user's:\n%s", out)
	}
	if out, errOut, code = runCLIEnv(t, env, "override", "clear", "--group", "alice", "-c", site); code != 0 || !strings.Contains(out, "override for group alice cleared") {
		t.Fatalf("override clear --group: %d %s %s", code, out, errOut)
	}
	if out, _, _ = runCLIEnv(t, env, "override", "list", "-c", site); strings.Contains(out, "group ") || !strings.Contains(out, "alice") {
		t.Fatalf("after clearing the group's override:\n%s", out)
	}
}

func TestHelpExitsZeroWithExamples(t *testing.T) {
	for _, args := range [][]string{
		{}, {"sync"}, {"run"}, {"serve"}, {"status"}, {"runs"}, {"runs", "show"}, {"history"}, {"override"},
		{"override", "set"}, {"override", "clear"}, {"override", "list"}, {"check"}, {"profiles"}, {"config", "example"},
		{"demo"}, {"version"}, {"completion"},
	} {
		out, errOut, code := runCLIEnv(t, nil, append(args, "--help")...)
		if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "scimsync") {
			t.Errorf("%v --help: exit %d, examples %v\n%s%s", args, code, strings.Contains(out, "Examples:"), out, errOut)
		}
	}
	out, _, code := runCLIEnv(t, nil, "sync", "-h")
	if code != 0 || !strings.Contains(out, "--allow-deprovision") || !strings.Contains(out, "Exit codes") {
		t.Errorf("sync -h: %d\n%s", code, out)
	}
	// a mistake is exit 1 and says where to look
	_, errOut, code := runCLIEnv(t, nil, "sync", "--dry-rn")
	if code != 1 || !strings.Contains(errOut, "unknown flag: --dry-rn") || !strings.Contains(errOut, "scimsync sync --help") {
		t.Errorf("unknown flag: %d %s", code, errOut)
	}
	_, errOut, code = runCLIEnv(t, nil, "histroy", "alice")
	if code != 1 || !strings.Contains(errOut, `Did you mean this?`) {
		t.Errorf("unknown command: %d %s", code, errOut)
	}
}

func TestVersion(t *testing.T) {
	out, _, code := runCLIEnv(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "scimsync ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: %d %s", code, out)
	}
	out, _, _ = runCLIEnv(t, nil, "version", "-o", "json")
	doc := oneJSON(t, "version", out)
	for _, k := range []string{"version", "commit", "date", "go_version", "platform"} {
		if s, _ := doc[k].(string); s == "" {
			t.Errorf("version JSON lacks %s: %s", k, out)
		}
	}
	// the release build stamps version, commit and date
	stamped := filepath.Join(t.TempDir(), "scimsync")
	ld := "-X main.version=v9.8.7 -X main.commit=0123abcd -X main.date=2026-11-30T10:00:00Z"
	if b, err := exec.Command("go", "build", "-trimpath", "-ldflags", ld, "-o", stamped, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	b, err := exec.Command(stamped, "version").Output()
	if err != nil || !strings.Contains(string(b), "scimsync v9.8.7 (commit 0123abcd, built 2026-11-30T10:00:00Z") {
		t.Fatalf("stamped version: %v %s", err, b)
	}
}

func TestCompletionScripts(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	// the script loads in a plain bash (no bash-completion package needed) and registers itself
	script := fmt.Sprintf(`source <(%q completion bash) && complete -p scimsync`, binary)
	out, err := exec.Command("bash", "-c", script).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "scimsync") {
		t.Fatalf("bash completion: %v\n%s", err, out)
	}
	// and it completes: the hidden __complete protocol answers with subcommands and values
	o, _, code := runCLIEnv(t, nil, "__complete", "override", "set", "alice", "")
	if code != 0 || !strings.Contains(o, "CMS") || !strings.Contains(o, "DEFAULT") {
		t.Fatalf("completion of override set: %s", o)
	}
	o, _, _ = runCLIEnv(t, nil, "__complete", "hist")
	if !strings.Contains(o, "history") {
		t.Fatalf("completion of hist: %s", o)
	}
	for shell, want := range map[string]string{"zsh": "#compdef scimsync", "fish": "complete -c scimsync"} {
		o, _, code := runCLIEnv(t, nil, "completion", shell)
		if code != 0 || !strings.Contains(o, want) {
			t.Errorf("completion %s: %d, lacks %q", shell, code, want)
		}
	}
}

func TestConfigExampleIsTheEmbeddedValidConfig(t *testing.T) {
	out, _, code := runCLIEnv(t, nil, "config", "example")
	want, _ := os.ReadFile(filepath.Join("..", "..", "config", "example.yaml"))
	if code != 0 || out != string(want) {
		t.Fatalf("config example differs from config/example.yaml (exit %d)", code)
	}
}

func TestCheckValidatesEverythingInOnePass(t *testing.T) {
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose.secret")
	_ = os.WriteFile(loose, []byte("t0ken-value\n"), 0o644)
	_ = os.Chmod(loose, 0o644)
	cfg := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(cfg, []byte(`ldap:
  url: ldap://127.0.0.1:1
  base_dn: dc=example,dc=org
  bind_dn: cn=admin,dc=example,dc=org
  bind_password_file: `+filepath.Join(dir, "missing.secret")+`
  dial_timeout: 1s
  page_sise: 10
target:
  url: http://127.0.0.1:1/scim/v2
  token_file: `+loose+`
  profile: pasbolt
  max_retries: lots
sync:
  schedule: "61 * * * *"
admn:
  listen: 127.0.0.1:1
`), 0o600)
	out, _, code := runCLIEnv(t, nil, "check", "-c", cfg)
	for _, want := range []string{
		`ldap.page_sise (line 7): unknown key "page_sise" (did you mean "page_size"?)`,
		`target.profile (line 11)`, `did you mean "passbolt"?`,
		`target.max_retries (line 12): want a whole number, got text "lots"`,
		`sync.schedule (line 14)`, // run refuses it, so check does
		`admn (line 15): unknown key "admn" (did you mean "admin"?)`,
		`ldap.bind_password_file: FAILED: stat ` + filepath.Join(dir, "missing.secret") + `: no such file`,
		`target.token_file: warning: ` + loose + ` has mode 0644`,
		"next:", "fix the config problems above",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q", want)
		}
	}
	if code != 1 || strings.Contains(out, "t0ken-value") {
		t.Fatalf("check: exit %d\n%s", code, out)
	}
	out, _, code = runCLIEnv(t, nil, "check", "-c", cfg, "-o", "json")
	doc := oneJSON(t, "check -o json", out)
	if code != 1 || doc["valid"] != false || len(doc["problems"].([]any)) != 5 {
		t.Fatalf("check -o json: %d\n%s", code, out)
	}

	// the config the demo leaves passes every check and says what is next
	_, demoCfg := demoDir(t)
	out, _, code = runCLIEnv(t, nil, "check", "-c", demoCfg)
	if code != 1 || !strings.Contains(out, "config: "+demoCfg+" is valid") || !strings.Contains(out, "target: FAILED") {
		// the demo's SCIM server only runs inside `demo` and `run`: the target is down here
		t.Fatalf("check of the demo config: %d\n%s", code, out)
	}
	if !strings.Contains(out, "ldap: bound to file://") || !strings.Contains(out, "state: ") {
		t.Fatalf("check of the demo config:\n%s", out)
	}
	// the demo directory's groups: engineering (alice, carol: bob left in step 4), staff
	// (engineering, dave, erin), ops (posixGroup: frank, grace)
	if !strings.Contains(out, "groups: 3 groups under ou=groups,") || !strings.Contains(out, "with 7 member values") {
		t.Fatalf("check does not count the demo's groups:\n%s", out)
	}
}

func TestLooseSecretWarnedAtStartupWithJournalPriority(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "target.secret")
	_ = os.WriteFile(tok, []byte("tok\n"), 0o640)
	_ = os.Chmod(tok, 0o640)
	cfg := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(cfg, []byte("ldap:\n  url: file://"+filepath.Join(dir, "none.ldif")+"\n  base_dn: dc=x\n"+
		"target:\n  url: http://127.0.0.1:1/scim/v2\n  token_file: "+tok+"\n  max_retries: 0\n  timeout: 1s\n"+
		"state:\n  path: "+filepath.Join(dir, "s.db")+"\nlog:\n  format: json\n"), 0o600)
	// stderr is a file systemd would have connected to the journal: JOURNAL_STREAM names it
	logf, err := os.Create(filepath.Join(dir, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(logf.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "sync", "--dry-run", "-c", cfg)
	cmd.Env = append(os.Environ(), fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
	cmd.Stderr = logf
	_ = cmd.Run()
	raw, _ := os.ReadFile(logf.Name())
	var warned bool
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, `<4>{"level":"warn"`) && strings.Contains(line, "readable by group or others") {
			warned = true
		}
	}
	if !warned {
		t.Fatalf("no <4>-prefixed warning about the secret's mode:\n%s", raw)
	}
	// -q keeps only errors; -v and --log-level debug add debug lines; -q -v is refused
	_, errOut, _ := runCLIEnv(t, nil, "sync", "--dry-run", "-q", "-c", cfg)
	if strings.Contains(errOut, "readable by group or others") {
		t.Errorf("-q still warns:\n%s", errOut)
	}
	_, errOut, _ = runCLIEnv(t, nil, "sync", "--dry-run", "--log-level", "warn", "-c", cfg)
	if !strings.Contains(errOut, "readable by group or others") {
		t.Errorf("--log-level warn drops the warning:\n%s", errOut)
	}
	if _, errOut, code := runCLIEnv(t, nil, "status", "-q", "-v", "-c", cfg); code != 1 || !strings.Contains(errOut, "contradict") {
		t.Errorf("-q -v: %d %s", code, errOut)
	}
}

func TestJSONOutputIsOneDocumentForEveryCommand(t *testing.T) {
	dir, demoCfg := demoDir(t)
	// a SCIM server for `sync`, on its own state file, and a config whose target it is
	srvAddr := freeAddr(t)
	srvCfg := filepath.Join(dir, "serve.yaml")
	_ = os.WriteFile(srvCfg, []byte(fmt.Sprintf("server:\n  listen: %s\n  tokens:\n    - name: t\n      token_file: %s/scim.secret\nstate:\n  path: %s/serve.db\n",
		srvAddr, dir, dir)), 0o600)
	startServe(t, srvCfg, srvAddr)
	raw, _ := os.ReadFile(demoCfg)
	syncCfg := filepath.Join(dir, "sync.yaml")
	cfgText := strings.Replace(string(raw), "url: http://", "url: http://"+srvAddr+"/scim/v2 #", 1)
	cfgText = strings.Replace(cfgText, "path: "+dir+"/state.db", "path: "+dir+"/sync.db", 1)
	_ = os.WriteFile(syncCfg, []byte(cfgText), 0o600)

	type call struct {
		args []string
		code int
	}
	calls := []call{
		{[]string{"sync", "--dry-run", "-c", syncCfg}, 2},
		{[]string{"sync", "-c", syncCfg}, 0},
		{[]string{"sync", "--dry-run", "-c", syncCfg}, 0},
		{[]string{"sync", "--user", "alice", "-c", syncCfg}, 0},
		{[]string{"sync", "--user", "nobody", "-c", syncCfg}, 1},
		{[]string{"status", "-c", syncCfg}, 0},
		{[]string{"runs", "-c", syncCfg}, 0},
		{[]string{"runs", "show", "1", "-c", syncCfg}, 0},
		{[]string{"runs", "show", "99", "-c", syncCfg}, 1},
		{[]string{"history", "alice", "-c", syncCfg}, 0},
		{[]string{"history", "nobody", "-c", syncCfg}, 0},
		{[]string{"override", "set", "zoe", "CMS", "-c", syncCfg}, 0},
		{[]string{"override", "list", "-c", syncCfg}, 0},
		{[]string{"override", "clear", "zoe", "-c", syncCfg}, 0},
		{[]string{"check", "-c", syncCfg}, 0},
		{[]string{"profiles"}, 0},
		{[]string{"profiles", "--show", "nuage-vsd"}, 0},
		{[]string{"config", "example"}, 0},
		{[]string{"version"}, 0},
		{[]string{"status", "-c", filepath.Join(dir, "missing.yaml")}, 1},
	}
	for _, c := range calls {
		args := append(append([]string{}, c.args...), "-o", "json")
		out, errOut, code := runCLIEnv(t, nil, args...)
		if code != c.code {
			t.Errorf("%v: exit %d, want %d\n%s\n%s", c.args, code, c.code, out, errOut)
			continue
		}
		doc := oneJSON(t, strings.Join(c.args, " "), out)
		if code == 1 && doc["error"] == nil && c.args[0] != "sync" {
			t.Errorf("%v: failed without an error in its JSON: %s", c.args, out)
		}
	}
	// the sync document holds the plan and the result, with [] for empty lists
	out, _, _ := runCLIEnv(t, nil, "sync", "--dry-run", "-o", "json", "-c", syncCfg)
	doc := oneJSON(t, "sync", out)
	plan := doc["plan"].(map[string]any)
	if _, ok := plan["items"].([]any); !ok || plan["format_version"] == nil {
		t.Fatalf("sync -o json plan: %s", out)
	}
	out, _, _ = runCLIEnv(t, nil, "history", "alice", "-o", "json", "-c", syncCfg)
	if ch := oneJSON(t, "history", out)["changes"].([]any); len(ch) == 0 {
		t.Fatalf("history of alice after the sync is empty: %s", out)
	}

	// LoadCredential=: systemd puts the secret in $CREDENTIALS_DIRECTORY; the config names it
	// with a fallback for an administrator's shell
	creds := t.TempDir()
	tok, _ := os.ReadFile(filepath.Join(dir, "scim.secret"))
	_ = os.WriteFile(filepath.Join(creds, "target.secret"), tok, 0o400)
	credCfg := filepath.Join(dir, "cred.yaml")
	_ = os.WriteFile(credCfg, []byte(strings.Replace(cfgText, "token_file: "+dir+"/scim.secret\n  requests_per_second",
		"token_file: ${CREDENTIALS_DIRECTORY:-/nonexistent}/target.secret\n  requests_per_second", 1)), 0o600)
	out, errOut, code := runCLIEnv(t, []string{"CREDENTIALS_DIRECTORY=" + creds}, "sync", "--dry-run", "-c", credCfg)
	if code != 0 || !strings.Contains(out, "0 to create") {
		t.Fatalf("sync with the token from $CREDENTIALS_DIRECTORY: %d\n%s%s", code, out, errOut)
	}
	out, _, code = runCLIEnv(t, nil, "check", "-c", credCfg)
	if code != 1 || !strings.Contains(out, "target.token_file: FAILED: stat /nonexistent/target.secret") {
		t.Fatalf("check without $CREDENTIALS_DIRECTORY falls back to the default path: %d\n%s", code, out)
	}
}
