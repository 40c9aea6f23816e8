package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/daemon"
	"github.com/scimsync/scimsync/ldap/slapdtest"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/scimserver"
	"github.com/scimsync/scimsync/state"
)

// notifySocket is a fake systemd: it collects what the daemon sends to NOTIFY_SOCKET.
type notifySocket struct {
	path string
	mu   gosync.Mutex
	msgs []string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(t.TempDir(), "notify.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

// value is the last numeric value sent for key (KEY=123), or 0.
func (n *notifySocket) value(key string) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	var v int64
	for _, m := range n.msgs {
		for _, line := range strings.Split(m, "\n") {
			if rest, ok := strings.CutPrefix(line, key+"="); ok {
				v, _ = strconv.ParseInt(rest, 10, 64)
			}
		}
	}
	return v
}

func (n *notifySocket) has(s string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.msgs {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// slowTarget is a real SCIM server whose writes can be slowed down, to make a sync last.
type slowTarget struct {
	url   string
	delay atomic.Int64 // per write, in ms
	users func() int
}

func startSlowTarget(t *testing.T) *slowTarget {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), "target.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := scimserver.DefaultServerConfig()
	cfg.Tokens = []scimserver.TokenConfig{{Name: "daemon", Token: config.NewSecret("target-token-123456")}}
	srv, err := scimserver.NewServer(cfg, st, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tgt := &slowTarget{}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			time.Sleep(time.Duration(tgt.delay.Load()) * time.Millisecond)
		}
		srv.Handler().ServeHTTP(w, r)
	})}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close(); _ = st.Close() })
	tgt.url = "http://" + ln.Addr().String() + "/scim/v2"
	tgt.users = func() int {
		c, _ := scimclient.NewClient(scimclient.TargetConfig{URL: tgt.url, Token: config.NewSecret("target-token-123456"), Profile: "generic",
			Timeout: config.Duration(5 * time.Second), Concurrency: 1, MaxRetries: 0, PageSize: 500}, zap.NewNop())
		n, ids := 0, map[string]bool{}
		_ = c.ListUsers(context.Background(), func(d scim.Doc) error {
			n++
			ext, _ := d["externalId"].(string)
			if ids[ext] {
				t.Errorf("duplicate externalId %s on the target", ext)
			}
			ids[ext] = true
			return nil
		})
		return n
	}
	return tgt
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func adminGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func metric(body, name string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func TestRunDaemonUnderFakeSystemd(t *testing.T) {
	var seed strings.Builder
	for i := 0; i < 30; i++ {
		seed.WriteString(slapdtest.Person(fmt.Sprintf("user%02d", i), slapdtest.UUID(i), "G", fmt.Sprintf("S%d", i), fmt.Sprintf("user%02d@example.org", i)))
	}
	ds := slapdtest.Start(t, seed.String())
	tgt := startSlowTarget(t)
	dir := t.TempDir()
	adminAddr := freeAddr(t)
	cfgPath := filepath.Join(dir, "config.yaml")
	writeCfg := func(schedule string, extra string) {
		cfg := fmt.Sprintf(`ldap:
  url: %s
  bind_dn: %s
  bind_password: %s
  base_dn: %s
target:
  url: %s
  token: target-token-123456
  concurrency: 1
  requests_per_second: 0
sync:
  schedule: "%s"
admin:
  listen: %s
  token: admin-token-abcdef
  shutdown_timeout: 10s
state:
  path: %s/state.db
log:
  format: json
  progress_interval: 1s
%s`, ds.URL, slapdtest.AdminDN, slapdtest.AdminPW, slapdtest.People, tgt.url, schedule, adminAddr, dir, extra)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("@every 2s", "")
	ns := newNotifySocket(t)
	cmd := exec.Command(binary, "run", "--config", cfgPath)
	// systemd sets WATCHDOG_USEC for WatchdogSec=2s: the daemon must ping at half that
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+ns.path, "WATCHDOG_USEC=2000000")
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

	waitFor(t, "READY=1", 10*time.Second, func() bool { return ns.has("READY=1") })
	waitFor(t, "a watchdog ping", 5*time.Second, func() bool { return ns.has("WATCHDOG=1") })
	waitFor(t, "a scheduled sync", 15*time.Second, func() bool { return tgt.users() == 30 })
	waitFor(t, "the run recorded", 5*time.Second, func() bool {
		return metric(adminGet(t, admin+"/metrics"), `scimsync_sync_runs_total{result="ok"}`) >= 1
	})
	// counted from state after the run, without holding every link
	if m := adminGet(t, admin+"/metrics"); metric(m, `scimsync_managed_users{state="active"}`) != 30 || metric(m, `scimsync_managed_users{state="disabled"}`) != 0 {
		t.Errorf("managed users:\n%s", grepLines(m, "scimsync_managed_users"))
	}
	var rep daemon.StatusReport
	if err := json.Unmarshal([]byte(adminGet(t, admin+"/status")), &rep); err != nil || rep.ManagedUsers != 30 || rep.NextRun.IsZero() {
		t.Fatalf("status: %+v %v", rep, err)
	}
	if !ns.has("STATUS=last sync ok") {
		t.Errorf("no STATUS= after a run")
	}

	// POST /sync needs the admin token, then runs one
	resp, err := http.Post(admin+"/sync", "", nil)
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("unauthenticated POST /sync: %v %v", resp, err)
	}
	resp.Body.Close()
	post := func(path string) (int, string) {
		req, _ := http.NewRequest("POST", admin+path, nil)
		req.Header.Set("Authorization", "Bearer admin-token-abcdef")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// 409 only while the scheduled sync holds the lock; then POST /sync runs one itself
	var code int
	var body string
	waitFor(t, "POST /sync?dry_run=true to get the plan", 10*time.Second, func() bool { code, body = post("/sync?dry_run=true"); return code != 409 })
	if code != 200 || !strings.Contains(body, `"plan"`) || strings.Contains(body, `"result"`) {
		t.Fatalf("dry run over the admin API: %d %s", code, body)
	}
	_ = json.Unmarshal([]byte(adminGet(t, admin+"/status")), &rep)
	lastBefore := rep.Runs[0].ID
	waitFor(t, "POST /sync to run", 10*time.Second, func() bool { code, body = post("/sync"); return code != 409 })
	if code != 200 || !strings.Contains(body, `"result"`) {
		t.Fatalf("POST /sync: %d %s", code, body)
	}
	_ = json.Unmarshal([]byte(adminGet(t, admin+"/status")), &rep)
	if rep.Runs[0].ID <= lastBefore {
		t.Fatalf("POST /sync recorded no run: newest run %d before and after", lastBefore)
	}

	// a slow sync is not overlapped by the 2 s schedule
	tgt.delay.Store(400)
	for i := 0; i < 12; i++ {
		ds.Modify(t, fmt.Sprintf("dn: uid=user%02d,%s\nchangetype: modify\nreplace: title\ntitle: Slow\n", i, slapdtest.People))
	}
	waitFor(t, "a skipped tick", 20*time.Second, func() bool {
		return metric(adminGet(t, admin+"/metrics"), "scimsync_sync_skipped_ticks_total") >= 1
	})
	// the slow run (about 5 s) reported its progress to systemd and to the log
	waitFor(t, "a progress STATUS=", 10*time.Second, func() bool { return ns.has("changes applied") })
	if !ns.has("STATUS=syncing: ") || !ns.has("/s, ETA ") || !strings.Contains(logs.String(), `"msg":"sync progress"`) {
		t.Errorf("no progress in STATUS= or the log")
	}
	tgt.delay.Store(0)

	// `scimsync status` works while the daemon holds the state file
	out, code := runCLI(t, "status", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "next run") || !strings.Contains(out, "30 managed users") {
		t.Fatalf("status while running: %d\n%s", code, out)
	}
	if out, code = runCLI(t, "override", "--config", cfgPath, "set", "user29", "CMS"); code != 0 {
		t.Fatalf("override while running: %s", out)
	}

	// SIGHUP: a broken file is refused and the old schedule keeps running; a good one is taken
	if err := os.WriteFile(cfgPath, []byte("ldap:\n  url: gopher://x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the rejected reload logged", 10*time.Second, func() bool { return strings.Contains(logs.String(), "reload rejected") })
	if !strings.Contains(logs.String(), "ldap.url") {
		t.Errorf("the rejected reload does not say why: %s", logs.String())
	}
	writeCfg("@every 1h", "")
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the good reload", 10*time.Second, func() bool {
		return strings.Contains(adminGet(t, admin+"/status"), `"schedule": "@every 1h"`)
	})
	if !ns.has("RELOADING=1") {
		t.Error("no RELOADING=1 on reload")
	}
	// MONOTONIC_USEC is CLOCK_MONOTONIC (time since boot), not the wall clock systemd rejects
	if usec := ns.value("MONOTONIC_USEC"); usec <= 0 || usec > time.Now().UnixMicro()/2 {
		t.Errorf("MONOTONIC_USEC=%d is not the monotonic clock", usec)
	}

	// SIGTERM during a sync: exit 0 within the timeout, and the next run converges
	tgt.delay.Store(300)
	for i := 0; i < 20; i++ {
		ds.Modify(t, fmt.Sprintf("dn: uid=user%02d,%s\nchangetype: modify\nreplace: title\ntitle: Term\n", i, slapdtest.People))
	}
	go func() {
		r, _ := http.NewRequest("POST", admin+"/sync", nil)
		r.Header.Set("Authorization", "Bearer admin-token-abcdef")
		if resp, err := http.DefaultClient.Do(r); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "the sync to be running", 10*time.Second, func() bool { return strings.Contains(adminGet(t, admin+"/status"), `"running": true`) })
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("daemon exit: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop within its timeout")
	}
	if time.Since(start) > 12*time.Second || !ns.has("STOPPING=1") {
		t.Fatalf("stop took %v, STOPPING=1 sent: %v", time.Since(start), ns.has("STOPPING=1"))
	}
	tgt.delay.Store(0)
	if out, code := runCLI(t, "sync", "--config", cfgPath); code != 0 {
		t.Fatalf("sync after SIGTERM: %d\n%s", code, out)
	}
	out, code = runCLI(t, "sync", "--config", cfgPath, "--dry-run")
	if code != 0 || tgt.users() != 30 {
		t.Fatalf("not converged: exit %d, %d users\n%s", code, tgt.users(), out)
	}
}

func TestSystemdUnitVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed")
	}
	unit, err := os.ReadFile(filepath.Join("..", "..", "deploy", "scimsync.service"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "scimsync.service")
	_ = os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/bin/scimsync", binary)), 0o644)
	// the man page named in Documentation= is installed by the package, not here: .ci/run
	// verifies the installed unit with it
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "scimsync.service:") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
