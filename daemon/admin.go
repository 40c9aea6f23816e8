package daemon

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scimsync/scimsync/state"
	"github.com/scimsync/scimsync/sync"
)

// StatusReport is GET /status, also what `scimsync status` prints while the daemon runs.
type StatusReport struct {
	Running      bool             `json:"running"`
	NextRun      time.Time        `json:"next_run"`
	Schedule     string           `json:"schedule"`
	LastError    string           `json:"last_error,omitempty"`
	ManagedUsers int              `json:"managed_users"`
	Overrides    []state.Override `json:"overrides"`
	Runs         []state.Run      `json:"runs"`
}

func (d *Daemon) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", d.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{Registry: d.reg}))
	mux.HandleFunc("GET /status", d.status)
	mux.Handle("POST /sync", d.authorized(http.HandlerFunc(d.syncNow)))
	mux.Handle("POST /overrides", d.authorized(http.HandlerFunc(d.setOverride)))
	mux.Handle("GET /loglevel", d.level)
	mux.Handle("PUT /loglevel", d.authorized(d.level))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// authorized guards the endpoints that change something: a bearer admin.token, compared in
// constant time. Without a configured token they are refused, never open.
func (d *Daemon) authorized(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		tok := d.adminTok
		d.mu.Unlock()
		if tok.IsZero() {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "set admin.token (or admin.token_file) to use this endpoint"})
			return
		}
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(tok.Reveal())) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="scimsync-admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "authentication required"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (d *Daemon) readyz(w http.ResponseWriter, _ *http.Request) {
	d.mu.Lock()
	ldapOK, targetOK := d.ldapOK, d.targetOK
	d.mu.Unlock()
	report := map[string]any{"state": "open", "config": "valid", "ldap": contactWord(ldapOK), "target": contactWord(targetOK)}
	status := http.StatusOK
	if (ldapOK != nil && !*ldapOK) || (targetOK != nil && !*targetOK) {
		status = http.StatusServiceUnavailable
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

func (d *Daemon) status(w http.ResponseWriter, _ *http.Request) {
	rep, err := d.Status(10)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// Status assembles the report of GET /status.
func (d *Daemon) Status(runs int) (*StatusReport, error) {
	rs, err := d.store.Runs(runs)
	if err != nil {
		return nil, err
	}
	links, err := d.store.Links()
	if err != nil {
		return nil, err
	}
	ovs, err := d.store.Overrides()
	if err != nil {
		return nil, err
	}
	rep := &StatusReport{Running: d.running.Load(), NextRun: d.NextRun(), Schedule: d.settings().Sync.Schedule,
		ManagedUsers: len(links), Runs: rs, Overrides: []state.Override{}}
	for _, o := range ovs {
		rep.Overrides = append(rep.Overrides, o)
	}
	d.mu.Lock()
	rep.LastError = d.lastErr
	d.mu.Unlock()
	return rep, nil
}

func (d *Daemon) syncNow(w http.ResponseWriter, r *http.Request) {
	dry := r.URL.Query().Get("dry_run") == "true"
	plan, res, err := d.SyncNow(d.ctx, dry)
	out := map[string]any{"dry_run": dry}
	if plan != nil {
		out["plan"] = plan
	}
	if res != nil {
		out["result"] = res
	}
	status := http.StatusOK
	switch {
	case errors.Is(err, ErrBusy):
		status = http.StatusConflict
	case errors.Is(err, sync.ErrSafetyLimit), errors.Is(err, sync.ErrEmptySource):
		status = http.StatusUnprocessableEntity
	case err != nil:
		status = http.StatusInternalServerError
	}
	if err != nil {
		out["error"] = err.Error()
	}
	writeJSON(w, status, out)
}

func (d *Daemon) setOverride(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User string `json:"user"`
		Mode string `json:"mode"` // CMS, DEFAULT, or "" to clear
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || req.User == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `want {"user": "...", "mode": "CMS|DEFAULT|"}`})
		return
	}
	var err error
	if req.Mode == "" {
		err = d.store.ClearOverride(req.User)
	} else {
		var mode state.Mode
		if mode, err = state.ParseMode(req.Mode); err == nil {
			err = d.store.SetOverride(req.User, mode, time.Now())
		}
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"user": req.User, "mode": req.Mode})
}
