package scimclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient/targettest"
)

// These tests run the client against scimsync's SCIM server wrapped in every misbehaviour
// targettest has. Each asserts its bound with the wall clock, generously (these machines are
// noisy), the sentinel error, and that the token appears in no error, no log line and no
// request to another origin.

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// hostile is one test's client against one target, with everything it printed.
type hostile struct {
	t    *testing.T
	tg   *targettest.Target
	c    *Client
	logs *syncBuffer
	mu   sync.Mutex
	errs []error
}

func newHostile(t *testing.T, tg *targettest.Target, mod func(*TargetConfig)) *hostile {
	t.Helper()
	cfg := DefaultTargetConfig()
	cfg.URL, cfg.Token, cfg.CAFile = tg.URL, config.NewSecret(tg.Token), tg.CAFile
	cfg.PageSize = 3
	cfg.Timeout = config.Duration(5 * time.Second)
	cfg.RequestsPerSecond = 0
	if mod != nil {
		mod(&cfg)
	}
	h := &hostile{t: t, tg: tg, logs: &syncBuffer{}}
	core := zapcore.NewTee(
		zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(h.logs), zapcore.DebugLevel),
		zaptest.NewLogger(t).Core())
	c, err := NewClient(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	t.Cleanup(h.checkNoLeak)
	return h
}

// err records err for the leak check and returns it.
func (h *hostile) err(err error) error {
	if err != nil {
		h.mu.Lock()
		h.errs = append(h.errs, err)
		h.mu.Unlock()
	}
	return err
}

// checkNoLeak greps every error and log line for the token, and asks the target whether a
// request carried credentials to another origin.
func (h *hostile) checkNoLeak() {
	h.t.Helper()
	tok := h.tg.Token
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, err := range h.errs {
		if strings.Contains(err.Error(), tok) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), tok) {
			h.t.Errorf("the token leaked into an error: %v", err)
		}
	}
	if strings.Contains(h.logs.String(), tok) {
		h.t.Errorf("the token leaked into the log:\n%s", h.logs.String())
	}
	if l := h.tg.Leaks(); len(l) > 0 {
		h.t.Errorf("credentials sent to another origin: %v", l)
	}
}

func within(t *testing.T, bound time.Duration, fn func()) time.Duration {
	t.Helper()
	start := time.Now()
	fn()
	took := time.Since(start)
	if took > bound {
		t.Fatalf("took %s, bound %s", took, bound)
	}
	return took
}

func seedUsers(tg *targettest.Target, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = tg.CreateUser(userBody(fmt.Sprintf("user%02d", i), fmt.Sprintf("ext-%02d", i)))
	}
	return ids
}

func TestTargetWellBehaved(t *testing.T) {
	tg := targettest.Start(t)
	h := newHostile(t, tg, nil)
	ctx := context.Background()
	caps, err := h.c.Discover(ctx)
	if err != nil || !caps.Patch || !caps.ETag || caps.MaxResults != 200 || !caps.Declares(scim.ScimsyncSchema, "description", "") {
		t.Fatalf("%+v %v", caps, err)
	}
	seedUsers(tg, 7)
	created, err := h.c.Create(ctx, Users, userBody("new", "ext-new"))
	if err != nil || created.ID() == "" || created.ETag == "" || created.Doc["userName"] != "new" {
		t.Fatalf("%+v %v", created, err)
	}
	n := 0
	if err := h.c.ListWith(ctx, Users, ListOptions{MaxResources: 8}, func(Resource) error { n++; return nil }); err != nil || n != 8 {
		t.Fatalf("listed %d: %v", n, err)
	}
	// discovery, then 8 users in pages of 3, and one past the end to be sure totalResults did not undercount
	if got := tg.Count(http.MethodGet); got != 3+3+1 {
		t.Fatalf("%d GETs", got)
	}
	found, err := h.c.Find(ctx, Users, "userName", "USER03")
	if err != nil || len(found) != 1 || found[0].Doc["userName"] != "user03" {
		t.Fatalf("%+v %v", found, err)
	}
	found, err = h.c.Find(ctx, Users, "externalId", `we"ird\ü`)
	if err != nil || len(found) != 0 {
		t.Fatalf("%+v %v", found, err)
	}
	got, err := h.c.Get(ctx, Users, created.ID())
	if err != nil {
		t.Fatal(err)
	}
	patched, err := h.c.Patch(ctx, Users, got.ID(), []PatchOp{{Op: "add", Path: "title", Value: "Boss"}}, got.ETag)
	if err != nil || patched.Doc["title"] != "Boss" || patched.ETag == got.ETag {
		t.Fatalf("%+v %v", patched, err)
	}
	if err := h.c.Delete(ctx, Users, got.ID(), patched.ETag); err != nil {
		t.Fatal(err)
	}
	if st := h.c.Stats(); st.Writes != 3 || st.FailedWrites != 0 || st.Retries != 0 || st.Throttled != 0 {
		t.Fatalf("%+v", st)
	}
}

func TestTargetStrict(t *testing.T) {
	tg := targettest.Start(t)
	ids := seedUsers(tg, 1)
	tg.Set(func(b *targettest.Behaviour) {
		b.Strict = true
		b.Undeclared = []string{scim.ScimsyncSchema + ":description"}
	})
	h := newHostile(t, tg, nil)
	ctx := context.Background()
	caps, err := h.c.Discover(ctx)
	if err != nil || caps.Declares(scim.ScimsyncSchema, "description", "") || !caps.Declares(scim.ScimsyncSchema, "ldapUserDN", "") {
		t.Fatalf("the reduced schema must be discovered: %v", err)
	}
	doc := userBody("described", "ext-d")
	doc[scim.ScimsyncSchema] = map[string]any{"description": "x"}
	_, err = h.c.Create(ctx, Users, doc)
	var ae *APIError
	if !errors.As(h.err(err), &ae) || ae.Status != 400 || ae.ScimType != "invalidSyntax" || !strings.Contains(ae.Detail, "description") {
		t.Fatalf("undeclared attribute: %v", err)
	}
	// RFC 7644 §3.5.2.3: replace with a value filter that matches nothing is noTarget
	mobile := `phoneNumbers[type eq "mobile"].value`
	_, err = h.c.Patch(ctx, Users, ids[0], []PatchOp{{Op: "replace", Path: mobile, Value: "+1 555"}}, "")
	if !errors.As(h.err(err), &ae) || ae.ScimType != "noTarget" {
		t.Fatalf("replace of an absent value: %v", err)
	}
	if _, err := h.c.Patch(ctx, Users, ids[0], []PatchOp{{Op: "add", Path: "phoneNumbers",
		Value: []any{map[string]any{"type": "mobile", "value": "+1 555"}}}}, ""); err != nil {
		t.Fatalf("add of an absent value: %v", err)
	}
	if _, err := h.c.Patch(ctx, Users, ids[0], []PatchOp{{Op: "replace", Path: mobile, Value: "+1 556"}}, ""); err != nil {
		t.Fatalf("replace of a present value: %v", err)
	}
	_, err = h.c.Patch(ctx, Users, ids[0], []PatchOp{{Op: "remove"}}, "")
	if !errors.As(h.err(err), &ae) || ae.ScimType != "noTarget" {
		t.Fatalf("remove without a path: %v", err)
	}
	_, err = h.c.Patch(ctx, Users, ids[0], []PatchOp{{Op: "add", Path: scim.ScimsyncSchema + ":description", Value: "x"}}, "")
	if !errors.As(h.err(err), &ae) || ae.ScimType != "invalidSyntax" {
		t.Fatalf("undeclared attribute in a PATCH path: %v", err)
	}
	// 400s are the request's own fault: the target is alive, the breaker stays closed
	if _, err := h.c.Get(ctx, Users, ids[0]); err != nil {
		t.Fatal(err)
	}
}

func TestTargetRequiresETag(t *testing.T) {
	tg := targettest.Start(t)
	ids := seedUsers(tg, 1)
	tg.Set(func(b *targettest.Behaviour) { b.RequireETag = true })
	h := newHostile(t, tg, nil)
	ctx := context.Background()
	op := []PatchOp{{Op: "replace", Path: "active", Value: false}}
	if _, err := h.c.Patch(ctx, Users, ids[0], op, ""); !IsStatus(h.err(err), http.StatusPreconditionRequired) {
		t.Fatalf("without If-Match: %v", err)
	}
	if _, err := h.c.Patch(ctx, Users, ids[0], op, `W/"999"`); !IsStatus(h.err(err), http.StatusPreconditionFailed) {
		t.Fatalf("stale If-Match: %v", err)
	}
	if err := h.c.Delete(ctx, Users, ids[0], ""); !IsStatus(h.err(err), http.StatusPreconditionRequired) {
		t.Fatalf("delete without If-Match: %v", err)
	}
	cur, err := h.c.Get(ctx, Users, ids[0])
	if err != nil || cur.ETag == "" {
		t.Fatalf("%+v %v", cur, err)
	}
	if _, err := h.c.Patch(ctx, Users, ids[0], op, cur.ETag); err != nil {
		t.Fatalf("current If-Match: %v", err)
	}
	reqs := tg.Requests()
	if last := reqs[len(reqs)-1]; last.Method != http.MethodPatch || last.IfMatch != cur.ETag {
		t.Fatalf("If-Match sent: %+v", last)
	}
}

func TestTargetEchoesTheToken(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain text %v", plain), func(t *testing.T) {
			tg := targettest.Start(t)
			tg.Set(func(b *targettest.Behaviour) {
				b.EchoAuthorization, b.ConflictOnPost, b.PlainTextErrors = true, true, plain
			})
			red := config.NewRedactor("ldap-bind-password")
			h := newHostile(t, tg, nil)
			c, err := NewClient(h.c.cfg, zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
				zapcore.AddSync(h.logs), zapcore.DebugLevel)), WithRedactor(red))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Create(context.Background(), Users, userBody("a", "e"))
			var ae *APIError
			if !errors.As(h.err(err), &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Detail, config.Redacted) {
				t.Fatalf("%v", err)
			}
			_, err = c.Get(context.Background(), Users, "missing")
			if !IsStatus(h.err(err), http.StatusNotFound) || !strings.Contains(err.Error(), config.Redacted) {
				t.Fatalf("%v", err)
			}
			// the shared redactor learned the client's token, for the logger and stored errors
			if got := red.Redact("x " + tg.Token); strings.Contains(got, tg.Token) {
				t.Fatalf("shared redactor: %q", got)
			}
		})
	}
}

func TestTargetHostileDetail(t *testing.T) {
	tg := targettest.Start(t)
	tg.Set(func(b *targettest.Behaviour) { b.HostileDetail, b.ConflictOnPost = true, true })
	h := newHostile(t, tg, nil)
	_, err := h.c.Create(context.Background(), Users, userBody("a", "e"))
	h.err(err)
	var ae *APIError
	if !errors.As(err, &ae) || !strings.Contains(ae.Detail, "Run 99: 200 created") {
		t.Fatalf("%v", err)
	}
	for _, bad := range []string{"\n", "\r", "\x1b", "\u202e", "\x07"} {
		if strings.Contains(err.Error(), bad) {
			t.Fatalf("%q in %q", bad, err.Error())
		}
	}
	// the forged "line" can no longer start a line of its own
	if strings.HasPrefix(ae.Detail, "Run 99") && !strings.Contains(err.Error(), ": Run 99") {
		t.Fatalf("%q", err.Error())
	}
}

func TestTargetRedirectsElsewhere(t *testing.T) {
	for _, tt := range []struct {
		name   string
		tls    bool
		mode   targettest.RedirectMode
		status int
	}{
		{"other port", false, targettest.RedirectOtherPort, 307},
		{"other scheme (http to https)", false, targettest.RedirectOtherScheme, 308},
		{"other scheme (https to http)", true, targettest.RedirectOtherScheme, 302},
		{"other host name", false, targettest.RedirectOtherHost, 301},
		{"303 elsewhere", true, targettest.RedirectOtherPort, 303},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var opts []targettest.Option
			if tt.tls {
				opts = append(opts, targettest.WithTLS())
			}
			tg := targettest.Start(t, opts...)
			ids := seedUsers(tg, 1)
			tg.Set(func(b *targettest.Behaviour) { b.Redirect, b.RedirectStatus = tt.mode, tt.status })
			h := newHostile(t, tg, nil)
			ctx := context.Background()
			within(t, 5*time.Second, func() {
				_, err := h.c.Discover(ctx)
				if !errors.Is(h.err(err), ErrRedirectRefused) || !strings.Contains(err.Error(), "another origin") {
					t.Fatalf("GET: %v", err)
				}
				_, err = h.c.Create(ctx, Users, userBody("x", "ex"))
				if !errors.Is(h.err(err), ErrRedirectRefused) || errors.Is(err, ErrOutcomeUnknown) != (tt.status == 303) {
					t.Fatalf("POST: %v", err)
				}
				_, err = h.c.Patch(ctx, Users, ids[0], []PatchOp{{Op: "replace", Path: "title", Value: "t"}}, "")
				if !errors.Is(h.err(err), ErrRedirectRefused) {
					t.Fatalf("PATCH: %v", err)
				}
			})
		})
	}
}

func TestTargetRedirectsWithinItsOrigin(t *testing.T) {
	tg := targettest.Start(t, targettest.WithTLS())
	ids := seedUsers(tg, 1)
	tg.Set(func(b *targettest.Behaviour) { b.Redirect = targettest.RedirectSameOrigin })
	h := newHostile(t, tg, nil)
	ctx := context.Background()
	if _, err := h.c.Discover(ctx); err != nil {
		t.Fatal(err)
	}
	created, err := h.c.Create(ctx, Users, userBody("moved", "ext-moved"))
	if err != nil || created.Doc["userName"] != "moved" {
		t.Fatalf("307 of a POST is repeated as a POST with its body: %+v %v", created, err)
	}
	if _, err := h.c.Patch(ctx, Users, ids[0], []PatchOp{{Op: "replace", Path: "title", Value: "t"}}, ""); err != nil {
		t.Fatal(err)
	}
	if st := h.c.Stats(); st.Redirects < 5 || st.Writes != 2 || st.Retries != 0 {
		t.Fatalf("%+v", st)
	}
	// a 301 of a write cannot be repeated as the same request
	tg.Set(func(b *targettest.Behaviour) { b.RedirectStatus = http.StatusMovedPermanently })
	_, err = h.c.Patch(ctx, Users, ids[0], []PatchOp{{Op: "replace", Path: "title", Value: "u"}}, "")
	if !errors.Is(h.err(err), ErrRedirectRefused) {
		t.Fatalf("301 PATCH: %v", err)
	}
	// the same origin, but outside target.url's path: another application may live there
	tg.Set(func(b *targettest.Behaviour) { b.Redirect, b.RedirectStatus = targettest.RedirectOutsideBase, 0 })
	before := h.c.Stats().Redirects
	_, err = h.c.Get(ctx, Users, ids[0])
	if !errors.Is(h.err(err), ErrRedirectRefused) || !strings.Contains(err.Error(), "outside") || h.c.Stats().Redirects != before {
		t.Fatalf("307 outside the base path: %v", err)
	}
}

// TestRedirectsStayBelowTheBasePath: a Location is followed only below target.url's path,
// compared after dot segments (encoded or not) are resolved.
func TestRedirectsStayBelowTheBasePath(t *testing.T) {
	origin, _ := url.Parse("https://scim.example.org/scim/v2")
	c := &Client{origin: origin, red: config.NewRedactor(), log: zap.NewNop()}
	from := "https://scim.example.org/scim/v2/Users/1"
	for loc, ok := range map[string]bool{
		"/scim/v2/Users/2":                 true,
		"2":                                true,
		"https://scim.example.org/scim/v2": true,
		"/scim/v2/moved/Users/1?x=1":       true,
		"/scim/v2x/Users/1":                false,
		"/admin/Users/1":                   false,
		"/":                                false,
		"../../admin":                      false,
		"/scim/v2/../admin":                false,
		"/scim/v2/%2e%2e/%2E%2E/admin":     false,
		"/scim/v2/..%2f..%2fadmin":         false,
	} {
		_, err := c.resolve(from, loc)
		if (err == nil) != ok {
			t.Errorf("%s: followed %v, want %v (%v)", loc, err == nil, ok, err)
		}
	}
	// a target.url without a path leaves every path of its origin
	c.origin, _ = url.Parse("https://scim.example.org")
	if _, err := c.resolve(from, "/anything"); err != nil {
		t.Error(err)
	}
}

func TestTargetAnswersCreateWithAnotherUser(t *testing.T) {
	tg := targettest.Start(t)
	victim := seedUsers(tg, 1)[0]
	h := newHostile(t, tg, nil)
	ctx := context.Background()

	// 201 with another user's resource: the client returns what the target said, so the
	// engine's check (externalId and userName are ours, not linked elsewhere) can refuse it
	tg.Set(func(b *targettest.Behaviour) { b.Create = targettest.CreateOtherUser })
	got, err := h.c.Create(ctx, Users, userBody("mine", "ext-mine"))
	if err != nil || got.ID() != victim || got.Doc["userName"] == "mine" {
		t.Fatalf("%+v %v", got, err)
	}
	// 303 to another user, on the same origin: followed with a GET, never a second POST
	tg.Set(func(b *targettest.Behaviour) { b.Create = targettest.CreateSeeOther })
	got, err = h.c.Create(ctx, Users, userBody("mine", "ext-mine"))
	if err != nil || got.ID() != victim || tg.Count(http.MethodPost) != 2 {
		t.Fatalf("%+v %v, %d POSTs", got, err, tg.Count(http.MethodPost))
	}
	if n := len(tg.Users()); n != 1 {
		t.Fatalf("%d users stored, the misbehaving creates made none", n)
	}
	// 201 with an empty body: the resource is read from its Location
	tg.Set(func(b *targettest.Behaviour) { b.Create = targettest.CreateEmptyBody })
	got, err = h.c.Create(ctx, Users, userBody("empty", "ext-empty"))
	if err != nil || got.Doc["userName"] != "empty" || got.ETag == "" {
		t.Fatalf("%+v %v", got, err)
	}
	// 201 with an empty body and a Location elsewhere: not followed, and not retried
	tg.Set(func(b *targettest.Behaviour) { b.Create = targettest.CreateForeignLocation })
	posts := tg.Count(http.MethodPost)
	_, err = h.c.Create(ctx, Users, userBody("foreign", "ext-foreign"))
	if !errors.Is(h.err(err), ErrOutcomeUnknown) || !errors.Is(err, ErrRedirectRefused) || tg.Count(http.MethodPost) != posts+1 {
		t.Fatalf("%v", err)
	}
	// an answer about another resource than the one asked for
	tg.Set(func(b *targettest.Behaviour) { b.Create, b.AnswerOtherUser = targettest.CreateNormal, true })
	mine, err := h.c.Create(ctx, Users, userBody("mine2", "ext-mine2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.Get(ctx, Users, mine.ID()); !errors.Is(h.err(err), ErrWrongResource) {
		t.Fatalf("GET: %v", err)
	}
	if _, err := h.c.Patch(ctx, Users, mine.ID(), []PatchOp{{Op: "replace", Path: "title", Value: "t"}}, ""); !errors.Is(h.err(err), ErrWrongResource) {
		t.Fatalf("PATCH: %v", err)
	}
}

func TestTargetListsThatCannotBeTrusted(t *testing.T) {
	for _, tt := range []struct {
		name     string
		mode     targettest.ListMode
		cap      int
		wantErr  bool
		wantN    int
		maxPages int64
	}{
		{"normal", targettest.ListNormal, 0, false, 7, 4},
		{"empty (only the engine's guard can tell)", targettest.ListEmpty, 0, false, 0, 1},
		{"startIndex ignored, and said", targettest.ListIgnoreStartIndex, 0, true, 0, 2},
		{"page 1 repeated", targettest.ListRepeatFirstPage, 0, true, 0, 2},
		{"empty page while totalResults says more", targettest.ListEmptyPageWithMore, 0, true, 0, 2},
		{"totalResults 10^9, same users", targettest.ListHugeTotal, 0, true, 0, 2},
		{"totalResults 10^9 over the cap", targettest.ListHugeTotal, 50, true, 0, 1},
		{"endless new users", targettest.ListEndless, 50, true, 0, 18},
		{"maxResults 0 and empty pages", targettest.ListZeroItems, 0, true, 0, 1},
		{"totalResults undercounts", targettest.ListShortTotal, 0, true, 0, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tg := targettest.Start(t)
			seedUsers(tg, 7)
			tg.Set(func(b *targettest.Behaviour) { b.List = tt.mode })
			h := newHostile(t, tg, nil)
			ctx := context.Background()
			if _, err := h.c.Discover(ctx); err != nil {
				t.Fatal(err)
			}
			tg.ResetCounts()
			n := 0
			within(t, 10*time.Second, func() {
				err := h.c.ListWith(ctx, Users, ListOptions{MaxResources: tt.cap}, func(Resource) error { n++; return nil })
				h.err(err)
				if tt.wantErr != errors.Is(err, ErrUntrustedListing) || (err != nil && !tt.wantErr) {
					t.Fatalf("err %v", err)
				}
			})
			if !tt.wantErr && n != tt.wantN {
				t.Fatalf("listed %d, want %d", n, tt.wantN)
			}
			if got := tg.Count(http.MethodGet); got > tt.maxPages {
				t.Fatalf("%d pages requested, bound %d", got, tt.maxPages)
			}
		})
	}
}

func TestTargetIgnoresFilters(t *testing.T) {
	tg := targettest.Start(t)
	seedUsers(tg, 3)
	tg.Set(func(b *targettest.Behaviour) { b.IgnoreFilter = true })
	h := newHostile(t, tg, nil)
	_, err := h.c.Find(context.Background(), Users, "externalId", "ext-02")
	if !errors.Is(h.err(err), ErrUntrustedListing) {
		t.Fatalf("%v", err)
	}
	doc, err := h.c.FindUser(context.Background(), "nobody", "")
	if !errors.Is(h.err(err), ErrUntrustedListing) || doc != nil {
		t.Fatalf("%v %v", doc, err)
	}
}

func TestTargetRetryAfterForever(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			tg := targettest.Start(t)
			tg.Set(func(b *targettest.Behaviour) { b.ThrottleStatus, b.ThrottleCount, b.RetryAfter = status, -1, "999999" })
			h := newHostile(t, tg, nil)
			within(t, 3*time.Second, func() {
				_, err := h.c.Discover(context.Background())
				if !errors.Is(h.err(err), ErrCircuitOpen) || !strings.Contains(err.Error(), "max_retry_after") {
					t.Fatalf("%v", err)
				}
			})
			// the circuit is open for the rest of the run: nothing more is sent
			sent := tg.Total()
			_, err := h.c.Create(context.Background(), Users, userBody("a", "e"))
			if !errors.Is(h.err(err), ErrCircuitOpen) || tg.Total() != sent || sent != 1 {
				t.Fatalf("%v after %d requests", err, tg.Total())
			}
		})
	}
}

// TestTargetPauseIsShared: one 429 with Retry-After pauses every worker, including one that
// had not been throttled itself.
func TestTargetPauseIsShared(t *testing.T) {
	tg := targettest.Start(t)
	ids := seedUsers(tg, 2)
	tg.Set(func(b *targettest.Behaviour) {
		b.ThrottleStatus, b.ThrottleCount, b.RetryAfter = http.StatusTooManyRequests, 1, "2"
	})
	h := newHostile(t, tg, nil)
	ctx := context.Background()
	if _, err := h.c.Get(ctx, Users, ids[0]); err != nil { // throttled once, then served
		t.Fatal(err)
	}
	tg.Set(func(b *targettest.Behaviour) {
		b.ThrottleStatus, b.ThrottleCount, b.RetryAfter = http.StatusTooManyRequests, 1, "2"
	})
	tg.ResetCounts()
	var wg sync.WaitGroup
	start := time.Now()
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.c.Get(ctx, Users, id); err != nil {
				t.Error(err)
			}
		}()
		time.Sleep(300 * time.Millisecond) // the second worker starts while the first is paused
	}
	wg.Wait()
	reqs := tg.Requests()
	if len(reqs) != 3 || reqs[0].Status != http.StatusTooManyRequests {
		t.Fatalf("%+v", reqs)
	}
	// both later requests waited out the one pause: none reached the target before it ended
	for _, r := range reqs[1:] {
		if r.At.Sub(reqs[0].At) < 1900*time.Millisecond {
			t.Fatalf("a request arrived %s after the 429 that asked for 2s", r.At.Sub(reqs[0].At))
		}
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Fatalf("took %s", took)
	}
	if st := h.c.Stats(); st.Throttled != 2 || st.Retries != 2 {
		t.Fatalf("%+v", st)
	}
}

// TestTargetAdaptiveRate: a client configured far above the target's limit slows down for the
// rest of the run instead of bursting into it again and again.
func TestTargetAdaptiveRate(t *testing.T) {
	tg := targettest.Start(t)
	ids := seedUsers(tg, 1)
	tg.Set(func(b *targettest.Behaviour) { b.RateLimit = 10 })
	h := newHostile(t, tg, func(c *TargetConfig) { c.RequestsPerSecond, c.Burst, c.Concurrency = 40, 2, 4 })
	ctx := context.Background()
	const calls = 60
	jobs := make(chan int)
	var wg sync.WaitGroup
	var failed sync.Map
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if _, err := h.c.Get(ctx, Users, ids[0]); err != nil {
					failed.Store(i, h.err(err))
				}
			}
		}()
	}
	within(t, 30*time.Second, func() {
		for i := range calls {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
	})
	failed.Range(func(k, v any) bool { t.Errorf("call %v: %v", k, v); return true })
	st := h.c.Stats()
	// without adaptation three requests in four would be refused
	if st.Throttled > calls/4 || st.Rate <= 0 || st.Rate >= 40 {
		t.Fatalf("%+v", st)
	}
	t.Logf("%d calls: %d requests, %d throttled, settled at %.1f/s", calls, st.Requests, st.Throttled, st.Rate)
}

// TestTargetThrottlesAtRandom: a target that refuses a fifth of all requests at random (the
// chaos a flaky SaaS endpoint shows) slows the client down, but not below a tenth of its
// configured rate, and every call still succeeds.
func TestTargetThrottlesAtRandom(t *testing.T) {
	tg := targettest.Start(t)
	ids := seedUsers(tg, 1)
	tg.Set(func(b *targettest.Behaviour) { b.ThrottleShare = 0.2 })
	h := newHostile(t, tg, func(c *TargetConfig) { c.RequestsPerSecond = 20 })
	ctx := context.Background()
	const calls = 40
	within(t, 30*time.Second, func() {
		var wg sync.WaitGroup
		jobs := make(chan int)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range jobs {
					if _, err := h.c.Get(ctx, Users, ids[0]); h.err(err) != nil {
						t.Error(err)
					}
				}
			}()
		}
		for i := range calls {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
	})
	if st := h.c.Stats(); st.Rate < 2 || st.Throttled == 0 {
		t.Fatalf("%+v", st)
	}
}

func TestTargetDrips(t *testing.T) {
	tg := targettest.Start(t)
	ids := seedUsers(tg, 1)
	h := newHostile(t, tg, func(c *TargetConfig) { c.Timeout = config.Duration(time.Second) })
	ctx := context.Background()
	tg.Set(func(b *targettest.Behaviour) { b.Drip = time.Second })
	// a read is tried twice, each attempt cut at target.timeout: ~2 s plus one back-off
	within(t, 8*time.Second, func() {
		_, err := h.c.Get(ctx, Users, ids[0])
		if h.err(err) == nil || !strings.Contains(err.Error(), "target.timeout") {
			t.Fatalf("%v", err)
		}
	})
	if got := tg.Count(http.MethodGet); got != 2 {
		t.Fatalf("%d attempts", got)
	}
	// a create that was sent is never repeated: the target may have made the user
	within(t, 5*time.Second, func() {
		_, err := h.c.Create(ctx, Users, userBody("drip", "ext-drip"))
		if !errors.Is(h.err(err), ErrOutcomeUnknown) {
			t.Fatalf("%v", err)
		}
	})
	if got := tg.Count(http.MethodPost); got != 1 {
		t.Fatalf("%d POSTs", got)
	}
}

// TestTargetEveryWriteFails: the breaker ends the run after max_consecutive_failures, and the
// workers still queued get ErrCircuitOpen without a request.
func TestTargetEveryWriteFails(t *testing.T) {
	for _, retryAfter := range []string{"", "1"} {
		t.Run("Retry-After "+retryAfter, func(t *testing.T) {
			tg := targettest.Start(t)
			ids := seedUsers(tg, 1)
			tg.Set(func(b *targettest.Behaviour) { b.FailWrites = http.StatusServiceUnavailable })
			if retryAfter != "" {
				tg.Set(func(b *targettest.Behaviour) {
					b.FailWrites, b.ThrottleStatus, b.ThrottleCount, b.RetryAfter = 0, http.StatusServiceUnavailable, -1, retryAfter
				})
			}
			const maxFail, retries, workers, jobs = 3, 1, 4, 40
			h := newHostile(t, tg, func(c *TargetConfig) {
				c.MaxConsecutiveFailures, c.MaxRetries, c.Concurrency = maxFail, retries, workers
			})
			ctx := context.Background()
			queue := make(chan int)
			var wg sync.WaitGroup
			var mu sync.Mutex
			open := 0
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range queue {
						_, err := h.c.Patch(ctx, Users, ids[0], []PatchOp{{Op: "replace", Path: "title", Value: "x"}}, "")
						if h.err(err) == nil {
							t.Error("a write succeeded against a target failing every write")
						}
						if errors.Is(err, ErrCircuitOpen) {
							mu.Lock()
							open++
							mu.Unlock()
						}
					}
				}()
			}
			// with Retry-After the pause is shared and the rate halves on every round of 503s,
			// down to one request every 2 s: slow, but bounded
			within(t, 30*time.Second, func() {
				for i := range jobs {
					queue <- i
				}
				close(queue)
				wg.Wait()
			})
			// at most the calls in flight when the circuit opened were sent, each with its retries
			if got, bound := tg.Count(http.MethodPatch), int64((maxFail+workers)*(retries+1)); got > bound || open < jobs-maxFail-workers {
				t.Fatalf("%d PATCHes (bound %d), %d calls refused by the open circuit", got, bound, open)
			}
			// writes refused by the open circuit were never sent, so they are not counted
			if st := h.c.Stats(); st.Writes != st.FailedWrites || st.Writes > maxFail+workers || st.Writes < maxFail {
				t.Fatalf("%+v", st)
			}
			t.Logf("%d calls: %+v", jobs, h.c.Stats())
		})
	}
}

func TestTargetConflictOnEveryPost(t *testing.T) {
	tg := targettest.Start(t)
	tg.Set(func(b *targettest.Behaviour) { b.ConflictOnPost = true })
	h := newHostile(t, tg, func(c *TargetConfig) { c.MaxConsecutiveFailures = 2 })
	ctx := context.Background()
	for i := range 5 {
		if _, err := h.c.Create(ctx, Users, userBody(fmt.Sprint("u", i), fmt.Sprint("e", i))); !IsStatus(h.err(err), http.StatusConflict) {
			t.Fatalf("%v", err)
		}
	}
	// a 409 is about that one resource: never retried, and the circuit stays closed
	if got := tg.Count(http.MethodPost); got != 5 {
		t.Fatalf("%d POSTs", got)
	}
	if _, err := h.c.Discover(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestTargetWithoutDiscoveryEndpoints(t *testing.T) {
	tg := targettest.Start(t)
	h := newHostile(t, tg, nil)
	tg.Set(func(b *targettest.Behaviour) { b.NoSchemas = true })
	caps, err := h.c.Discover(context.Background())
	if err != nil || caps.Schemas != nil || !caps.Extensions[scim.ScimsyncSchema] || !caps.Declares(scim.ScimsyncSchema, "description", "") {
		t.Fatalf("%+v %v", caps, err)
	}
	tg.Set(func(b *targettest.Behaviour) { b.NoSchemas, b.NoResourceTypes = false, true })
	caps, err = h.c.Discover(context.Background())
	if err != nil || len(caps.Extensions) != 0 || caps.Declares(scim.ScimsyncSchema, "ldapUserDN", "") || !caps.Declares("", "userName", "") {
		t.Fatalf("%+v %v", caps, err)
	}
	if !strings.Contains(h.logs.String(), "no usable /ResourceTypes") || !strings.Contains(h.logs.String(), "no usable /Schemas") {
		t.Fatalf("warnings:\n%s", h.logs.String())
	}
	// an outage is not an absence: a 5xx fails discovery instead of shrinking what is sent
	tg.Set(func(b *targettest.Behaviour) { b.ThrottleStatus, b.ThrottleCount = http.StatusInternalServerError, -1 })
	h2 := newHostile(t, tg, func(c *TargetConfig) { c.MaxRetries = 1 })
	if _, err := h2.c.Discover(context.Background()); !IsStatus(h2.err(err), http.StatusInternalServerError) {
		t.Fatalf("%v", err)
	}
}

func TestTargetRefusesTheToken(t *testing.T) {
	tg := targettest.Start(t, targettest.WithToken("the-real-token-123"))
	h := newHostile(t, tg, nil)
	h.c.token = config.NewSecret("a-wrong-token-456")
	_, err := h.c.Discover(context.Background())
	if !IsStatus(h.err(err), http.StatusUnauthorized) || !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("%v", err)
	}
	_, err = h.c.Get(context.Background(), Users, "x")
	if !errors.Is(h.err(err), ErrCircuitOpen) || tg.Total() != 1 {
		t.Fatalf("%v after %d requests", err, tg.Total())
	}
}

func TestClientRefusesUnsafeIDs(t *testing.T) {
	tg := targettest.Start(t)
	h := newHostile(t, tg, nil)
	for _, id := range []string{"", ".", "..", "a\nb", strings.Repeat("x", 2000)} {
		if _, err := h.c.Get(context.Background(), Users, id); err == nil {
			t.Errorf("id %q accepted", id)
		}
		if err := h.c.Delete(context.Background(), Users, id, ""); err == nil {
			t.Errorf("delete of id %q accepted", id)
		}
	}
	if tg.Total() != 0 {
		t.Fatalf("%d requests sent", tg.Total())
	}
	if _, err := h.c.Get(context.Background(), Users, "a/../../b"); !IsStatus(err, http.StatusNotFound) {
		t.Fatalf("a slash is escaped, not a path step: %v", err)
	}
}
