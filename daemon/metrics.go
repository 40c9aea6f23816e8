package daemon

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
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
	lastSuccess prometheus.Gauge
	skipped     prometheus.Counter
	panics      prometheus.Counter
	reloads     *prometheus.CounterVec
	serverReqs  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scimsync_sync_runs_total",
			Help: "Sync runs by result (ok, error, stopped, cancelled)."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "scimsync_sync_duration_seconds",
			Help: "Wall time of sync runs.", Buckets: prometheus.ExponentialBuckets(0.5, 2, 12)}),
		users: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scimsync_sync_users_total",
			Help: "Users changed on the target, by action."}, []string{"action"}),
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
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "scimsync_last_success_timestamp_seconds",
			Help: "Unix time of the last sync that finished without error."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "scimsync_sync_skipped_ticks_total",
			Help: "Scheduled syncs skipped because the previous one was still running."}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{Name: "scimsync_sync_panics_total",
			Help: "Sync runs that panicked (recovered)."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scimsync_config_reloads_total",
			Help: "Configuration reloads by outcome (applied, rejected)."}, []string{"outcome"}),
		serverReqs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scimsync_scim_server_requests_total",
			Help: "Requests served by the SCIM server, by method and status."}, []string{"method", "status"}),
	}
	reg.MustRegister(m.runs, m.duration, m.users, m.unchanged, m.scimReqs, m.retries, m.throttled, m.ldapEntries,
		m.lastSuccess, m.skipped, m.panics, m.reloads, m.serverReqs)
	return m
}

func (m *metrics) observeSCIM(method string, status int) {
	m.scimReqs.WithLabelValues(method, strconv.Itoa(status)).Inc()
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

func (m *metrics) countServer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		m.serverReqs.WithLabelValues(r.Method, strconv.Itoa(rec.status)).Inc()
	})
}
