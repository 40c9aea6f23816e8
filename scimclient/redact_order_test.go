package scimclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
)

// TestTargetTextIsRedactedBeforeItIsCut: a secret the length bound would cut in two must not
// survive as a prefix the redactor no longer recognises.
func TestTargetTextIsRedactedBeforeItIsCut(t *testing.T) {
	c := &Client{red: config.NewRedactor(testToken), log: zap.NewNop()}
	for name, body := range map[string]string{
		// escape codes (dropped by the cleaning) push the token across the old 2,048-byte cut
		"non-JSON body":   strings.Repeat("\x1b[0m", 508) + "token=" + testToken + " refused",
		"JSON detail":     `{"detail":"` + strings.Repeat("x", MaxTextLen-10) + testToken + `"}`,
		"truncated echo":  `{"detail":"invalid token ` + testToken[:len(testToken)-3] + `..."}`,
		"truncated plain": "bad bearer " + testToken[:12] + "…",
	} {
		err := c.apiError("GET", "GET /Users", response{status: 401, body: []byte(body)})
		msg := err.Error()
		for n := minPrefix; n <= len(testToken); n++ {
			if strings.Contains(msg, testToken[:n]) {
				t.Errorf("%s: %d bytes of the token survive in %q", name, n, msg)
				break
			}
		}
		if !strings.Contains(msg, config.Redacted) && name != "JSON detail" {
			t.Errorf("%s: nothing redacted in %q", name, msg)
		}
	}
}

// minPrefix is the shortest start of the token the test treats as a leak.
const minPrefix = 8

func TestWrongResourceIDIsRedactedBeforeItIsCut(t *testing.T) {
	id := strings.Repeat("x", MaxTextLen-9) + testToken
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/scim+json")
		_, _ = w.Write([]byte(`{"id":"` + id + `","userName":"alice"}`))
	}))
	t.Cleanup(srv.Close)
	c, _ := testClient(t, srv.URL+"/scim/v2")
	_, err := c.Get(context.Background(), Users, "abc")
	if !errors.Is(err, ErrWrongResource) {
		t.Fatalf("GET answered with another id: %v", err)
	}
	if strings.Contains(err.Error(), testToken[:minPrefix]) {
		t.Fatalf("a start of the token survives: %q", err.Error())
	}
}
