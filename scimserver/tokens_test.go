package scimserver

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scimsync/scimsync/config"
)

// longToken is a token of the length the server asks for.
const longToken = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// TestShortServerTokenWarned: a token shorter than 32 characters is warned about at start-up,
// by its name; a long one is not, and no token value appears in the log.
func TestShortServerTokenWarned(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	startTestServerWith(t, "", func(c *ServerConfig) {
		c.Tokens = []TokenConfig{{Name: "okta", Token: config.NewSecret(testToken)}, {Name: "entra", Token: config.NewSecret(longToken)}}
	}, zap.New(core))
	var warned []string
	for _, e := range logs.All() {
		if strings.Contains(e.Message, "shorter than 32 characters") {
			warned = append(warned, fmt.Sprint(e.ContextMap()["token"]))
		}
		if line := e.Message + fmt.Sprint(e.ContextMap()); strings.Contains(line, testToken) || strings.Contains(line, longToken) {
			t.Fatalf("a token is logged: %s", line)
		}
	}
	if len(warned) != 1 || warned[0] != "okta" {
		t.Fatalf("warned about %v, want [okta]", warned)
	}
}

// TestTokensMatchWhateverTheirLength: tokens of different lengths each authenticate as
// themselves, and nothing but the whole token does (the comparison is of digests).
func TestTokensMatchWhateverTheirLength(t *testing.T) {
	ts := startTestServerWith(t, "", func(c *ServerConfig) {
		c.Tokens = []TokenConfig{{Name: "okta", Token: config.NewSecret(testToken)}, {Name: "entra", Token: config.NewSecret(longToken)}}
	}, zap.NewNop())
	for header, want := range map[string]int{
		"Bearer " + testToken:                    200,
		"Bearer " + longToken:                    200,
		"bearer  " + longToken + " ":             200,
		"Bearer " + testToken[:len(testToken)-1]: 401,
		"Bearer " + testToken + "0":              401,
		"Bearer " + strings.ToUpper(longToken):   401,
		"Bearer " + longToken[:len(testToken)]:   401,
		"Bearer ":                                401,
		"Bearer " + testToken + " " + longToken:  401,
		testToken:                                401,
	} {
		req, _ := http.NewRequest("GET", ts.base+"/Users?count=1", nil)
		req.Header.Set("Authorization", header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Authorization %q: status %d, want %d", header, resp.StatusCode, want)
		}
	}
}

// TestPlainHTTPOffLoopbackWarned: the server says when it would take tokens in clear from
// the network.
func TestPlainHTTPOffLoopbackWarned(t *testing.T) {
	for _, tt := range []struct {
		listen string
		tls    bool
		warn   bool
	}{
		{"0.0.0.0:8443", false, true},
		{":8443", false, true},
		{"[::]:8443", false, true},
		{"192.0.2.10:8443", false, true},
		{"scim.example.org:8443", false, true},
		{"0.0.0.0:8443", true, false},
		{"127.0.0.1:8443", false, false},
		{"127.0.0.53:8443", false, false},
		{"[::1]:8443", false, false},
		{"localhost:8443", false, false},
	} {
		c := DefaultServerConfig()
		c.Listen = tt.listen
		if tt.tls {
			c.TLSCertFile, c.TLSKeyFile = "cert.pem", "key.pem"
		}
		if got := c.InsecureWarning() != ""; got != tt.warn {
			t.Errorf("%s (TLS %v): warned %v, want %v", tt.listen, tt.tls, got, tt.warn)
		}
	}
	// the warning is logged when the server starts; a loopback listener gets none
	core, logs := observer.New(zap.WarnLevel)
	startTestServerWith(t, "", nil, zap.New(core))
	if n := logs.FilterMessageSnippet("plain HTTP").Len(); n != 0 {
		t.Fatalf("%d plain HTTP warnings for 127.0.0.1", n)
	}
}
