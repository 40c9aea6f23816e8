package scimserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
	gosync "sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
)

type ctxKey int

const callerKey ctxKey = 0

func caller(r *http.Request) string {
	if name, ok := r.Context().Value(callerKey).(string); ok {
		return name
	}
	return "unknown"
}

// authenticate checks the bearer token against every configured token in constant time and
// remembers which one matched. A failure reveals nothing but the scheme; it is counted, and
// logged with the remote address at a bounded rate (never with the token).
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		var given []byte
		reason := "missing"
		if h != "" {
			reason = "malformed"
		}
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			given = []byte(strings.TrimSpace(h[7:]))
			reason = "unknown token"
		}
		match := -1
		if len(given) > 0 {
			// digests: ConstantTimeCompare of the raw values returns at once when the lengths
			// differ, telling a prober how long the tokens are
			g := sha256.Sum256(given)
			for i, t := range s.tokens {
				if subtle.ConstantTimeCompare(g[:], t.digest[:]) == 1 && match < 0 {
					match = i
				}
			}
		}
		if match < 0 {
			s.metrics.authFailures.WithLabelValues(reason).Inc()
			s.authLog.failed(r, reason)
			w.Header().Set("WWW-Authenticate", `Bearer realm="scimsync"`)
			writeError(w, http.StatusUnauthorized, "", "authentication required")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey, s.tokens[match].name)))
	})
}

// authLogger logs failed authentications at most once per interval per remote host, and
// reports how many it held back, so a password-spraying client cannot flood the journal.
type authLogger struct {
	log      *zap.Logger
	red      *config.Redactor
	now      func() time.Time
	interval time.Duration
	mu       gosync.Mutex
	last     map[string]time.Time
	held     map[string]int
}

func newAuthLogger(log *zap.Logger, red *config.Redactor, now func() time.Time) *authLogger {
	return &authLogger{log: log, red: red, now: now, interval: 10 * time.Second, last: map[string]time.Time{}, held: map[string]int{}}
}

// maxLoggedPath and maxLoggedMethod bound what an authentication failure logs of the request:
// the client chose both, up to the header limit, before showing any token.
const (
	maxLoggedPath   = 256
	maxLoggedMethod = 16
)

// logText makes text a client chose fit for a log line: secrets redacted first (so the cut
// cannot leave a prefix of one), valid UTF-8, no control or format characters, at most n
// bytes, cut at a character boundary and marked with an ellipsis.
func logText(red *config.Redactor, s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(red.MaskTail(red.Redact(s)), "\uFFFD"))
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// maxTrackedHosts bounds the logger's memory under a spray from many addresses.
const maxTrackedHosts = 4096

func (a *authLogger) failed(r *http.Request, reason string) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	now := a.now()
	a.mu.Lock()
	if last, ok := a.last[host]; ok && now.Sub(last) < a.interval {
		a.held[host]++
		a.mu.Unlock()
		return
	}
	if len(a.last) >= maxTrackedHosts {
		for h, t := range a.last {
			if now.Sub(t) >= a.interval {
				delete(a.last, h)
				delete(a.held, h)
			}
		}
		if len(a.last) >= maxTrackedHosts {
			a.mu.Unlock()
			return // everyone is within the interval: stay silent, the metric still counts
		}
	}
	held := a.held[host]
	a.last[host] = now
	delete(a.held, host)
	a.mu.Unlock()
	a.log.Warn("authentication failed", zap.String("remote", host), zap.String("reason", reason),
		zap.String("method", logText(a.red, r.Method, maxLoggedMethod)), zap.String("path", logText(a.red, r.URL.Path, maxLoggedPath)),
		zap.Int("failures_not_logged", held))
}

// metrics are created with the server and registered only where the caller has a registry
// (the daemon's), never on a global one.
type metrics struct {
	authFailures  *prometheus.CounterVec
	refused       *prometheus.CounterVec
	commitSeconds prometheus.Histogram
	commitWrites  prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scimsync_scim_server_auth_failures_total",
			Help: "Requests to the SCIM server refused for a missing, malformed or unknown bearer token."}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scimsync_scim_server_refused_total",
			Help: "Requests to the SCIM server refused by a configured limit, by the limit's key."}, []string{"limit"}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "scimsync_scim_server_commit_seconds",
			Help:    "Time of each group-commit transaction of the SCIM server's writes, its fsync included: what a write waits for before it is acknowledged (a slow disk shows here first).",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5}}),
		commitWrites: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "scimsync_scim_server_commit_writes",
			Help:    "Resource writes sharing one group-commit transaction (one fsync).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13)}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.authFailures, m.refused, m.commitSeconds, m.commitWrites}
}
