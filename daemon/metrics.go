package daemon

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/scimsync/scimsync/daemon/notify"
	"github.com/scimsync/scimsync/sync"
)

// metrics are registered on the daemon's own registry, never the global default.
type metrics struct {
	runs        *prometheus.CounterVec
	duration    prometheus.Histogram
	users       *prometheus.CounterVec
	unchanged   prometheus.Counter
	scimReqs    *prometheus.CounterVec
	retries     prometheus.Counter
	throttled   prometheus.Counter
	ldapEntries prometheus.Counter
	fallbacks   *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	skipped     prometheus.Counter
	panics      prometheus.Counter
	reloads     *prometheus.CounterVec
	serverReqs  *prometheus.CounterVec

	managed       *prometheus.GaugeVec
	lastResult    *prometheus.GaugeVec
	notifications *prometheus.CounterVec
}

// runResults are the values of the result label, each present from the start so a dashboard
// never sees a series appear out of nowhere.
var runResults = []string{"ok", "error", "stopped", "cancelled"}

// durationBuckets reach from a no-change run of a small directory (under a second) to a first
// sync of 100,000 users at 20 requests/s (about 5,000 s) and beyond.
var durationBuckets = []float64{0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800}

func newMetrics(reg prometheus.Registerer, build BuildInfo) *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scimsync_sync_runs_total",
			Help: "Sync runs by result (ok, error, stopped, cancelled)."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "scimsync_sync_duration_seconds",
			Help: "Wall time of sync runs.", Buckets: durationBuckets}),
		users: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scimsync_sync_users_total",
			Help: "Users changed on the target, by action (create, update, disable, delete; adopt: a create answered 409 whose user was adopted)."}, []string{"action"}),
		unchanged: prometheus.NewCounter(prometheus.CounterOpts{Name: "scimsync_sync_users_unchanged_total",
			Help: "Users found already in step, summed over runs."}),
		scimReqs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scimsync_scim_client_requests_total",
			Help: "Requests sent to the SCIM target, by method and HTTP status (0 = network error)."}, []string{"method", "status"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "scimsync_scim_client_retries_total",
			Help: "Requests to the SCIM target that were retried."}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{Name: "scimsync_scim_client_throttled_total",
			Help: "429 and 503 answers from the SCIM target."}),
		ldapEntries: prometheus.NewCounter(prometheus.CounterOpts{Name: "scimsync_ldap_entries_read_total",
			Help: "Directory entries read."}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scimsync_ldap_delta_fallbacks_total",
			Help: "Directory reads whose stored delta cursor could not be used (expired, refused by the server, issued by another server, made for another query), so they read in full; by kind (users, groups)."}, []string{"kind"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "scimsync_last_success_timestamp_seconds",
			Help: "Unix time of the last sync that finished without error."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "scimsync_sync_skipped_ticks_total",
			Help: "Scheduled syncs skipped because the previous one was still running."}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{Name: "scimsync_sync_panics_total",
			Help: "Sync runs that panicked (recovered)."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scimsync_config_reloads_total",
			Help: "Configuration reloads by outcome (applied, rejected)."}, []string{"outcome"}),
		serverReqs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scimsync_scim_server_requests_total",
			Help: "Requests served by the SCIM server, by method (GET, POST, PUT, PATCH, DELETE, other; unauthenticated for a missing or unknown token) and status."}, []string{"method", "status"}),
		managed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "scimsync_managed_users",
			Help: "Target users the sync created or adopted, by state (active, disabled awaiting delete_after)."}, []string{"state"}),
		lastResult: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "scimsync_last_run_result",
			Help: "1 for the result of the last recorded run, 0 for the others."}, []string{"result"}),
		notifications: notify.NewCounter(),
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "scimsync_build_info",
		Help: "Always 1; the labels say which build is running."}, []string{"version", "commit", "goversion"})
	buildInfo.WithLabelValues(build.Version, build.Commit, build.GoVersion).Set(1)
	for _, r := range runResults {
		m.lastResult.WithLabelValues(r)
		m.runs.WithLabelValues(r)
	}
	m.fallbacks.WithLabelValues("users")
	m.fallbacks.WithLabelValues("groups")
	reg.MustRegister(m.runs, m.duration, m.users, m.unchanged, m.scimReqs, m.retries, m.throttled, m.ldapEntries, m.fallbacks,
		m.lastSuccess, m.skipped, m.panics, m.reloads, m.serverReqs, m.managed, m.lastResult, m.notifications, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// countFallbacks counts the reads of a run whose stored cursor could not be used.
func (m *metrics) countFallbacks(plan *sync.Plan) {
	if plan.Read.CursorRefused {
		m.fallbacks.WithLabelValues("users").Inc()
	}
	if plan.GroupRead != nil && plan.GroupRead.CursorRefused {
		m.fallbacks.WithLabelValues("groups").Inc()
	}
}

// setLastResult marks result as the last run's.
func (m *metrics) setLastResult(result string) {
	for _, r := range runResults {
		v := 0.0
		if r == result {
			v = 1
		}
		m.lastResult.WithLabelValues(r).Set(v)
	}
}

func (m *metrics) observeSCIM(method string, status int) {
	m.scimReqs.WithLabelValues(methodLabel(method), statusLabel(status)).Inc()
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		m.throttled.Inc()
	}
}

// statusRecorder captures the status a handler writes, for the server request counter.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

// countServer counts the SCIM server's requests by method and status. Both labels come from a
// fixed set: the method is whatever token the client sent, before it has authenticated, and
// every distinct label value is a series the registry keeps for the life of the process.
func (m *metrics) countServer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		method := methodLabel(r.Method)
		if rec.status == http.StatusUnauthorized {
			// the SCIM server answers 401 only to a missing or unknown token: nothing about
			// such a request is the client's to choose in our labels
			method = unauthenticated
		}
		m.serverReqs.WithLabelValues(method, statusLabel(rec.status)).Inc()
	})
}

// unauthenticated is the method label of requests refused for want of a valid token.
const unauthenticated = "unauthenticated"

// methodLabel maps a request method to GET, POST, PUT, PATCH, DELETE or other.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return method
	}
	return "other"
}

// statusLabel is the status as a label: 0 (no answer) or an HTTP status code, anything else
// (a target may send any three digits) "other".
func statusLabel(status int) string {
	if status == 0 || (status >= 100 && status <= 599) {
		return strconv.Itoa(status)
	}
	return "other"
}
