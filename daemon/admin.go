package daemon

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/state"
	"github.com/scimsync/scimsync/sync"
)

// APIFormatVersion is the format_version of every JSON document the admin API returns.
const APIFormatVersion = 1

// StatusReport is GET /status, also what `scimsync status` prints while the daemon runs.
type StatusReport struct {
	FormatVersion int       `json:"format_version"`
	Running       bool      `json:"running"`
	NextRun       time.Time `json:"next_run,omitzero"`
	Schedule      string    `json:"schedule,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	ManagedUsers  int       `json:"managed_users"`
	// OverrideCount is len(Overrides), or, in a limited report, how many there are.
	OverrideCount int              `json:"override_count"`
	Overrides     []state.Override `json:"overrides"`
	Runs          []state.Run      `json:"runs"`
	// Limited marks the report GET /status gives without the admin token: counts, results and
	// times only. The overrides (user names), run errors and the last error (which may quote
	// user names and the target's answers) need the token.
	Limited bool `json:"limited,omitempty"`
}

// limit strips what names people or quotes errors, for a caller without the admin token.
func (r *StatusReport) limit() {
	r.Limited = true
	r.LastError = ""
	r.Overrides = []state.Override{}
	runs := make([]state.Run, len(r.Runs))
	for i, run := range r.Runs {
		run.Errors = nil
		runs[i] = run
	}
	r.Runs = runs
}

// RunsReport is GET /runs and `scimsync runs -o json`.
type RunsReport struct {
	FormatVersion int         `json:"format_version"`
	Runs          []state.Run `json:"runs"`
}

// HistoryReport is GET /history/{user} and `scimsync history USER -o json`.
type HistoryReport struct {
	FormatVersion int                  `json:"format_version"`
	User          string               `json:"user"`
	Changes       []state.HistoryEntry `json:"changes"`
}

// OverridesReport is GET /overrides and `scimsync override list -o json`.
type OverridesReport struct {
	FormatVersion int              `json:"format_version"`
	Overrides     []state.Override `json:"overrides"`
}

// SyncReport is POST /sync: the plan (as sync.WriteJSON prints it), what was applied, and how
// it ended. Outcome is ok, pending (a dry run with changes), stopped (a safety rule), error,
// not_found (no such --user) or busy (a sync is already running).
type SyncReport struct {
	FormatVersion int    `json:"format_version"`
	DryRun        bool   `json:"dry_run"`
	Outcome       string `json:"outcome"`
	Error         string `json:"error,omitempty"`
	// Plan is the plan as read back from JSON; a report built by NewSyncReport streams its plan
	// instead (Encode, MarshalJSON), so a 100,000-item plan never sits in memory as text.
	Plan         json.RawMessage `json:"plan,omitempty"`
	Result       *sync.Result    `json:"result,omitempty"`
	SCIMRequests int64           `json:"scim_requests"`
	SCIMWrites   int64           `json:"scim_writes"`
	SCIMRetries  int64           `json:"scim_retries"`

	plan *sync.Plan
}

// Encode writes the report as one JSON document, streaming the plan's items.
func (r *SyncReport) Encode(w io.Writer) error {
	if r.plan == nil {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode((*syncReportFields)(r))
	}
	head, err := json.MarshalIndent((*syncReportFields)(r), "", "  ")
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	bw.Write(head[:len(head)-2]) // without "\n}"
	bw.WriteString(",\n  \"plan\": ")
	if err := sync.WriteJSON(bw, r.plan); err != nil {
		return err
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

// MarshalJSON is Encode into memory, for a report inside another document.
func (r *SyncReport) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	if err := r.Encode(&buf); err != nil {
		return nil, err
	}
	return bytes.TrimSpace(buf.Bytes()), nil
}

// syncReportFields is SyncReport without its methods, for encoding its fields.
type syncReportFields SyncReport

// Outcome words of SyncReport, shared with the CLI so both speak of a run the same way.
const (
	OutcomeOK       = "ok"
	OutcomePending  = "pending"
	OutcomeStopped  = "stopped"
	OutcomeError    = "error"
	OutcomeNotFound = "not_found"
	OutcomeBusy     = "busy"
)

// NewSyncReport builds the report of one run; the CLI uses it too, so `sync -o json` prints
// the same document whether it ran the sync itself or asked the daemon.
func NewSyncReport(dry bool, out *Outcome, err error) (*SyncReport, error) {
	rep := &SyncReport{FormatVersion: APIFormatVersion, DryRun: dry, Outcome: OutcomeOK}
	if out != nil {
		if out.Plan != nil {
			rep.plan = out.Plan // streamed by Encode; items print as [] when there are none
			if dry && out.Plan.Pending() {
				rep.Outcome = OutcomePending
			}
		}
		rep.Result = out.Result
		rep.SCIMRequests, rep.SCIMWrites, rep.SCIMRetries = out.Stats.Requests, out.Stats.Writes, out.Stats.Retries
	}
	if dry && out != nil && out.Plan != nil && out.Plan.Blocked != nil && err == nil {
		err = fmt.Errorf("dry run: %w: %s", sync.ErrSafetyLimit, out.Plan.Blocked.Message)
	}
	if err != nil {
		rep.Error = err.Error()
		rep.Outcome = OutcomeError
		switch {
		case errors.Is(err, ErrBusy):
			rep.Outcome = OutcomeBusy
		case errors.Is(err, sync.ErrSafetyLimit), errors.Is(err, sync.ErrEmptySource):
			rep.Outcome = OutcomeStopped
		case errors.Is(err, sync.ErrUserNotFound):
			rep.Outcome = OutcomeNotFound
		}
	}
	return rep, nil
}

// maxAdminHeaderBytes bounds a request's header block on the admin listener: a bearer token
// and a few short headers need far less than net/http's 1 MiB default.
const maxAdminHeaderBytes = 64 << 10

// newAdminServer is the admin listener's http.Server.
func (d *Daemon) newAdminServer() *http.Server {
	return &http.Server{Handler: d.adminHandler(), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: maxAdminHeaderBytes,
		ErrorLog: config.HTTPErrorLog(d.log.Named("admin"), d.redactor())}
}

func (d *Daemon) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", d.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{Registry: d.reg}))
	// without the token, /status says how many and when, never who or why
	mux.HandleFunc("GET /status", d.status)
	// what names people, quotes run errors or changes anything needs the token
	mux.Handle("GET /runs", d.authorized(http.HandlerFunc(d.runs)))
	mux.Handle("GET /overrides", d.authorized(http.HandlerFunc(d.overrides)))
	mux.Handle("GET /runs/{id}", d.authorized(http.HandlerFunc(d.runShow)))
	mux.Handle("GET /history/{user}", d.authorized(http.HandlerFunc(d.history)))
	mux.Handle("POST /sync", d.authorized(http.HandlerFunc(d.syncNow)))
	mux.Handle("POST /overrides", d.authorized(http.HandlerFunc(d.setOverride)))
	mux.Handle("GET /loglevel", d.level)
	mux.Handle("PUT /loglevel", d.authorized(d.level))
	return d.checkHost(mux)
}

// checkHost refuses, on a loopback listener, requests whose Host header names anything but a
// loopback address: a web page the administrator opens could otherwise rebind its own name to
// 127.0.0.1 and read the open endpoints from their browser (DNS rebinding). Probes (/healthz,
// /readyz) are answered whatever the Host. A listener on another address cannot know the
// names it is reached by, so it checks nothing.
func (d *Daemon) checkHost(next http.Handler) http.Handler {
	host, _, _ := net.SplitHostPort(d.settings().Admin.Listen)
	if !config.LoopbackHost(host) {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && r.URL.Path != "/readyz" && !loopbackHostHeader(r.Host) {
			writeError(w, http.StatusMisdirectedRequest, "the admin listener answers only requests addressed to a loopback address (Host: 127.0.0.1, [::1] or localhost)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHostHeader reports whether a Host header ("127.0.0.1:9464", "[::1]:9464",
// "localhost") names a loopback address; an HTTP/1.0 request without one passes.
func loopbackHostHeader(h string) bool {
	if h == "" {
		return true
	}
	host, _, err := net.SplitHostPort(h)
	if err != nil {
		host = h
	}
	return config.LoopbackHost(host)
}

// checkToken is nil when r carries the admin token; otherwise it says why not:
// errNoAdminToken (none is configured), errMissingToken or errBadAdminToken.
func (d *Daemon) checkToken(r *http.Request) error {
	d.mu.Lock()
	tok := d.adminTok
	d.mu.Unlock()
	h := r.Header.Get("Authorization")
	switch {
	case tok.IsZero():
		return errNoAdminToken
	case h == "":
		return errMissingToken
	case !sameToken(strings.TrimPrefix(h, "Bearer "), tok.Reveal()):
		return errBadAdminToken
	}
	return nil
}

var (
	errNoAdminToken  = errors.New("set admin.token (or admin.token_file) to use this endpoint")
	errMissingToken  = errors.New("authentication required")
	errBadAdminToken = errors.New("authentication failed: wrong admin token")
)

// sameToken compares two tokens in constant time, as SHA-256 digests: comparing the raw
// values would return at once on a length mismatch, telling a prober the token's length.
func sameToken(given, want string) bool {
	g, w := sha256.Sum256([]byte(given)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]any{"format_version": APIFormatVersion, "error": fmt.Sprintf(format, args...)})
}

// authorized guards the endpoints that change something or show personal data: a bearer
// admin.token, compared in constant time. Without a configured token they are refused, never
// open.
func (d *Daemon) authorized(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refuseToken(w, d.checkToken(r)) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuseToken answers a failed token check (403 when no token is configured, 401 otherwise)
// and reports whether it did.
func refuseToken(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, errNoAdminToken):
		writeError(w, http.StatusForbidden, "%v", err)
	default:
		w.Header().Set("WWW-Authenticate", `Bearer realm="scimsync-admin"`)
		writeError(w, http.StatusUnauthorized, "%v", err)
	}
	return true
}

// readyz is 503 while the last sync could not reach the directory or the target, or was held
// back by a safety rule: each needs someone to look.
func (d *Daemon) readyz(w http.ResponseWriter, _ *http.Request) {
	d.mu.Lock()
	ldapOK, targetOK, last := d.ldapOK, d.targetOK, d.lastRun
	d.mu.Unlock()
	report := map[string]any{"format_version": APIFormatVersion, "state": "open", "config": "valid",
		"ldap": contactWord(ldapOK), "target": contactWord(targetOK), "sync": "ok"}
	status := http.StatusOK
	if (ldapOK != nil && !*ldapOK) || (targetOK != nil && !*targetOK) {
		status = http.StatusServiceUnavailable
	}
	if last != nil && last.Result == "stopped" {
		status = http.StatusServiceUnavailable
		why := "a safety rule"
		if len(last.Errors) > 0 {
			why = last.Errors[0]
		}
		report["sync"] = fmt.Sprintf("run %d stopped by a safety rule: %s", last.ID, why)
	}
	writeJSON(w, status, report)
}

func contactWord(ok *bool) string {
	switch {
	case ok == nil:
		return "not contacted yet"
	case *ok:
		return "ok"
	}
	return "failed at the last sync"
}

// status is GET /status: the whole report with the admin token, the counts without one. A
// wrong token is refused rather than answered with less, so the CLI says what is wrong.
func (d *Daemon) status(w http.ResponseWriter, r *http.Request) {
	// no Authorization header: the limited report, whether a token is configured or not
	terr := d.checkToken(r)
	full := terr == nil
	if r.Header.Get("Authorization") != "" && refuseToken(w, terr) {
		return
	}
	rep, err := d.Status(10)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if !full {
		rep.limit()
	}
	writeJSON(w, http.StatusOK, rep)
}

// Status assembles the report of GET /status.
func (d *Daemon) Status(runs int) (*StatusReport, error) {
	rs, err := d.store.Runs(runs)
	if err != nil {
		return nil, err
	}
	// the links bucket keeps its count: reading every link would hold them all, and their
	// pages, for one number
	managed := 0
	if err := d.store.View(func(v *state.View) error { managed = v.CountLinks(state.LinkUser); return nil }); err != nil {
		return nil, err
	}
	ovs, err := d.overrideList()
	if err != nil {
		return nil, err
	}
	rep := &StatusReport{FormatVersion: APIFormatVersion, Running: d.running.Load(), NextRun: d.NextRun(),
		Schedule: d.settings().Sync.Schedule, ManagedUsers: managed, Runs: rs, Overrides: ovs, OverrideCount: len(ovs)}
	if rep.Runs == nil {
		rep.Runs = []state.Run{}
	}
	d.mu.Lock()
	rep.LastError = d.lastErr
	d.mu.Unlock()
	return rep, nil
}

func (d *Daemon) overrideList() ([]state.Override, error) {
	ovs, err := d.store.Overrides()
	if err != nil {
		return nil, err
	}
	return SortedOverrides(ovs), nil
}

// SortedOverrides lists overrides by userName, never nil.
func SortedOverrides(m map[string]state.Override) []state.Override {
	out := make([]state.Override, 0, len(m))
	for _, o := range m {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b state.Override) int {
		return strings.Compare(strings.ToLower(a.UserName), strings.ToLower(b.UserName))
	})
	return out
}

// limitParam reads ?limit=N (default def, at most 10,000).
func limitParam(r *http.Request, def int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 10000 {
		return 0, fmt.Errorf("limit must be a number from 1 to 10000, got %q", v)
	}
	return n, nil
}

func (d *Daemon) runs(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r, 20)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	rs, err := d.store.Runs(limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if rs == nil {
		rs = []state.Run{}
	}
	writeJSON(w, http.StatusOK, RunsReport{FormatVersion: APIFormatVersion, Runs: rs})
}

func (d *Daemon) runShow(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "run id must be a number, got %q", r.PathValue("id"))
		return
	}
	rep, err := LoadRunReport(d.store, id)
	switch {
	case errors.Is(err, state.ErrNotFound):
		writeError(w, http.StatusNotFound, "no run %d (older runs are pruned after state.history_retention)", id)
	case err != nil:
		writeError(w, http.StatusInternalServerError, "%v", err)
	default:
		writeJSON(w, http.StatusOK, rep)
	}
}

func (d *Daemon) history(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r, 100)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	user := r.PathValue("user")
	h, err := d.store.History(user, limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if h == nil {
		h = []state.HistoryEntry{}
	}
	writeJSON(w, http.StatusOK, HistoryReport{FormatVersion: APIFormatVersion, User: user, Changes: h})
}

func (d *Daemon) overrides(w http.ResponseWriter, _ *http.Request) {
	ovs, err := d.overrideList()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, OverridesReport{FormatVersion: APIFormatVersion, Overrides: ovs})
}

// syncNow is POST /sync: ?dry_run=true plans only, ?user=NAME syncs one user, and
// ?allow_deprovision=N approves a held deprovision (what a safety stop's message asks for).
func (d *Daemon) syncNow(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := SyncOptions{DryRun: q.Get("dry_run") == "true", User: q.Get("user"), Full: q.Get("full") == "true"}
	for key, to := range map[string]*int{"allow_deprovision": &opts.AllowDeprovision, "allow_recreate": &opts.AllowRecreate} {
		if v := q.Get(key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				writeError(w, http.StatusBadRequest, "%s must be a number of users, got %q", key, v)
				return
			}
			*to = n
		}
	}
	out, err := d.SyncNow(d.ctx, opts)
	if out != nil {
		defer out.Plan.Close()
	}
	rep, rerr := NewSyncReport(opts.DryRun, out, err)
	if rerr != nil {
		writeError(w, http.StatusInternalServerError, "%v", rerr)
		return
	}
	status := http.StatusOK
	switch rep.Outcome {
	case OutcomeBusy:
		status = http.StatusConflict
	case OutcomeStopped:
		status = http.StatusUnprocessableEntity
	case OutcomeNotFound:
		status = http.StatusNotFound
	case OutcomeError:
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = rep.Encode(w)
}

func (d *Daemon) setOverride(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User  string `json:"user"`
		Group bool   `json:"group"` // User names a group (its displayName)
		Mode  string `json:"mode"`  // CMS, DEFAULT, or "" to clear
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || req.User == "" {
		writeError(w, http.StatusBadRequest, `want {"user": "...", "mode": "CMS|DEFAULT|"}`)
		return
	}
	var err error
	mode := state.Mode("")
	switch {
	case req.Mode == "" && req.Group:
		err = d.store.ClearGroupOverride(req.User)
	case req.Mode == "":
		err = d.store.ClearOverride(req.User)
	default:
		if mode, err = state.ParseMode(req.Mode); err == nil && req.Group {
			err = d.store.SetGroupOverride(req.User, mode, time.Now())
		} else if err == nil {
			err = d.store.SetOverride(req.User, mode, time.Now())
		}
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"format_version": APIFormatVersion, "user": req.User, "group": req.Group, "mode": string(mode)})
}
