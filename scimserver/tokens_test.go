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
