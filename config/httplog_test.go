package config

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestHTTPErrorLogIsBoundedRedactedAndRateLimited(t *testing.T) {
	const secret = "srv-token-9a8b7c6d5e4f"
	core, logs := observer.New(zap.DebugLevel)
	now := time.Unix(1_700_000_000, 0)
	w := newHTTPErrorWriter(zap.New(core), NewRedactor(secret), func() time.Time { return now })

	// a line with a control sequence, and a secret where the bound falls
	long := "http: panic serving 127.0.0.1:1: \x1b[2J" + strings.Repeat("x", maxHTTPErrorLine-40) + secret + strings.Repeat("y", 1<<20)
	_, _ = w.Write([]byte(long))
	e := logs.All()[0]
	line := e.ContextMap()["error"].(string)
	if len(line) > maxHTTPErrorLine+len("…") || strings.Contains(line, "\x1b") || strings.Contains(line, secret[:8]) ||
		!strings.HasPrefix(line, "http: panic serving") || e.Level != zap.WarnLevel {
		t.Fatalf("line of %d bytes: %.120q… (level %v)", len(line), line, e.Level)
	}

	// a flood: 10 at once, then one a second, saying how many were held back
	for i := 0; i < 200; i++ {
		_, _ = w.Write([]byte("http: TLS handshake error from 127.0.0.1:1: EOF\n"))
	}
	if n := logs.Len(); n != 10 {
		t.Fatalf("%d lines logged of a burst of 201, want 10", n)
	}
	now = now.Add(time.Second)
	_, _ = w.Write([]byte("http: TLS handshake error from 127.0.0.1:1: EOF\n"))
	last := logs.All()[logs.Len()-1].ContextMap()
	if logs.Len() != 11 || last["not_logged"] != int64(191) {
		t.Fatalf("after a second: %d lines, the last %v", logs.Len(), last)
	}
}
