package config

import (
	stdlog "log"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// maxHTTPErrorLine bounds one line of an http.Server's error log, in bytes: a handler's panic
// comes with its stack, which is worth a few KiB, not more.
const maxHTTPErrorLine = 4096

// HTTPErrorLog is an http.Server's ErrorLog: each line net/http writes there (TLS handshake
// failures, a handler's panic, malformed connections: what no handler sees) becomes one Warn
// entry of log, whose redacting core sees it. red, when set, redacts the whole line before it
// is bounded, so the bound never cuts a secret into a prefix the core would miss. A client can
// make net/http write such lines as fast as it can connect, so after a burst of 10 at most one
// a second is logged, with the count of those held back.
func HTTPErrorLog(log *zap.Logger, red *Redactor) *stdlog.Logger {
	return stdlog.New(newHTTPErrorWriter(log, red, time.Now), "", 0)
}

func newHTTPErrorWriter(log *zap.Logger, red *Redactor, now func() time.Time) *httpErrorWriter {
	return &httpErrorWriter{log: log, red: red, now: now, lim: rate.NewLimiter(rate.Every(time.Second), 10)}
}

type httpErrorWriter struct {
	log  *zap.Logger
	red  *Redactor
	now  func() time.Time
	lim  *rate.Limiter
	held atomic.Int64
}

func (w *httpErrorWriter) Write(p []byte) (int, error) {
	if !w.lim.AllowN(w.now(), 1) {
		w.held.Add(1)
		return len(p), nil
	}
	line := w.red.MaskTail(w.red.Redact(string(p)))
	line = strings.Map(func(r rune) rune {
		if r != '\n' && unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(strings.TrimSpace(line), "\uFFFD"))
	if len(line) > maxHTTPErrorLine {
		cut := maxHTTPErrorLine
		for cut > 0 && !utf8RuneStart(line[cut]) {
			cut--
		}
		line = line[:cut] + "…"
	}
	w.log.Warn("http server", zap.String("error", line), zap.Int64("not_logged", w.held.Swap(0)))
	return len(p), nil
}

// utf8RuneStart reports whether b starts a UTF-8 sequence (is not a continuation byte).
func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
