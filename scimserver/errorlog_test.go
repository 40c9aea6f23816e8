package scimserver

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scimsync/scimsync/ldap/slapdtest"
)

// TestServerErrorLogGoesThroughTheLogger: what net/http logs itself (here TLS handshake
// failures, which any client can cause) reaches the server's zap logger, rate-limited, not
// the standard library's logger on stderr, which no redacting core watches.
func TestServerErrorLogGoesThroughTheLogger(t *testing.T) {
	dir := t.TempDir()
	_, cert, key, err := slapdtest.Certificates(dir)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	ts := startTestServerWith(t, "", func(c *ServerConfig) { c.TLSCertFile, c.TLSKeyFile = cert, key }, zap.New(core))
	addr := ts.srv.Addr()
	for i := 0; i < 40; i++ {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte("\x00\x01garbage that is not a TLS record\r\n"))
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, conn)
		conn.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessage("http server").Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := logs.FilterMessage("http server").All()
	if len(got) == 0 || len(got) > 12 {
		t.Fatalf("%d handshake failures logged through zap for 40 bad connections, want 1 to 12", len(got))
	}
	if line := got[0].ContextMap()["error"].(string); !strings.Contains(line, "TLS handshake error") || got[0].LoggerName != "scim-server" {
		t.Fatalf("entry %q from logger %q", line, got[0].LoggerName)
	}
}

func TestFailedAuthLogsABoundedCleanPath(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	ts := startTestServerWith(t, "", nil, zap.New(core))
	path := "/Users/%01%1b%5B2J" + strings.Repeat("a", 50_000) + "%E2%80%AE" + testToken
	req, _ := http.NewRequest(strings.Repeat("M", 300), ts.base+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	entries := logs.FilterMessage("authentication failed").All()
	if resp.StatusCode != http.StatusUnauthorized || len(entries) != 1 {
		t.Fatalf("status %d, %d log lines", resp.StatusCode, len(entries))
	}
	f := entries[0].ContextMap()
	for _, key := range []string{"path", "method"} {
		v := fmt.Sprint(f[key])
		if len(v) > maxLoggedPath+len("…") || strings.IndexFunc(v, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) >= 0 {
			t.Errorf("%s logged as %d bytes: %.80q", key, len(v), v)
		}
	}
	if len(fmt.Sprint(f["method"])) > maxLoggedMethod+len("…") || !strings.HasPrefix(fmt.Sprint(f["path"]), "/scim/v2/Users/") {
		t.Errorf("fields %.200v", f)
	}
}

// TestFailedAuthLogsNoStartOfAToken: a token that starts inside the logged part of a path is not
// logged, not even its first characters (one line per host per 10 s, hence a server of its own).
func TestFailedAuthLogsNoStartOfAToken(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	ts := startTestServerWith(t, "", nil, zap.New(core))
	prefix := "/Users/" + strings.Repeat("a", maxLoggedPath-len("/scim/v2/Users/")-12)
	resp, err := http.Get(ts.base + prefix + testToken)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	entries := logs.FilterMessage("authentication failed").All()
	if len(entries) != 1 {
		t.Fatalf("%d log lines", len(entries))
	}
	if p := fmt.Sprint(entries[0].ContextMap()["path"]); !strings.HasPrefix(p, "/scim/v2"+prefix) || strings.Contains(p, testToken[:8]) {
		t.Errorf("path logged as %q", p)
	}
}
