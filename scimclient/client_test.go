package scimclient

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimserver"
	"github.com/scimsync/scimsync/state"
)

// flaky answers the first n requests with the given statuses, then proxies to the real server.
func flaky(t *testing.T, target string, statuses ...int) (string, *atomic.Int64) {
	t.Helper()
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	var n atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1) - 1
		if int(i) < len(statuses) {
			if statuses[i] == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "0")
			}
			w.WriteHeader(statuses[i])
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + u.Path, &n
}

// testClient returns a client whose back-off waits are recorded instead of slept.
func testClient(t *testing.T, base string) (*Client, *[]time.Duration) {
	t.Helper()
	cfg := DefaultTargetConfig()
	cfg.URL = base
	cfg.Token = config.NewSecret(testToken)
	cfg.PageSize = 3
	cfg.RequestsPerSecond = 0
	c, err := NewClient(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	slept := &[]time.Duration{}
	c.sleep = func(ctx context.Context, d time.Duration) error { *slept = append(*slept, d); return ctx.Err() }
	return c, slept
}

func TestClientRetriesThrottlingAndServerErrors(t *testing.T) {
	base0 := startServer(t)
	base, hits := flaky(t, base0, http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusInternalServerError)
	c, slept := testClient(t, base)
	created, err := c.CreateUser(context.Background(), userBody("alice", "e1"))
	if err != nil {
		t.Fatal(err)
	}
	// 429 with Retry-After: 0 is honoured as given; 503 without one and 500 back off with jitter
	if w := *slept; len(w) != 3 || w[0] != 0 || w[1] <= 0 || w[1] > time.Second || w[2] <= 0 || w[2] > 2*time.Second {
		t.Fatalf("back-off waits %v", w)
	}
	if hits.Load() != 4 || c.Stats().Retries != 3 || c.Stats().Throttled != 2 {
		t.Fatalf("hits %d stats %+v", hits.Load(), c.Stats())
	}
	if created["id"] == nil {
		t.Fatalf("created: %v", created)
	}
}

func TestClientGivesUpAndReportsStatus(t *testing.T) {
	base0 := startServer(t)
	base, _ := flaky(t, base0, 500, 500, 500, 500, 500, 500, 500)
	c, slept := testClient(t, base)
	_, err := c.CreateUser(context.Background(), userBody("alice", "e1"))
	if !IsStatus(err, 500) {
		t.Fatalf("got %v", err)
	}
	if n := len(*slept); n != DefaultTargetConfig().MaxRetries {
		t.Fatalf("%d waits, want one per retry (%d)", n, DefaultTargetConfig().MaxRetries)
	}
}

const testToken = "test-token-0123456789"

// startServer runs the built-in SCIM server on 127.0.0.1 and returns its base URL.
func startServer(t *testing.T) string {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cfg := scimserver.DefaultServerConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Tokens = []scimserver.TokenConfig{{Name: "okta", Token: config.NewSecret(testToken)}}
	srv, err := scimserver.NewServer(cfg, st, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	return "http://" + srv.Addr() + "/scim/v2"
}

func userBody(name, ext string) map[string]any {
	return map[string]any{
		"schemas":             []string{scim.UserSchema, scim.EnterpriseSchema},
		"userName":            name,
		"externalId":          ext,
		"name":                map[string]any{"givenName": "Given " + name, "familyName": "Family"},
		"emails":              []any{map[string]any{"value": name + "@example.org", "type": "work", "primary": true}},
		"active":              true,
		scim.EnterpriseSchema: map[string]any{"department": "R&D"},
	}
}

func TestClientAgainstServer(t *testing.T) {
	c, _ := testClient(t, startServer(t))
	ctx := context.Background()
	caps, err := c.Discover(ctx)
	if err != nil || !caps.Patch || !caps.ETag || !caps.Extensions[scim.ScimsyncSchema] || !caps.Extensions[scim.EnterpriseSchema] {
		t.Fatalf("caps %+v err %v", caps, err)
	}
	if caps.Groups == nil || caps.Groups.Endpoint != Groups || caps.Schemas == nil ||
		!caps.Declares(scim.ScimsyncSchema, "ldapUserDN", "") || !caps.Declares("", "name", "givenName") {
		t.Fatalf("discovery of resource types and schemas: %+v", caps)
	}
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		if _, err := c.CreateUser(ctx, userBody(n, "ext-"+n)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.CreateUser(ctx, userBody("A", "other"))
	if !IsStatus(err, 409) {
		t.Fatalf("duplicate create: %v", err)
	}
	n := 0
	if err := c.ListUsers(ctx, func(Doc) error { n++; return nil }); err != nil || n != 7 {
		t.Fatalf("listed %d over pages of 3: %v", n, err)
	}
	d, err := c.FindUser(ctx, "ext-c", "")
	if err != nil || d["userName"] != "c" {
		t.Fatalf("by externalId: %v %v", d, err)
	}
	d, err = c.FindUser(ctx, "nope", "D")
	if err != nil || d["userName"] != "d" {
		t.Fatalf("by userName: %v %v", d, err)
	}
	id := d["id"].(string)
	got, err := c.Get(ctx, Users, id)
	if err != nil || got.ETag == "" {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, err := c.Patch(ctx, Users, id, []PatchOp{{Op: "replace", Path: "title", Value: "x"}}, `W/"999"`); !IsStatus(err, 412) {
		t.Fatalf("a stale If-Match must be refused with 412: %v", err)
	}
	patched, err := c.Patch(ctx, Users, id, []PatchOp{{Op: "replace", Path: "active", Value: false}}, got.ETag)
	if err != nil || patched.ETag == "" || patched.ETag == got.ETag {
		t.Fatalf("patch with the current version: %+v %v", patched, err)
	}
	if err := c.DeleteUser(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteUser(ctx, id); err != nil {
		t.Fatalf("second delete (404) must succeed: %v", err)
	}
}

func TestRetryAfter(t *testing.T) {
	if d := retryAfter("7", 0); d != 7*time.Second {
		t.Fatalf("seconds: %v", d)
	}
	if d := retryAfter("999999", 0); d != 10*time.Minute {
		t.Fatalf("cap: %v", d)
	}
	if d := retryAfter(time.Now().Add(3*time.Second).UTC().Format(http.TimeFormat), 0); d <= 0 || d > 3*time.Second {
		t.Fatalf("date: %v", d)
	}
	if d := retryAfter("", 2); d <= 0 || d > 2*time.Second {
		t.Fatalf("fallback: %v", d)
	}
}
