package scimclient

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// forever stands for a Retry-After too large to represent: far beyond any cap.
const forever = 100 * 365 * 24 * time.Hour

// parseRetryAfter reads a Retry-After value (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.
// ok is false when the header is absent or unreadable. A date in the past means now (0); a
// number too large for a Duration means forever, not "absent". Fractional seconds, which some
// servers send, are rounded up.
func parseRetryAfter(h string, now time.Time) (wait time.Duration, ok bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if isDigits(h) {
		n, err := strconv.ParseUint(h, 10, 64)
		if err != nil || n > uint64(forever/time.Second) {
			return forever, true // only overflow fails on a string of digits
		}
		return time.Duration(n) * time.Second, true
	}
	if f, err := strconv.ParseFloat(h, 64); err == nil && !strings.ContainsAny(h, "+-eEnNiIxXpP_") {
		if math.IsNaN(f) || f < 0 {
			return 0, false
		}
		if f > float64(forever/time.Second) {
			return forever, true
		}
		return time.Duration(math.Ceil(f)) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(t.Sub(now), 0), forever), true
	}
	return 0, false
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
