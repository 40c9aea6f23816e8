package scimclient

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync"
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

// fakeClock is a clock that only moves when the client sleeps, so waits are recorded, not slept.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	slept []time.Duration
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.slept = append(f.slept, d)
	f.t = f.t.Add(d)
	return ctx.Err()
}

func (f *fakeClock) waits() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.slept...)
}

// testClient returns a client on a fake clock: its back-off waits are recorded instead of slept.
func testClient(t *testing.T, base string) (*Client, *fakeClock) {
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
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	c.now, c.sleep = clock.now, clock.sleep
	return c, clock
}

func TestClientRetriesThrottlingAndServerErrors(t *testing.T) {
	base0 := startServer(t)
	base, hits := flaky(t, base0, http.StatusTooManyRequests, http.StatusServiceUnavailable)
	c, clock := testClient(t, base)
	created, err := c.CreateUser(context.Background(), userBody("alice", "e1"))
	if err != nil {
		t.Fatal(err)
	}
	// 429 with Retry-After: 0 is honoured as given (no pause) but slows the client from
	// unlimited to the floor rate (it had sent one request); 503 without Retry-After backs off
	// with jitter, then the slower rate spaces the next request
	if w := clock.waits(); len(w) != 2 || w[0] <= 0 || w[0] > time.Second || w[0]+w[1] < 2*time.Second-time.Millisecond {
		t.Fatalf("back-off waits %v", w)
	}
	if r := c.Stats().Rate; r <= 0 || r > 1 {
		t.Fatalf("rate after a 429 (halved to the floor, then one calm second's increase): %v", r)
	}
	// a retried POST is one write and two retries
	if st := c.Stats(); hits.Load() != 3 || st.Retries != 2 || st.Throttled != 1 || st.Writes != 1 || st.Requests != 3 {
		t.Fatalf("hits %d stats %+v", hits.Load(), st)
	}
	if created["id"] == nil {
		t.Fatalf("created: %v", created)
	}
}

func TestClientRetriesReadsOnServerErrors(t *testing.T) {
	base0 := startServer(t)
	base, hits := flaky(t, base0, http.StatusInternalServerError, http.StatusBadGateway, http.StatusGatewayTimeout)
	c, clock := testClient(t, base)
	if _, err := c.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w := clock.waits(); len(w) != 3 || hits.Load() != 6 || c.Stats().Retries != 3 || c.Stats().Writes != 0 {
		t.Fatalf("waits %v hits %d stats %+v", w, hits.Load(), c.Stats())
	}
}

func TestClientDoesNotRepeatAPostThatMayHaveWorked(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusGatewayTimeout} {
		base0 := startServer(t)
		base, hits := flaky(t, base0, status)
		c, _ := testClient(t, base)
		_, err := c.CreateUser(context.Background(), userBody("alice", "e1"))
		if !errors.Is(err, ErrOutcomeUnknown) || !IsStatus(err, status) || hits.Load() != 1 {
			t.Fatalf("HTTP %d: err %v after %d requests", status, err, hits.Load())
		}
		if st := c.Stats(); st.Writes != 1 || st.FailedWrites != 1 || st.Retries != 0 {
			t.Fatalf("HTTP %d: stats %+v", status, st)
		}
	}
}

func TestClientGivesUpAndReportsStatus(t *testing.T) {
	base0 := startServer(t)
	base, _ := flaky(t, base0, 500, 500, 500, 500, 500, 500, 500)
	c, clock := testClient(t, base)
	_, err := c.Get(context.Background(), Users, "nobody")
	if !IsStatus(err, 500) {
		t.Fatalf("got %v", err)
	}
	if n := len(clock.waits()); n != DefaultTargetConfig().MaxRetries {
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

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"7", 7 * time.Second, true},
		{" 7 ", 7 * time.Second, true},
		{"0", 0, true},
		{"1.5", 2 * time.Second, true},
		{"999999", 999999 * time.Second, true},
		{"99999999999999999999999", forever, true},
		{now.Add(3 * time.Second).Format(http.TimeFormat), 3 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"", 0, false},
		{"-5", 0, false},
		{"soon", 0, false},
		{"NaN", 0, false},
		{"1e3", 0, false},
	} {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// A 408 means the target never had the whole request: even a POST is repeated.
func TestClientRepeatsAPostTheTargetNeverReceived(t *testing.T) {
	base, hits := flaky(t, startServer(t), http.StatusRequestTimeout)
	c, _ := testClient(t, base)
	if _, err := c.CreateUser(context.Background(), userBody("alice", "e1")); err != nil || hits.Load() != 2 {
		t.Fatalf("%v after %d requests", err, hits.Load())
	}
}
