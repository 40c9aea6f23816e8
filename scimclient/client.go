// Package scimclient is scimsync's outbound SCIM 2.0 (RFC 7644) client: the `target:` section.
//
// It is built to face targets nobody here wrote, including broken and hostile ones. Every
// request is paced by one rate limiter shared by all workers, which slows down for the rest of
// the run when the target throttles; every wait is bounded (target.timeout per attempt,
// target.max_retry_after per pause); a circuit breaker ends the run against a target that keeps
// failing; listings are checked page by page and fail rather than come back short; the bearer
// token never leaves the target's origin; and all text a target sends back is redacted of
// secrets and sanitised before anyone prints it.
package scimclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/scim"
)

// Stats counts requests; read with Snapshot.
type Stats struct {
	requests, writes, retries, throttled, failedWrites, redirects atomic.Int64
}

// StatsSnapshot is a copy of Stats.
type StatsSnapshot struct {
	Requests     int64   // HTTP requests sent, every attempt counted
	Writes       int64   // write operations (POST, PUT, PATCH, DELETE calls), not attempts
	Retries      int64   // attempts repeated after throttling, a 5xx or a network error
	Throttled    int64   // answers 429, or 503 with Retry-After
	FailedWrites int64   // write operations that ended in an error
	Redirects    int64   // same-origin redirects followed
	Rate         float64 // the request rate the client has settled on; 0 = unlimited
}

// Client is an RFC 7644 client for one target and one run: its rate and its circuit breaker
// remember what the target did, so build a new one per run.
type Client struct {
	cfg    TargetConfig
	base   string
	origin *url.URL
	token  config.Secret
	hc     *http.Client
	gov    *governor
	brk    *breaker
	red    *config.Redactor
	log    *zap.Logger
	stats  Stats
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
	// observe, when set, is told every response status (0 for a network error), for metrics.
	observe func(method string, status int)
	// maxResults is the page size the target declared in /ServiceProviderConfig (0: none).
	maxResults atomic.Int64
}

// Option configures a Client.
type Option func(*Client)

// WithRedactor makes the client redact every secret r knows (not only its own token) from the
// errors it returns and the lines it logs, and teaches r the client's token, so one Redactor
// serves the whole program.
func WithRedactor(r *config.Redactor) Option {
	return func(c *Client) {
		if r != nil {
			c.red = r
		}
	}
}

// Observe registers fn to be told the status of every response (0 for a network error).
// Call it before the client is used.
func (c *Client) Observe(fn func(method string, status int)) { c.observe = fn }

// NewClient validates cfg and resolves the token.
func NewClient(cfg TargetConfig, log *zap.Logger, opts ...Option) (*Client, error) {
	if err := cfg.Validate().Err(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tok, err := config.ResolveSecret(cfg.Token, cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("scim: target token: %w", err)
	}
	if strings.IndexFunc(tok.Reveal(), unicode.IsControl) >= 0 || strings.TrimSpace(tok.Reveal()) != tok.Reveal() {
		return nil, fmt.Errorf("scim: target token: contains a control character or surrounding space (check the token file)")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // opt-in, warned by InsecureWarning
	if cfg.CAFile != "" {
		pool, err := config.CertPool(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("scim: target %w", err)
		}
		tc.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxIdleConnsPerHost = cfg.Concurrency * 2
	base := strings.TrimSuffix(cfg.URL, "/")
	origin, _ := url.Parse(base) // Validate parsed it
	c := &Client{cfg: cfg, base: base, origin: origin, token: tok, now: time.Now,
		hc: &http.Client{Transport: tr,
			// redirects are decided per call (same origin only), never by net/http, which
			// would resend the Authorization header to another port or scheme of the host
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		red: config.NewRedactor()}
	for _, o := range opts {
		o(c)
	}
	c.red.Add(tok.Reveal())
	c.gov = newGovernor(cfg.RequestsPerSecond, cfg.Burst, func() time.Time { return c.now() }) // c.now is swapped in tests
	c.brk = newBreaker(cfg.MaxConsecutiveFailures)
	c.sleep = c.sleepInterruptible
	c.log = log.Named("scim-client").WithOptions(zap.WrapCore(func(core zapcore.Core) zapcore.Core {
		return config.RedactCore(core, c.red)
	}))
	return c, nil
}

// InsecureWarning says what protection of the bearer token is off (plain http:// to a host
// that is not loopback, or TLS verification disabled), for the caller to log once; "" when none.
func (c *Client) InsecureWarning() string { return c.cfg.InsecureWarning() }

// Stats returns the request counters so far.
func (c *Client) Stats() StatsSnapshot {
	return StatsSnapshot{Requests: c.stats.requests.Load(), Writes: c.stats.writes.Load(), Retries: c.stats.retries.Load(),
		Throttled: c.stats.throttled.Load(), FailedWrites: c.stats.failedWrites.Load(), Redirects: c.stats.redirects.Load(),
		Rate: c.gov.rate()}
}

// Endpoint is a resource type's path below the base URL.
type Endpoint string

// The resource types scimsync writes.
const (
	Users  Endpoint = "/Users"
	Groups Endpoint = "/Groups"
)

// Resource is one resource as the target returned it, with the version it was returned at.
type Resource struct {
	Doc  scim.Doc
	ETag string // meta.version, else the ETag header; "" when the target keeps no versions
}

// ID is the target's id of the resource.
func (r Resource) ID() string {
	id, _ := r.Doc["id"].(string)
	return id
}

// Doc is a SCIM resource as JSON.
type Doc = scim.Doc

// Get reads one resource; a missing one is an *APIError with status 404.
func (c *Client) Get(ctx context.Context, ep Endpoint, id string) (Resource, error) {
	path, err := c.resourcePath(ep, id)
	if err != nil {
		return Resource{}, err
	}
	resp, err := c.send(ctx, request{method: http.MethodGet, url: c.base + path}, "GET "+path)
	if err != nil {
		return Resource{}, err
	}
	res, err := c.resource(resp, "GET "+path, true)
	if err != nil {
		return Resource{}, err
	}
	return res, c.sameResource(res, id, "GET "+path)
}

// Create POSTs doc and returns the created resource. When the target answers 303, or 201
// without the resource but with a Location, the resource is read from there, on the target's
// origin only. The caller still checks that the resource is the one it asked for: a target may
// answer with another resource's id. ErrOutcomeUnknown means the create may have happened.
func (c *Client) Create(ctx context.Context, ep Endpoint, doc Doc) (Resource, error) {
	name := "POST " + string(ep)
	raw, err := encode(doc)
	if err != nil {
		return Resource{}, fmt.Errorf("scim: %s: %w", name, err)
	}
	resp, err := c.send(ctx, request{method: http.MethodPost, url: c.base + string(ep), body: raw}, name)
	if err != nil {
		return Resource{}, err
	}
	res, err := c.resource(resp, name, false)
	switch {
	case errors.Is(err, ErrWrongResource):
		return Resource{}, fmt.Errorf("%w (%w)", err, ErrOutcomeUnknown)
	case err == nil && res.ID() != "":
		return res, nil
	}
	// 201 without a usable resource: read it where the target says it is
	loc := resp.header.Get("Location")
	if loc == "" {
		return Resource{}, fmt.Errorf("scim: %s: HTTP %d without the created resource or its Location: %w", name, resp.status, ErrOutcomeUnknown)
	}
	u, err := c.resolve(resp.url, loc)
	if err != nil {
		return Resource{}, c.red.Error(fmt.Errorf("scim: %s: created, but %w: %w (%w)", name, err, ErrOutcomeUnknown, ErrRedirectRefused))
	}
	getName := "GET " + c.relative(u)
	got, err := c.send(ctx, request{method: http.MethodGet, url: u}, getName)
	if err != nil {
		return Resource{}, fmt.Errorf("scim: %s: created, but reading it back: %w (%w)", name, err, ErrOutcomeUnknown)
	}
	return c.resource(got, getName, true)
}

// PatchOp is one RFC 7644 PATCH operation as sent on the wire.
type PatchOp = scim.PatchOp

// Patch applies ops to resource id. ifMatch, when set, is sent as If-Match so a target that
// versions resources refuses the change (412) if the resource moved on since it was read. The
// returned resource is empty when the target answers 204 (its ETag header kept, if any).
func (c *Client) Patch(ctx context.Context, ep Endpoint, id string, ops []PatchOp, ifMatch string) (Resource, error) {
	body := map[string]any{"schemas": []string{scim.PatchOpSchema}, "Operations": ops}
	return c.modify(ctx, http.MethodPatch, ep, id, body, ifMatch)
}

// Replace PUTs doc as resource id, for targets without PATCH.
func (c *Client) Replace(ctx context.Context, ep Endpoint, id string, doc Doc, ifMatch string) (Resource, error) {
	return c.modify(ctx, http.MethodPut, ep, id, doc, ifMatch)
}

// Delete deletes resource id; a 404 means it is already gone, which is success.
func (c *Client) Delete(ctx context.Context, ep Endpoint, id string, ifMatch string) error {
	_, err := c.modify(ctx, http.MethodDelete, ep, id, nil, ifMatch)
	if IsStatus(err, http.StatusNotFound) {
		return nil
	}
	return err
}

func (c *Client) modify(ctx context.Context, method string, ep Endpoint, id string, body any, ifMatch string) (Resource, error) {
	path, err := c.resourcePath(ep, id)
	if err != nil {
		return Resource{}, err
	}
	name := method + " " + path
	var raw []byte
	if body != nil {
		if raw, err = encode(body); err != nil {
			return Resource{}, fmt.Errorf("scim: %s: %w", name, err)
		}
	}
	resp, err := c.send(ctx, request{method: method, url: c.base + path, body: raw, ifMatch: ifMatch}, name)
	if err != nil {
		return Resource{}, err
	}
	res, err := c.resource(resp, name, false)
	if err != nil {
		// the write succeeded; an unreadable answer only costs the caller a fresh read
		c.log.Warn("write succeeded but its answer is unreadable", zap.String("request", name), zap.Error(err))
		return Resource{ETag: resp.header.Get("ETag")}, nil
	}
	if res.Doc == nil {
		return res, nil
	}
	return res, c.sameResource(res, id, name)
}

// resource decodes a success answer. With need set, an answer without a resource is an error.
func (c *Client) resource(resp response, name string, need bool) (Resource, error) {
	if len(strings.TrimSpace(string(resp.body))) == 0 {
		if need {
			return Resource{}, fmt.Errorf("scim: %s: HTTP %d with an empty body", name, resp.status)
		}
		return Resource{ETag: resp.header.Get("ETag")}, nil
	}
	doc, err := decodeDoc(resp.body)
	if err != nil {
		return Resource{}, fmt.Errorf("scim: %s: decode the answer: %w", name, err)
	}
	res := Resource{Doc: doc, ETag: metaVersion(doc)}
	if res.ETag == "" {
		res.ETag = resp.header.Get("ETag")
	}
	if id, present := doc["id"]; present {
		s, ok := id.(string)
		if !ok || validID(s) != nil {
			return Resource{}, fmt.Errorf("scim: %s: the answer's id is not a usable id: %w", name, ErrWrongResource)
		}
	}
	return res, nil
}

// sameResource checks that an answer about id is about id. Ids compare exactly, as the state
// file keys them: a target with case-sensitive ids may hold "abc" and "ABC" as two resources.
func (c *Client) sameResource(res Resource, id, name string) error {
	if got := res.ID(); got != "" && got != id {
		return fmt.Errorf("scim: %s: %w (id %q)", name, ErrWrongResource, c.text(got, MaxTextLen))
	}
	return nil
}

// resourcePath is ep/id, refusing ids that would address something else (the collection, a
// parent path) or carry control characters.
func (c *Client) resourcePath(ep Endpoint, id string) (string, error) {
	if err := validID(id); err != nil {
		return "", fmt.Errorf("scim: %s/%q: %w", ep, c.text(id, MaxTextLen), err)
	}
	return string(ep) + "/" + url.PathEscape(id), nil
}

func validID(id string) error {
	switch {
	case id == "":
		return errors.New("empty resource id")
	case id == "." || id == "..":
		return errors.New("resource id is a path step")
	case len(id) > 1024:
		return errors.New("resource id longer than 1024 bytes")
	case strings.IndexFunc(id, unicode.IsControl) >= 0:
		return errors.New("resource id contains a control character")
	}
	return nil
}

// relative names u by its path below the base URL, for messages.
func (c *Client) relative(u string) string {
	if rest, ok := strings.CutPrefix(u, c.base); ok {
		return rest
	}
	if p, err := url.Parse(u); err == nil {
		return p.RequestURI()
	}
	return u
}

func encode(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode the request: %w", err)
	}
	return raw, nil
}

// metaVersion reads meta.version, the resource's ETag as the body carries it.
func metaVersion(d Doc) string {
	m, _ := d["meta"].(map[string]any)
	v, _ := m["version"].(string)
	return v
}

// The user-specific calls below keep the reconciler's current interface until it moves to the
// generic resource calls above.

// ListUsers pages through every user.
func (c *Client) ListUsers(ctx context.Context, fn func(Doc) error) error {
	return c.List(ctx, Users, func(r Resource) error { return fn(r.Doc) })
}

// FindUser looks a user up by externalId, then by userName; nil when neither matches.
func (c *Client) FindUser(ctx context.Context, externalID, userName string) (Doc, error) {
	for _, f := range []struct{ attr, value string }{{"externalId", externalID}, {"userName", userName}} {
		if f.value == "" {
			continue
		}
		found, err := c.Find(ctx, Users, f.attr, f.value)
		if err != nil {
			return nil, err
		}
		if len(found) > 0 {
			return found[0].Doc, nil
		}
	}
	return nil, nil
}

// CreateUser POSTs doc and returns the created resource.
func (c *Client) CreateUser(ctx context.Context, doc Doc) (Doc, error) {
	r, err := c.Create(ctx, Users, doc)
	return r.Doc, err
}

// PatchUser applies ops to user id.
func (c *Client) PatchUser(ctx context.Context, id string, ops []PatchOp) error {
	_, err := c.Patch(ctx, Users, id, ops, "")
	return err
}

// ReplaceUser PUTs doc as user id, for targets without PATCH.
func (c *Client) ReplaceUser(ctx context.Context, id string, doc Doc) error {
	_, err := c.Replace(ctx, Users, id, doc, "")
	return err
}

// DeleteUser deletes user id; a 404 means it is already gone, which is success.
func (c *Client) DeleteUser(ctx context.Context, id string) error {
	return c.Delete(ctx, Users, id, "")
}
