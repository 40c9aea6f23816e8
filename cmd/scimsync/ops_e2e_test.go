package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/scimsync/scimsync/ldap/slapdtest"
)

// webhookReceiver is a real HTTP server on 127.0.0.1 standing in for Slack or Teams.
type webhookReceiver struct {
	srv    *httptest.Server
	mu     gosync.Mutex
	events []map[string]any
}

func newWebhookReceiver(t *testing.T) *webhookReceiver {
	t.Helper()
	r := &webhookReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		raw, _ := io.ReadAll(req.Body)
		var ev map[string]any
		if req.Method != http.MethodPost || json.Unmarshal(raw, &ev) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *webhookReceiver) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e["event"] == kind {
			n++
		}
	}
	return n
}

func (r *webhookReceiver) first(kind string) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e["event"] == kind {
			return e
		}
	}
	return nil
}

// TestSafetyStopAlertsOnceAndIsApprovedWhileTheDaemonRuns is the operator's day: a change shows
// in `history`, a mass departure stops the daemon's sync and posts one webhook, the plan is
// reviewed and the deprovision approved from the CLI while the daemon holds the state file,
// and the recovery is announced.
func TestSafetyStopAlertsOnceAndIsApprovedWhileTheDaemonRuns(t *testing.T) {
	var seed strings.Builder
	for i := 0; i < 12; i++ {
		seed.WriteString(slapdtest.Person(fmt.Sprintf("user%02d", i), slapdtest.UUID(i), "G", fmt.Sprintf("S%d", i), fmt.Sprintf("user%02d@example.org", i)))
	}
	ds := slapdtest.Start(t, seed.String())
	tgt := startSlowTarget(t)
	hook := newWebhookReceiver(t)
	dir := t.TempDir()
	adminAddr := freeAddr(t)
	_ = os.Mkdir(filepath.Join(dir, "reports"), 0o700)
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf(`ldap:
  url: %s
  bind_dn: %s
  bind_password: %s
  base_dn: %s
target:
  url: %s
  token: target-token-123456
  requests_per_second: 0
sync:
  schedule: "@every 1h"
  run_on_start: true
  max_deprovision: 2
  max_deprovision_percent: 5
admin:
  listen: %s
  token: admin-token-abcdef
  shutdown_timeout: 10s
state:
  path: %s/state.db
  report_dir: %s/reports
notify:
  max_retries: 1
  webhooks:
    - name: slack
      url: %s/services/T000/B000/HOOKSECRET
      events: [stopped, recovered, failed]
log:
  format: json
`, ds.URL, slapdtest.AdminDN, slapdtest.AdminPW, slapdtest.People, tgt.url, adminAddr, dir, dir, hook.srv.URL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "run", "-c", cfgPath)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	admin := "http://" + adminAddr
	waitFor(t, "the first sync", 20*time.Second, func() bool { return tgt.users() == 12 })
	waitFor(t, "the first run recorded", 10*time.Second, func() bool {
		return metric(adminGet(t, admin+"/metrics"), `scimsync_sync_runs_total{result="ok"}`) >= 1
	})

	// a change in the directory, synced through the daemon, shows in the user's history
	ds.Modify(t, "dn: uid=user03,"+slapdtest.People+"\nchangetype: modify\nreplace: sn\nsn: Renamed\n")
	out, code := runCLI(t, "sync", "-c", cfgPath)
	if code != 0 || !strings.Contains(out, "name.familyName") || !strings.Contains(out, "1 updated") {
		t.Fatalf("sync through the daemon: %d\n%s", code, out)
	}
	out, code = runCLI(t, "history", "user03", "-c", cfgPath)
	if code != 0 || !strings.Contains(out, "create") || !strings.Contains(out, `name.familyName  "S3" → "Renamed"`) {
		t.Fatalf("history user03: %d\n%s", code, out)
	}

	// five departures: above the limit, so the run deprovisions no one and stops (twice)
	for i := 5; i < 10; i++ {
		ds.Modify(t, fmt.Sprintf("dn: uid=user%02d,%s\nchangetype: delete\n", i, slapdtest.People))
	}
	for i := 0; i < 2; i++ {
		out, code = runCLI(t, "sync", "-c", cfgPath)
		if code != exitStopped || !strings.Contains(out, "--allow-deprovision 5") {
			t.Fatalf("stop %d: exit %d\n%s", i, code, out)
		}
	}
	waitFor(t, "the stop webhook", 10*time.Second, func() bool { return hook.count("stopped") == 1 })
	resp, err := http.Get(admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "--allow-deprovision 5") {
		t.Fatalf("/readyz after the stop: %d %s", resp.StatusCode, body)
	}

	// review, then approve while the daemon runs
	out, code = runCLI(t, "sync", "--dry-run", "--allow-deprovision", "5", "-c", cfgPath)
	if code != exitPending || strings.Count(out, "\ndisable ") != 5 {
		t.Fatalf("dry run of the approval: exit %d\n%s", code, out)
	}
	out, code = runCLI(t, "sync", "--allow-deprovision", "5", "-c", cfgPath)
	if code != 0 || !strings.Contains(out, "5 disabled") {
		t.Fatalf("approval: exit %d\n%s", code, out)
	}
	waitFor(t, "the recovery webhook", 10*time.Second, func() bool { return hook.count("recovered") == 1 })
	if n := hook.count("stopped"); n != 1 {
		t.Fatalf("%d stop webhooks, want exactly 1", n)
	}
	ev := hook.first("stopped")
	if text, _ := ev["text"].(string); !strings.Contains(text, "safety rule") || ev["format_version"] != float64(1) {
		t.Fatalf("stop event: %v", ev)
	}
	if resp, err = http.Get(admin + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz after the approval: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()

	// the disable is in the user's history and in the run's change log and report
	out, code = runCLI(t, "history", "user07", "-c", cfgPath)
	if code != 0 || !strings.Contains(out, "disable") || !regexp.MustCompile(`disable +done +active +"true" → "false"`).MatchString(out) {
		t.Fatalf("history user07: %d\n%s", code, out)
	}
	var runs struct {
		Runs []struct {
			ID     uint64 `json:"id"`
			Result string `json:"result"`
		} `json:"runs"`
	}
	out, _ = runCLI(t, "runs", "-o", "json", "-c", cfgPath)
	if err := json.Unmarshal([]byte(out), &runs); err != nil || len(runs.Runs) < 4 || runs.Runs[0].Result != "ok" || runs.Runs[1].Result != "stopped" {
		t.Fatalf("runs: %v\n%s", err, out)
	}
	last := runs.Runs[0].ID
	out, code = runCLI(t, "runs", "show", fmt.Sprint(last), "-c", cfgPath)
	if code != 0 || strings.Count(out, " disable ") != 5 {
		t.Fatalf("runs show %d: %d\n%s", last, code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "reports", fmt.Sprintf("run-%06d.json", last))); err != nil {
		t.Fatalf("no report file for run %d: %v", last, err)
	}
	m := adminGet(t, admin+"/metrics")
	if metric(m, `scimsync_notifications_total{event="stopped",outcome="sent",webhook="slack"}`) != 1 ||
		metric(m, `scimsync_notifications_total{event="recovered",outcome="sent",webhook="slack"}`) != 1 {
		t.Fatalf("notification metrics:\n%s", grepLines(m, "scimsync_notifications_total"))
	}
	if strings.Contains(logs.String(), "HOOKSECRET") || strings.Contains(logs.String(), "admin-token-abcdef") {
		t.Fatal("a secret appears in the daemon's logs")
	}
	if !strings.Contains(logs.String(), `"msg":"changed"`) || !strings.Contains(logs.String(), `"name":"user03"`) {
		t.Fatalf("the daemon's log does not name the changed user:\n%s", logs.String())
	}

	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("daemon exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop")
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
