package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/state"
	"github.com/scimsync/scimsync/sync"
)

const testAdminToken = "admin-token-0123456789abcdef0123456789"

// adminDaemon is a daemon with a state file holding one failed run that names alice and an
// override of alice, enough for the admin API's read endpoints.
func adminDaemon(t *testing.T, listen string, token string) *Daemon {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	id, err := st.BeginRun(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.FinishRun(state.Run{ID: id, Started: time.Now(), Finished: time.Now(), Result: "error",
		Counts: map[string]int{"create": 1}, Errors: []string{`create user "alice": HTTP 409`}}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetOverride("alice", state.ModeCMS, time.Now()); err != nil {
		t.Fatal(err)
	}
	s := &Settings{Admin: DefaultAdminConfig()}
	s.Admin.Listen = listen
	s.Sync.Schedule = "@every 1h"
	d := &Daemon{log: zap.NewNop(), level: zap.NewAtomicLevel(), reg: prometheus.NewRegistry(), cur: s, store: st,
		adminTok: config.NewSecret(token), lastErr: `create user "alice": HTTP 409`}
	return d
}

type adminAnswer struct {
	code int
	body string
}

func adminCall(h http.Handler, method, path, host, token string) adminAnswer {
	r := httptest.NewRequest(method, path, nil)
	if host != "" {
		r.Host = host
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return adminAnswer{rec.Code, rec.Body.String()}
}

func TestAdminReadEndpointsNeedTheTokenAndStatusShowsOnlyCounts(t *testing.T) {
	d := adminDaemon(t, "127.0.0.1:9464", testAdminToken)
	h := d.adminHandler()
	const host = "127.0.0.1:9464"
	for _, path := range []string{"/runs", "/overrides", "/runs/1", "/history/alice"} {
		if a := adminCall(h, "GET", path, host, ""); a.code != http.StatusUnauthorized || strings.Contains(a.body, "alice") {
			t.Errorf("GET %s without the token: %d %s", path, a.code, a.body)
		}
		if a := adminCall(h, "GET", path, host, "wrong"); a.code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token: %d", path, a.code)
		}
		if a := adminCall(h, "GET", path, host, testAdminToken); a.code != http.StatusOK {
			t.Errorf("GET %s with the token: %d %s", path, a.code, a.body)
		}
	}
	if a := adminCall(h, "GET", "/runs", host, testAdminToken); !strings.Contains(a.body, "alice") {
		t.Errorf("GET /runs with the token lacks the run's error: %s", a.body)
	}

	// /status: counts without the token, everything with it, a wrong token refused
	a := adminCall(h, "GET", "/status", host, "")
	var rep StatusReport
	if err := json.Unmarshal([]byte(a.body), &rep); err != nil || a.code != http.StatusOK {
		t.Fatalf("GET /status without the token: %d %s", a.code, a.body)
	}
	if strings.Contains(a.body, "alice") || strings.Contains(a.body, "409") || !rep.Limited ||
		rep.OverrideCount != 1 || len(rep.Overrides) != 0 || len(rep.Runs) != 1 || rep.Runs[0].Result != "error" ||
		rep.Runs[0].Counts["create"] != 1 || rep.Schedule != "@every 1h" {
		t.Errorf("limited status: %s", a.body)
	}
	a = adminCall(h, "GET", "/status", host, testAdminToken)
	rep = StatusReport{}
	_ = json.Unmarshal([]byte(a.body), &rep)
	if rep.Limited || len(rep.Overrides) != 1 || rep.OverrideCount != 1 || rep.LastError == "" || len(rep.Runs[0].Errors) != 1 {
		t.Errorf("full status: %s", a.body)
	}
	if a := adminCall(h, "GET", "/status", host, "wrong"); a.code != http.StatusUnauthorized {
		t.Errorf("GET /status with a wrong token: %d", a.code)
	}

	// no token configured: the counts still, everything else refused as unconfigured
	d = adminDaemon(t, "127.0.0.1:9464", "")
	h = d.adminHandler()
	if a := adminCall(h, "GET", "/status", host, ""); a.code != http.StatusOK || !strings.Contains(a.body, `"limited": true`) {
		t.Errorf("status without a configured token: %d %s", a.code, a.body)
	}
	if a := adminCall(h, "GET", "/runs", host, ""); a.code != http.StatusForbidden || !strings.Contains(a.body, "admin.token") {
		t.Errorf("runs without a configured token: %d %s", a.code, a.body)
	}
}

func TestLoopbackAdminListenerRefusesForeignHostHeaders(t *testing.T) {
	tests := []struct {
		listen, host, path string
		want               int
	}{
		{"127.0.0.1:9464", "127.0.0.1:9464", "/metrics", 200},
		{"127.0.0.1:9464", "localhost:9464", "/metrics", 200},
		{"127.0.0.1:9464", "[::1]:9464", "/metrics", 200},
		{"127.0.0.1:9464", "LOCALHOST", "/status", 200},
		{"127.0.0.1:9464", "attacker.example:9464", "/metrics", http.StatusMisdirectedRequest},
		{"127.0.0.1:9464", "attacker.example:9464", "/status", http.StatusMisdirectedRequest},
		{"127.0.0.1:9464", "127.0.0.1.attacker.example", "/loglevel", http.StatusMisdirectedRequest},
		{"127.0.0.1:9464", "attacker.example:9464", "/healthz", 200}, // probes answer whatever the name
		{"[::1]:9464", "attacker.example", "/metrics", http.StatusMisdirectedRequest},
		{"localhost:9464", "attacker.example", "/metrics", http.StatusMisdirectedRequest},
		{"0.0.0.0:9464", "scimsync.example.org:9464", "/metrics", 200}, // its names are unknown
	}
	for _, tt := range tests {
		d := adminDaemon(t, tt.listen, testAdminToken)
		if a := adminCall(d.adminHandler(), "GET", tt.path, tt.host, ""); a.code != tt.want {
			t.Errorf("listen %s, Host %s, GET %s: %d, want %d", tt.listen, tt.host, tt.path, a.code, tt.want)
		}
	}
}

func TestSameToken(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{{"abc", "abc", true}, {"abc", "abd", false}, {"abc", "abcd", false}, {"", "x", false}, {"", "", true}} {
		if got := sameToken(tt.a, tt.b); got != tt.want {
			t.Errorf("sameToken(%q, %q) = %v", tt.a, tt.b, got)
		}
	}
}

func TestRunErrorsLeaveTheDaemonRedacted(t *testing.T) {
	const secret = "bind-secret-5c1d9e"
	d := adminDaemon(t, "127.0.0.1:9464", testAdminToken)
	d.m = newMetrics(prometheus.NewRegistry(), BuildInfo{})
	d.cur.Redactor = config.NewRedactor(secret)
	d.ctx = context.Background()
	d.lastErr = ""
	h := d.adminHandler()

	// an error quoting a secret: the caller, POST /sync's report and /status get it redacted,
	// and errors.Is still finds what it wraps
	d.runSync = func(context.Context, SyncOptions) (*Outcome, error) {
		return nil, fmt.Errorf("ldap: bind said %q: %w", secret, sync.ErrSourceFailed)
	}
	_, err := d.SyncNow(context.Background(), SyncOptions{})
	if err == nil || strings.Contains(err.Error(), secret) || !errors.Is(err, sync.ErrSourceFailed) {
		t.Fatalf("SyncNow: %v", err)
	}
	if a := adminCall(h, "GET", "/status", "127.0.0.1:9464", testAdminToken); strings.Contains(a.body, secret) ||
		!strings.Contains(a.body, config.Redacted) {
		t.Fatalf("status quotes the secret: %s", a.body)
	}
	if a := adminCall(h, "POST", "/sync", "127.0.0.1:9464", testAdminToken); a.code != http.StatusInternalServerError ||
		strings.Contains(a.body, secret) || !strings.Contains(a.body, config.Redacted) {
		t.Fatalf("POST /sync: %d %s", a.code, a.body)
	}

	// a panic whose value quotes it
	d.runSync = func(context.Context, SyncOptions) (*Outcome, error) { panic("token " + secret + " rejected") }
	if _, err := d.SyncNow(context.Background(), SyncOptions{DryRun: true}); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("panic: %v", err)
	}
}

// TestShortAdminTokenWarned: an admin token shorter than 32 characters is warned about when
// the daemon is built, without its value; a long one, or none, is not.
func TestShortAdminTokenWarned(t *testing.T) {
	for token, want := range map[string]int{"admin-short": 1, testAdminToken: 0, "": 0} {
		core, logs := observer.New(zap.WarnLevel)
		s := &Settings{Admin: DefaultAdminConfig()}
		s.Sync.Schedule = "@every 1h"
		s.Admin.Token = config.NewSecret(token)
		if _, err := New(s, nil, zap.New(core), zap.NewAtomicLevel(), BuildInfo{}); err != nil {
			t.Fatal(err)
		}
		if n := logs.FilterMessageSnippet("admin.token is shorter than 32 characters").Len(); n != want {
			t.Errorf("token of %d characters: %d warnings, want %d", len(token), n, want)
		}
		for _, e := range logs.All() {
			if token != "" && strings.Contains(e.Message+fmt.Sprint(e.ContextMap()), token) {
				t.Errorf("the token is logged: %s", e.Message)
			}
		}
	}
}

// TestAdminSetsGroupOverrides: POST /overrides with "group": true records a group's override
// (what `scimsync override --group` sends while the daemon holds the state), apart from a user's
// of the same name, and clears it.
func TestAdminSetsGroupOverrides(t *testing.T) {
	d := adminDaemon(t, "127.0.0.1:9464", testAdminToken)
	h := d.adminHandler()
	post := func(body string) adminAnswer {
		r := httptest.NewRequest("POST", "/overrides", strings.NewReader(body))
		r.Host = "127.0.0.1:9464"
		r.Header.Set("Authorization", "Bearer "+testAdminToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return adminAnswer{rec.Code, rec.Body.String()}
	}
	if a := post(`{"user":"alice","group":true,"mode":"DEFAULT"}`); a.code != http.StatusOK || !strings.Contains(a.body, `"group": true`) {
		t.Fatalf("set: %d %s", a.code, a.body)
	}
	ovs, err := d.store.Overrides()
	if err != nil {
		t.Fatal(err)
	}
	if g, u := ovs[state.GroupOverrideKey("alice")], ovs["alice"]; !g.Group || g.Mode != state.ModeDefault || u.Group || u.Mode != state.ModeCMS {
		t.Fatalf("overrides: %+v", ovs)
	}
	if a := post(`{"user":"alice","group":true,"mode":""}`); a.code != http.StatusOK {
		t.Fatalf("clear: %d %s", a.code, a.body)
	}
	ovs, _ = d.store.Overrides()
	if _, ok := ovs[state.GroupOverrideKey("alice")]; ok || ovs["alice"].Mode != state.ModeCMS {
		t.Fatalf("after clearing the group's: %+v", ovs)
	}
}
