package main

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/daemon"
	"github.com/scimsync/scimsync/scimserver"
	"github.com/scimsync/scimsync/state"
	"github.com/scimsync/scimsync/sync"
)

//go:embed sample-directory.ldif
var sampleDirectory []byte

const demoLong = `Sync a bundled sample directory (an LDIF file, users and groups) into scimsync's own
SCIM server on 127.0.0.1: a dry run first, the real sync, two changes in the directory (an
attribute, a group membership) and the syncs that follow them, then a dry run that finds
nothing left to do. Nothing to install.

Everything stays in --dir (a new temporary directory by default): the directory file, a
working config.yaml, its secrets, the state file with the history, and a report per run. The
demo ends with three commands to try on that config.`

// demoConfig is the config the demo leaves behind: `scimsync run` on it hosts the SCIM server
// and syncs the sample directory into it.
var demoConfig = template.Must(template.New("config").Parse(`# scimsync demo: the sample directory (an LDIF file) synced into scimsync's own SCIM server.
# 'scimsync run -c {{.Dir}}/config.yaml' runs both: the daemon syncs the file into the server it
# hosts, every minute. Edit directory.ldif and watch the next run (scimsync runs, history).
ldap:
  url: file://{{.Dir}}/directory.ldif
  base_dn: ou=people,dc=example,dc=org
target:
  url: http://{{.Server}}/scim/v2
  token_file: {{.Dir}}/scim.secret
  requests_per_second: 0
sync:
  schedule: "@every 1m"
  run_on_start: true
  overrides:
    - user_name: "svc-*"                  # service accounts are hands-off
groups:                                   # LDAP groups become SCIM Groups (nested groups flattened)
  base_dn: ou=groups,dc=example,dc=org
server:
  listen: {{.Server}}
  tokens:
    - name: demo
      token_file: {{.Dir}}/scim.secret
admin:
  listen: {{.Admin}}
  token_file: {{.Dir}}/admin.secret
state:
  path: {{.Dir}}/state.db
  report_dir: {{.Dir}}/reports
log:
  level: info
`))

// demoStep is one step of `demo -o json`.
type demoStep struct {
	Title  string             `json:"title"`
	Report *daemon.SyncReport `json:"report"`
}

// demoReport is `demo -o json`.
type demoReport struct {
	FormatVersion int                  `json:"format_version"`
	Dir           string               `json:"dir"`
	Config        string               `json:"config"`
	Steps         []demoStep           `json:"steps"`
	History       []state.HistoryEntry `json:"history"`
	Next          []string             `json:"next"`
}

func (a *app) demoCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Sync a bundled sample directory into the built-in SCIM server, and leave a working config",
		Long:  demoLong,
		Example: `  scimsync demo
  scimsync demo --dir ./scimsync-demo`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.demo(cmd.Context(), dir) },
	}
	cmd.Flags().StringVar(&dir, "dir", "", "where to keep the demo's files (default: a new temporary directory)")
	_ = cmd.MarkFlagDirname("dir")
	return cmd
}

func (a *app) demo(ctx context.Context, dir string) error {
	dir, cfgPath, err := writeDemoFiles(dir)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(cfgPath, needLDAP, needTarget, needServer, needDaemon)
	if err != nil {
		return fmt.Errorf("demo: the config it wrote does not load: %w", err)
	}
	log := zap.NewNop()
	st, err := state.Open(cfg.State.Path, state.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	srv, err := scimserver.NewServer(cfg.Server, st, log)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		_ = srv.Stop(sctx)
	}()
	out := a.stdout
	if a.json() {
		out = io.Discard
	}
	rep := demoReport{FormatVersion: formatVersion, Dir: dir, Config: cfgPath, Steps: []demoStep{}}
	fmt.Fprintf(out, "scimsync demo: directory %s → SCIM server %s\nfiles in %s\n\n", cfg.LDAP.URL, cfg.Target.URL, dir)

	steps := []struct {
		title  string
		dry    bool
		before func() error
	}{
		{"1. Dry run: what the sync would do (nothing is written)", true, nil},
		{"2. The real sync", false, nil},
		{"3. Alice is promoted in the directory; the next sync updates only her", false, func() error {
			return editDirectory(cfg.LDAP.URL, "entryUUID: 5a1e0000-0000-4000-8000-000000000001\ntitle: Engineer\n",
				"entryUUID: 5a1e0000-0000-4000-8000-000000000001\ntitle: Principal Engineer\n")
		}},
		{"4. Bob leaves engineering; engineering and staff (which holds it) each lose him, one PATCH each", false, func() error {
			return editDirectory(cfg.LDAP.URL, "member: uid=bob,ou=people,dc=example,dc=org\n", "")
		}},
		{"5. Dry run again: nothing left to do", true, nil},
	}
	var lastRun uint64
	for _, s := range steps {
		fmt.Fprintf(out, "== %s\n", s.title)
		if s.before != nil {
			if err := s.before(); err != nil {
				return fmt.Errorf("demo: %w", err)
			}
		}
		opts := daemon.SyncOptions{DryRun: s.dry}
		o, err := runSync(ctx, cfg, st, log, opts, daemon.NewProgress(log, nil, progressIntervalNever), func(p *sync.Plan) error {
			return sync.WriteText(out, p)
		})
		if err != nil {
			return err
		}
		if !s.dry {
			if err := daemon.Bookkeep(st, cfg.State, o.Plan, o.Result, time.Now()); err != nil {
				return err
			}
		}
		if o.Result != nil {
			fmt.Fprintln(out, sync.ResultLine(o.Result))
			lastRun = o.Result.RunID
		}
		sr, err := daemon.NewSyncReport(s.dry, o, nil)
		if err != nil {
			return err
		}
		rep.Steps = append(rep.Steps, demoStep{Title: s.title, Report: sr})
		fmt.Fprintln(out)
	}
	fmt.Fprintln(out, "== 6. What happened to alice: scimsync history alice")
	if rep.History, err = st.History("alice", 0); err != nil {
		return err
	}
	if err := printChanges(out, rep.History, true); err != nil {
		return err
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "== 7. Alice as the SCIM server returns her")
	tok, err := config.ResolveSecret(cfg.Target.Token, cfg.Target.TokenFile)
	if err != nil {
		return err
	}
	if err := showUser(ctx, out, cfg.Target.URL, tok.Reveal()); err != nil {
		return err
	}
	c := " -c " + cfgPath
	rep.Next = []string{
		"scimsync history alice" + c,
		fmt.Sprintf("scimsync runs show %d", lastRun) + c,
		"scimsync run" + c,
	}
	if a.json() {
		return a.emit(rep)
	}
	fmt.Fprintf(out, "\nThe demo left a working config in %s. Next, try:\n", cfgPath)
	why := []string{"# every change to alice, old → new", fmt.Sprintf("# everything run %d did", lastRun), "# the daemon: syncs every minute into its own SCIM server (Ctrl-C stops it)"}
	width := 0
	for _, n := range rep.Next {
		width = max(width, len(n))
	}
	for i, n := range rep.Next {
		fmt.Fprintf(out, "  %-*s  %s\n", width, n, why[i])
	}
	return nil
}

// editDirectory replaces the first old with new in the demo's LDIF directory.
func editDirectory(url, old, new string) error {
	ldif := strings.TrimPrefix(url, "file://")
	data, err := os.ReadFile(ldif)
	if err != nil {
		return err
	}
	if !bytes.Contains(data, []byte(old)) {
		return fmt.Errorf("the sample directory %s lacks %q", ldif, old)
	}
	return os.WriteFile(ldif, bytes.Replace(data, []byte(old), []byte(new), 1), 0o600)
}

// progressIntervalNever keeps the demo's runs (a few milliseconds each) from logging progress.
const progressIntervalNever = 1 << 62

// writeDemoFiles lays out the demo directory: the sample directory, two secrets (0600) and a
// config with free loopback ports for the SCIM server and the admin listener. A previous demo's
// state and reports are removed so every demo starts from nothing.
func writeDemoFiles(dir string) (string, string, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "scimsync-demo-")
		if err != nil {
			return "", "", err
		}
		dir = d
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(filepath.Join(dir, "reports"), 0o700); err != nil {
		return "", "", err
	}
	if err := os.Remove(filepath.Join(dir, "state.db")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", "", err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "reports", "run-*.json"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	files := map[string][]byte{
		"directory.ldif": sampleDirectory,
		"scim.secret":    []byte(randomToken() + "\n"),
		"admin.secret":   []byte(randomToken() + "\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return "", "", err
		}
	}
	server, err := freeLoopback()
	if err != nil {
		return "", "", err
	}
	admin, err := freeLoopback()
	if err != nil {
		return "", "", err
	}
	var buf bytes.Buffer
	if err := demoConfig.Execute(&buf, map[string]string{"Dir": dir, "Server": server, "Admin": admin}); err != nil {
		return "", "", err
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, buf.Bytes(), 0o600); err != nil {
		return "", "", err
	}
	return dir, cfgPath, nil
}

// freeLoopback finds a free port on 127.0.0.1 for the demo config.
func freeLoopback() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func showUser(ctx context.Context, w io.Writer, base, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+`/Users?filter=userName%20eq%20%22alice%22`, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var lr struct {
		Resources []json.RawMessage `json:"Resources"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&lr); err != nil {
		return err
	}
	if len(lr.Resources) == 0 {
		return errors.New("demo: the synced user is missing from the server")
	}
	var pretty map[string]any
	_ = json.Unmarshal(lr.Resources[0], &pretty)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(pretty)
}

func randomToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
