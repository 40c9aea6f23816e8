package scimclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/scim"
)

// TargetConfig is the `target:` section: the SCIM endpoint the sync writes to.
type TargetConfig struct {
	URL                string          `yaml:"url"`
	Token              config.Secret   `yaml:"token"`
	TokenFile          string          `yaml:"token_file"`
	Profile            string          `yaml:"profile"`
	CAFile             string          `yaml:"ca_file"`
	InsecureSkipVerify bool            `yaml:"insecure_skip_verify"`
	Timeout            config.Duration `yaml:"timeout"`             // per request
	Concurrency        int             `yaml:"concurrency"`         // writes in flight
	RequestsPerSecond  float64         `yaml:"requests_per_second"` // 0 = unlimited
	MaxRetries         int             `yaml:"max_retries"`
	PageSize           int             `yaml:"page_size"`
}

// DefaultTargetConfig is the section's defaults.
func DefaultTargetConfig() TargetConfig {
	return TargetConfig{Profile: "generic", Timeout: config.Duration(30 * time.Second), Concurrency: 4,
		RequestsPerSecond: 20, MaxRetries: 5, PageSize: 200}
}

// Validate reports every problem in the section.
func (c TargetConfig) Validate() config.Problems {
	var ps config.Problems
	u, err := url.Parse(c.URL)
	if c.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ps.Add("url", "want the SCIM base URL, e.g. https://app.example.com/scim/v2")
	}
	if c.Token.IsZero() && c.TokenFile == "" {
		ps.Add("token", "set token (e.g. ${TARGET_TOKEN}) or token_file")
	}
	if !c.Token.IsZero() && c.TokenFile != "" {
		ps.Add("token_file", "set token or token_file, not both")
	}
	// profile names are checked by the sync, which owns the profiles
	if c.Timeout.D() <= 0 {
		ps.Add("timeout", "must be positive")
	}
	if c.Concurrency < 1 || c.Concurrency > 64 {
		ps.Add("concurrency", "must be between 1 and 64")
	}
	if c.RequestsPerSecond < 0 {
		ps.Add("requests_per_second", "must be 0 (unlimited) or positive")
	}
	if c.MaxRetries < 0 || c.MaxRetries > 20 {
		ps.Add("max_retries", "must be between 0 and 20")
	}
	if c.PageSize < 1 {
		ps.Add("page_size", "must be at least 1")
	}
	return ps
}

// APIError is a non-success answer from the target.
type APIError struct {
	Method, Path string
	Status       int
	ScimType     string
	Detail       string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("scim: %s %s: HTTP %d", e.Method, e.Path, e.Status)
	if e.ScimType != "" {
		s += " " + e.ScimType
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// IsStatus reports whether err is an APIError with status code.
func IsStatus(err error, code int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == code
}

// Stats counts requests by method and status class; read with Snapshot.
type Stats struct {
	requests, writes, retries, throttled atomic.Int64
}

// StatsSnapshot is a copy of Stats.
type StatsSnapshot struct{ Requests, Writes, Retries, Throttled int64 }

// Client is an RFC 7644 client for one target.
type Client struct {
	cfg   TargetConfig
	base  string
	token config.Secret
	hc    *http.Client
	lim   *rate.Limiter
	log   *zap.Logger
	stats Stats
	sleep func(ctx context.Context, d time.Duration) error
	// observe, when set, is told every response status (0 for a network error), for metrics.
	observe func(method string, status int)
}

// Observe registers fn to be told the status of every response (0 for a network error).
// Call it before the client is used.
func (c *Client) Observe(fn func(method string, status int)) { c.observe = fn }

// NewClient validates cfg and resolves the token.
func NewClient(cfg TargetConfig, log *zap.Logger) (*Client, error) {
	if err := cfg.Validate().Err(); err != nil {
		return nil, err
	}
	tok, err := config.ResolveSecret(cfg.Token, cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("scim: target token: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // opt-in
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
	lim := rate.NewLimiter(rate.Inf, 1)
	if cfg.RequestsPerSecond > 0 {
		lim = rate.NewLimiter(rate.Limit(cfg.RequestsPerSecond), max(1, int(cfg.RequestsPerSecond)))
	}
	return &Client{cfg: cfg, base: strings.TrimSuffix(cfg.URL, "/"), token: tok, hc: &http.Client{Transport: tr},
		lim: lim, log: log.Named("scim-client"), sleep: sleepCtx}, nil
}

// Stats returns the request counters so far.
func (c *Client) Stats() StatsSnapshot {
	return StatsSnapshot{c.stats.requests.Load(), c.stats.writes.Load(), c.stats.retries.Load(), c.stats.throttled.Load()}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// do sends one request with retries: 429 and 503 honour Retry-After; other 5xx and network
// errors back off exponentially with full jitter, capped at 30s.
func (c *Client) do(ctx context.Context, method, path string, body, out any) (http.Header, error) {
	return c.doIf(ctx, method, path, body, out, "")
}

// doIf is do with an optional If-Match header; it returns the success response's headers.
func (c *Client) doIf(ctx context.Context, method, path string, body, out any, ifMatch string) (http.Header, error) {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return nil, fmt.Errorf("scim: encode %s %s: %w", method, path, err)
		}
	}
	for attempt := 0; ; attempt++ {
		if err := c.lim.Wait(ctx); err != nil {
			return nil, fmt.Errorf("scim: %s %s: %w", method, path, err)
		}
		status, hdr, respBody, err := c.once(ctx, method, path, raw, ifMatch)
		if c.observe != nil {
			c.observe(method, status)
		}
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, fmt.Errorf("scim: %s %s: %w", method, path, ctx.Err())
			}
			wait = backoff(attempt)
		case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
			c.stats.throttled.Add(1)
			wait = retryAfter(hdr.Get("Retry-After"), attempt)
		case status >= 500:
			wait = backoff(attempt)
		case status >= 300:
			return nil, apiError(method, path, status, respBody)
		default:
			if out != nil && len(respBody) > 0 {
				dec := json.NewDecoder(bytes.NewReader(respBody))
				dec.UseNumber()
				if err := dec.Decode(out); err != nil {
					return nil, fmt.Errorf("scim: %s %s: decode response: %w", method, path, err)
				}
			}
			return hdr, nil
		}
		if attempt >= c.cfg.MaxRetries {
			if err != nil {
				return nil, fmt.Errorf("scim: %s %s: giving up after %d attempts: %w", method, path, attempt+1, err)
			}
			return nil, apiError(method, path, status, respBody)
		}
		c.stats.retries.Add(1)
		c.log.Warn("retrying", zap.String("method", method), zap.String("path", path), zap.Int("status", status),
			zap.Duration("wait", wait), zap.Int("attempt", attempt+1), zap.Error(err))
		if err := c.sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("scim: %s %s: %w", method, path, err)
		}
	}
}

func (c *Client) once(ctx context.Context, method, path string, body []byte, ifMatch string) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout.D())
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token.Reveal())
	req.Header.Set("Accept", "application/scim+json, application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	c.stats.requests.Add(1)
	if method != http.MethodGet {
		c.stats.writes.Add(1)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, data, nil
}

func backoff(attempt int) time.Duration {
	ceiling := min(500*time.Millisecond<<min(attempt, 10), 30*time.Second)
	return time.Duration(rand.Int64N(int64(ceiling)) + 1)
}

// retryAfter reads seconds or an HTTP date; without one it backs off as for a 5xx. A server
// asking for more than 10 minutes is capped there so a run cannot hang for hours.
func retryAfter(h string, attempt int) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, 10*time.Minute)
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(time.Until(t), 0), 10*time.Minute)
	}
	return backoff(attempt)
}

// apiError decodes a SCIM error body, whose status may be a string or a number.
func apiError(method, path string, status int, body []byte) error {
	var e struct {
		ScimType string `json:"scimType"`
		Detail   string `json:"detail"`
	}
	_ = json.Unmarshal(body, &e)
	return &APIError{Method: method, Path: path, Status: status, ScimType: e.ScimType, Detail: truncateDetail(e.Detail)}
}

func truncateDetail(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
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

// ResourceType is one resource type the target declares in /ResourceTypes.
type ResourceType struct {
	Name       string
	Endpoint   Endpoint
	Schema     string          // the core schema URN
	Extensions map[string]bool // extension URN -> required
}

// Capabilities is what discovery learned about the target.
type Capabilities struct {
	Patch bool // /ServiceProviderConfig patch.supported
	ETag  bool // etag.supported: every write carries If-Match
	// Extensions are the User resource type's extension URNs (all of them known when
	// /ResourceTypes could be read; none otherwise).
	Extensions map[string]bool
	// Groups is the Group resource type, nil when the target declares none.
	Groups *ResourceType
	// Schemas indexes the attributes each schema declares (scim.Index keys: lower-cased URN, and
	// "" for the User core schema); nil when /Schemas could not be read, in which case every
	// attribute of the core schema and of a declared extension counts as declared.
	Schemas scim.Index
}

// Declares reports whether the target declares attribute attr (and sub-attribute sub, when not
// empty) of schema urn ("" or the core URN for core attributes).
func (c Capabilities) Declares(urn, attr, sub string) bool {
	if urn != "" && !scim.IsCoreURN(strings.ToLower(urn)) && !c.Extensions[urn] {
		return false
	}
	if c.Schemas == nil || scim.IsCommonAttribute(urn, attr) {
		return true
	}
	_, a, ok := c.Schemas.Lookup(urn, attr)
	if !ok {
		return false
	}
	if sub == "" || len(a.Subs) == 0 {
		return true
	}
	_, ok = a.Subs[strings.ToLower(sub)]
	return ok
}

// Discover reads /ServiceProviderConfig, /ResourceTypes and /Schemas: whether PATCH and ETags
// work, which resource types and extensions exist, and which attributes each schema declares,
// so nothing undeclared is sent. A target without /ResourceTypes gets core attributes only; one
// without /Schemas is trusted to accept every attribute of what /ResourceTypes declares.
func (c *Client) Discover(ctx context.Context) (Capabilities, error) {
	var spc struct {
		Patch struct {
			Supported bool `json:"supported"`
		} `json:"patch"`
		ETag struct {
			Supported bool `json:"supported"`
		} `json:"etag"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/ServiceProviderConfig", nil, &spc); err != nil {
		return Capabilities{}, err
	}
	caps := Capabilities{Patch: spc.Patch.Supported, ETag: spc.ETag.Supported, Extensions: map[string]bool{}}
	var rts struct {
		Resources []resourceType `json:"Resources"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/ResourceTypes", nil, &rts); err != nil {
		// some targets serve no /ResourceTypes; then only the core schema is sent
		c.log.Warn("no /ResourceTypes; sending core User attributes only", zap.Error(err))
		return caps, nil
	}
	for _, rt := range rts.Resources {
		switch {
		case strings.EqualFold(rt.Name, "User") || rt.Endpoint == string(Users):
			for _, e := range rt.SchemaExtensions {
				caps.Extensions[e.Schema] = true
			}
		case strings.EqualFold(rt.Name, "Group") || rt.Endpoint == string(Groups):
			g := &ResourceType{Name: rt.Name, Endpoint: Endpoint(rt.Endpoint), Schema: rt.Schema, Extensions: map[string]bool{}}
			for _, e := range rt.SchemaExtensions {
				g.Extensions[e.Schema] = e.Required
			}
			caps.Groups = g
		}
	}
	var schemas struct {
		Resources []scim.SchemaDocument `json:"Resources"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/Schemas", nil, &schemas); err != nil {
		c.log.Warn("no /Schemas; trusting /ResourceTypes for which attributes the target accepts", zap.Error(err))
		return caps, nil
	}
	caps.Schemas = scim.IndexDocuments(scim.UserSchema, schemas.Resources)
	return caps, nil
}

type resourceType struct {
	Name             string `json:"name"`
	Endpoint         string `json:"endpoint"`
	Schema           string `json:"schema"`
	SchemaExtensions []struct {
		Schema   string `json:"schema"`
		Required bool   `json:"required"`
	} `json:"schemaExtensions"`
}

// Doc is a SCIM resource as JSON.
type Doc = scim.Doc

type listResponse struct {
	TotalResults int   `json:"totalResults"`
	Resources    []Doc `json:"Resources"`
}

// List pages through every resource of ep, following startIndex until totalResults or an
// empty page.
func (c *Client) List(ctx context.Context, ep Endpoint, fn func(Resource) error) error {
	start := 1
	for {
		var lr listResponse
		path := fmt.Sprintf("%s?startIndex=%d&count=%d", ep, start, c.cfg.PageSize)
		if _, err := c.do(ctx, http.MethodGet, path, nil, &lr); err != nil {
			return err
		}
		for _, d := range lr.Resources {
			if err := fn(Resource{Doc: d, ETag: metaVersion(d)}); err != nil {
				return err
			}
		}
		start += len(lr.Resources)
		if len(lr.Resources) == 0 || start > lr.TotalResults {
			return nil
		}
	}
}

// Find returns the resources of ep whose attr equals value (a `filter=attr eq "value"` query).
func (c *Client) Find(ctx context.Context, ep Endpoint, attr, value string) ([]Resource, error) {
	filter := attr + " eq " + strconv.Quote(value)
	var lr listResponse
	if _, err := c.do(ctx, http.MethodGet, string(ep)+"?filter="+url.QueryEscape(filter), nil, &lr); err != nil {
		return nil, err
	}
	out := make([]Resource, 0, len(lr.Resources))
	for _, d := range lr.Resources {
		out = append(out, Resource{Doc: d, ETag: metaVersion(d)})
	}
	return out, nil
}

// Get reads one resource; a missing one is an *APIError with status 404.
func (c *Client) Get(ctx context.Context, ep Endpoint, id string) (Resource, error) {
	return c.write(ctx, http.MethodGet, ep, id, nil, "")
}

// Create POSTs doc and returns the created resource.
func (c *Client) Create(ctx context.Context, ep Endpoint, doc Doc) (Resource, error) {
	return c.write(ctx, http.MethodPost, ep, "", doc, "")
}

// PatchOp is one RFC 7644 PATCH operation as sent on the wire.
type PatchOp = scim.PatchOp

// Patch applies ops to resource id. ifMatch, when set, is sent as If-Match so a target that
// versions resources refuses the change (412) if the resource moved on since it was read. The
// returned resource is empty when the target answers 204.
func (c *Client) Patch(ctx context.Context, ep Endpoint, id string, ops []PatchOp, ifMatch string) (Resource, error) {
	body := map[string]any{"schemas": []string{scim.PatchOpSchema}, "Operations": ops}
	return c.write(ctx, http.MethodPatch, ep, id, body, ifMatch)
}

// Replace PUTs doc as resource id, for targets without PATCH.
func (c *Client) Replace(ctx context.Context, ep Endpoint, id string, doc Doc, ifMatch string) (Resource, error) {
	return c.write(ctx, http.MethodPut, ep, id, doc, ifMatch)
}

// Delete deletes resource id; a 404 means it is already gone, which is success.
func (c *Client) Delete(ctx context.Context, ep Endpoint, id string, ifMatch string) error {
	_, err := c.write(ctx, http.MethodDelete, ep, id, nil, ifMatch)
	if IsStatus(err, http.StatusNotFound) {
		return nil
	}
	return err
}

func (c *Client) write(ctx context.Context, method string, ep Endpoint, id string, body any, ifMatch string) (Resource, error) {
	path := string(ep)
	if id != "" {
		path += "/" + url.PathEscape(id)
	}
	var out Doc
	hdr, err := c.doIf(ctx, method, path, body, &out, ifMatch)
	if err != nil {
		return Resource{}, err
	}
	res := Resource{Doc: out, ETag: metaVersion(out)}
	if res.ETag == "" && hdr != nil {
		res.ETag = hdr.Get("ETag")
	}
	return res, nil
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
