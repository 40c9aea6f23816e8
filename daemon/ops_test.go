package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/state"
	"github.com/scimsync/scimsync/sync"
)

func TestRate(t *testing.T) {
	tests := []struct {
		done, total int
		elapsed     time.Duration
		rate        float64
		eta         time.Duration
	}{
		{0, 100, time.Second, 0, 0},
		{50, 100, 10 * time.Second, 5, 10 * time.Second},
		{20, 100000, time.Second, 20, 4999 * time.Second},
		{100, 100, time.Minute, 100.0 / 60, 0},
	}
	for _, tt := range tests {
		rate, eta := Rate(tt.done, tt.total, tt.elapsed)
		if fmt.Sprintf("%.3f", rate) != fmt.Sprintf("%.3f", tt.rate) || eta != tt.eta {
			t.Errorf("Rate(%d, %d, %v) = %v, %v; want %v, %v", tt.done, tt.total, tt.elapsed, rate, eta, tt.rate, tt.eta)
		}
	}
}

func TestProgressLogsAndStatusEveryInterval(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	var statuses []string
	now := time.Unix(1000, 0)
	p := NewProgress(zap.New(core), func(s string) { statuses = append(statuses, s) }, 5*time.Second)
	p.now = func() time.Time { return now }
	p.started, p.last = now, now
	for i := 0; i < 1000; i++ { // a fast read: no line before the interval
		p.Read()
	}
	now = now.Add(6 * time.Second)
	p.Read()
	p.Apply(1, 200) // the clock has not moved since the last line
	now = now.Add(10 * time.Second)
	p.Apply(100, 200)
	p.Apply(200, 200) // the last write always reports
	if logs.FilterMessage("sync progress").Len() != 3 || len(statuses) != 3 {
		t.Fatalf("%d lines, statuses %q", logs.Len(), statuses)
	}
	if statuses[0] != "syncing: reading the directory: 1001 entries" ||
		statuses[1] != "syncing: 100/200 changes applied, 10.0/s, ETA 10s" {
		t.Fatalf("statuses %q", statuses)
	}
	if got := p.LastActivity(); !got.Equal(now) {
		t.Fatalf("last activity %v, want %v", got, now)
	}
}

func TestWatchdogStopsPingingWhenTheSchedulerOrTheSyncHangs(t *testing.T) {
	s := &Settings{LDAP: ldapCfg(2 * time.Minute), Target: scimclient.TargetConfig{Timeout: config.Duration(30 * time.Second)}}
	d := &Daemon{cur: s, beatEvery: time.Second}
	now := time.Now()
	d.lastBeat.Store(now.UnixNano())
	if why := d.unhealthy(now); why != "" {
		t.Fatalf("fresh daemon unhealthy: %s", why)
	}
	if why := d.unhealthy(now.Add(10 * time.Second)); !strings.Contains(why, "scheduler loop") {
		t.Fatalf("a scheduler that stopped beating: %q", why)
	}
	// a sync that keeps working is fine however long it runs; one that goes quiet is not
	p := NewProgress(zap.NewNop(), nil, time.Hour)
	p.now = func() time.Time { return now }
	p.Touch()
	d.prog = p
	later := now.Add(stallLimit(s) - time.Second)
	d.lastBeat.Store(later.UnixNano())
	if why := d.unhealthy(later); why != "" {
		t.Fatalf("a sync quiet for less than the stall limit: %s", why)
	}
	later = now.Add(stallLimit(s) + time.Second)
	d.lastBeat.Store(later.UnixNano())
	if why := d.unhealthy(later); !strings.Contains(why, "no activity") {
		t.Fatalf("a hung sync: %q", why)
	}
	if stallLimit(s) != 13*time.Minute {
		t.Fatalf("stall limit with the defaults: %v", stallLimit(s))
	}
}

func TestMonotonicClock(t *testing.T) {
	a := monotonicUsec()
	time.Sleep(2 * time.Millisecond)
	b := monotonicUsec()
	// CLOCK_MONOTONIC counts from boot: far below the wall clock's microseconds since 1970
	if a <= 0 || b <= a || a > time.Now().UnixMicro()/2 {
		t.Fatalf("monotonic %d then %d", a, b)
	}
}

func TestMetricsHaveBuildInfoCollectorsAndLongBuckets(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, BuildInfo{Version: "v1.2.3", Commit: "abc", GoVersion: "go1.26"})
	m.setLastResult("stopped")
	m.duration.Observe(5000)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetName() == "scimsync_sync_duration_seconds" {
			b := mf.GetMetric()[0].GetHistogram().GetBucket()
			if b[len(b)-1].GetUpperBound() < 5*3600 {
				t.Errorf("largest duration bucket %v s: a 100,000-user first sync does not fit", b[len(b)-1].GetUpperBound())
			}
		}
	}
	for _, n := range []string{"scimsync_build_info", "go_goroutines", "process_resident_memory_bytes",
		"scimsync_last_run_result", "scimsync_sync_runs_total"} {
		if !names[n] {
			t.Errorf("metric %s missing", n)
		}
	}
	if v := testutil.ToFloat64(m.lastResult.WithLabelValues("stopped")); v != 1 {
		t.Errorf("last result stopped = %v", v)
	}
	if v := testutil.ToFloat64(m.lastResult.WithLabelValues("ok")); v != 0 {
		t.Errorf("last result ok = %v", v)
	}
}

// planOf builds a plan of items the way the CLI reads one the daemon printed.
func planOf(t *testing.T, items ...sync.Item) *sync.Plan {
	t.Helper()
	summary := map[sync.Action]int{}
	for _, it := range items {
		summary[it.Action]++
	}
	raw, _ := json.Marshal(map[string]any{"format_version": sync.FormatVersion, "summary": summary,
		"kinds": map[sync.Kind]map[sync.Action]int{sync.KindUser: summary}, "items": items})
	var p sync.Plan
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return &p
}

func TestNewSyncReport(t *testing.T) {
	blocked := planOf(t)
	blocked.Blocked = &sync.Block{Message: "rerun with --allow-deprovision 12"}
	plan := planOf(t)
	tests := []struct {
		name    string
		dry     bool
		out     *Outcome
		err     error
		outcome string
	}{
		{"nothing to do", true, &Outcome{Plan: plan}, nil, OutcomeOK},
		{"pending", true, &Outcome{Plan: planOf(t, sync.Item{Kind: sync.KindUser, Action: sync.ActionCreate, Name: "a"})}, nil, OutcomePending},
		{"stopped", false, &Outcome{Plan: plan, Result: &sync.Result{RunID: 3}}, fmt.Errorf("x: %w", sync.ErrSafetyLimit), OutcomeStopped},
		{"dry run stopped", true, &Outcome{Plan: blocked}, nil, OutcomeStopped},
		{"busy", false, nil, ErrBusy, OutcomeBusy},
		{"no such user", false, nil, fmt.Errorf("x: %w", sync.ErrUserNotFound), OutcomeNotFound},
		{"error", false, nil, errors.New("ldap down"), OutcomeError},
	}
	for _, tt := range tests {
		rep, err := NewSyncReport(tt.dry, tt.out, tt.err)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Outcome != tt.outcome || rep.FormatVersion != APIFormatVersion {
			t.Errorf("%s: outcome %q", tt.name, rep.Outcome)
		}
		raw, _ := json.Marshal(rep)
		var back SyncReport
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Errorf("%s: the report is not one JSON document: %v", tt.name, err)
		}
		if tt.out != nil && tt.out.Plan != nil && !strings.Contains(string(raw), `"items":[`) {
			t.Errorf("%s: plan items not a list: %s", tt.name, raw)
		}
	}
}

func TestBookkeepRecordsFailuresWritesReportsAndPrunes(t *testing.T) {
	dir := t.TempDir()
	st, err := state.Open(filepath.Join(dir, "state.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reports := filepath.Join(dir, "reports")
	_ = os.Mkdir(reports, 0o700)
	cfg := state.DefaultConfig()
	cfg.ReportDir = reports

	old, _ := st.BeginRun(time.Now().Add(-100 * 24 * time.Hour))
	_ = st.FinishRun(state.Run{ID: old, Started: time.Now().Add(-100 * 24 * time.Hour), Result: "ok"})
	_ = os.WriteFile(reportPath(reports, old), []byte("{}"), 0o600)

	id, _ := st.BeginRun(time.Now())
	_ = st.Commit(id, state.Link{ExternalID: "e-alice", UserName: "alice"}, false, state.Change{Action: "update", ExternalID: "e-alice",
		UserName: "alice", Old: map[string]string{"title": "Engineer"}, New: map[string]string{"title": "Principal Engineer"}})
	_ = st.FinishRun(state.Run{ID: id, Started: time.Now(), Result: "error"})
	plan := planOf(t,
		sync.Item{Kind: sync.KindUser, Action: sync.ActionUpdate, Name: "alice", ExternalID: "e-alice"},
		sync.Item{Kind: sync.KindUser, Action: sync.ActionUpdate, Name: "bob", ExternalID: "e-bob", Changes: []sync.Diff{{Attribute: "title", Old: "A", New: "B"}}})
	res := &sync.Result{RunID: id, Done: map[sync.Action]int{sync.ActionUpdate: 1},
		Failed: []sync.ItemError{{UserName: "bob", ExternalID: "e-bob", Action: sync.ActionUpdate, Error: "scim: PATCH /Users/9: HTTP 400",
			Changes: []sync.Diff{{Attribute: "title", Old: "A", New: "B"}}}}}
	if err := Bookkeep(st, cfg, plan, res, time.Now()); err != nil {
		t.Fatal(err)
	}
	h, _ := st.History("bob", 0)
	if len(h) != 1 || h[0].Error == "" || h[0].Old["title"] != "A" || h[0].New["title"] != "B" || h[0].Run != id {
		t.Fatalf("bob's history: %+v", h)
	}
	raw, err := os.ReadFile(reportPath(reports, id))
	if err != nil {
		t.Fatal(err)
	}
	var rep RunReport
	if err := json.Unmarshal(raw, &rep); err != nil || rep.Run.ID != id || len(rep.Changes) != 2 {
		t.Fatalf("report %s: %v", raw, err)
	}
	if fi, _ := os.Stat(reportPath(reports, id)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("report mode %v", fi.Mode())
	}
	if _, err := st.Run(old); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("run older than the retention kept: %v", err)
	}
	if _, err := os.Stat(reportPath(reports, old)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("report of a pruned run kept: %v", err)
	}
}

func TestReadyzReportsASafetyStop(t *testing.T) {
	yes := true
	d := &Daemon{ldapOK: &yes, targetOK: &yes}
	get := func() (int, map[string]any) {
		rec := httptest.NewRecorder()
		d.readyz(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		var m map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &m)
		return rec.Code, m
	}
	if code, _ := get(); code != 200 {
		t.Fatalf("healthy: %d", code)
	}
	d.lastRun = &state.Run{ID: 7, Result: "stopped", Errors: []string{"deprovisioning limit exceeded: rerun with --allow-deprovision 12"}}
	code, m := get()
	if code != 503 || !strings.Contains(m["sync"].(string), "--allow-deprovision 12") {
		t.Fatalf("after a safety stop: %d %v", code, m)
	}
}

func ldapCfg(timeout time.Duration) ldap.Config {
	c := ldap.DefaultConfig()
	c.RequestTimeout = config.Duration(timeout)
	return c
}

// TestDeltaFallbacksAreCounted: a read whose stored cursor was refused counts, per kind; a
// read without one (a first run, a full reconcile, an AD read that goes on with uSNChanged
// because DirSync is not permitted) does not.
func TestDeltaFallbacksAreCounted(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry(), BuildInfo{})
	m.countFallbacks(&sync.Plan{Read: sync.ReadInfo{Mechanism: "full", Fallback: ldap.FallbackNoCursor}})
	m.countFallbacks(&sync.Plan{Read: sync.ReadInfo{Mechanism: "usn", Fallback: "DirSync not permitted: …; using uSNChanged"}})
	if v := testutil.ToFloat64(m.fallbacks.WithLabelValues("users")); v != 0 {
		t.Fatalf("reads without a refused cursor counted: %v", v)
	}
	m.countFallbacks(&sync.Plan{Read: sync.ReadInfo{Mechanism: "full", Fallback: "the server refused the cookie", CursorRefused: true},
		GroupRead: &sync.ReadInfo{Mechanism: "full", Fallback: "the cursor was issued by another server", CursorRefused: true}})
	if u, g := testutil.ToFloat64(m.fallbacks.WithLabelValues("users")), testutil.ToFloat64(m.fallbacks.WithLabelValues("groups")); u != 1 || g != 1 {
		t.Fatalf("fallbacks users %v groups %v, want 1 and 1", u, g)
	}
}
