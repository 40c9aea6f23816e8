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

// Capabilities is what discovery learned about the target.
type Capabilities struct {
	Patch      bool
	Extensions map[string]bool // schema URNs the User resource type declares
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
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return fmt.Errorf("scim: encode %s %s: %w", method, path, err)
		}
	}
	for attempt := 0; ; attempt++ {
		if err := c.lim.Wait(ctx); err != nil {
			return fmt.Errorf("scim: %s %s: %w", method, path, err)
		}
		status, hdr, respBody, err := c.once(ctx, method, path, raw)
		if c.observe != nil {
			c.observe(method, status)
		}
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return fmt.Errorf("scim: %s %s: %w", method, path, ctx.Err())
			}
			wait = backoff(attempt)
		case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
			c.stats.throttled.Add(1)
			wait = retryAfter(hdr.Get("Retry-After"), attempt)
		case status >= 500:
			wait = backoff(attempt)
		case status >= 300:
			return apiError(method, path, status, respBody)
		default:
			if out != nil && len(respBody) > 0 {
				dec := json.NewDecoder(bytes.NewReader(respBody))
				dec.UseNumber()
				if err := dec.Decode(out); err != nil {
					return fmt.Errorf("scim: %s %s: decode response: %w", method, path, err)
				}
			}
			return nil
		}
		if attempt >= c.cfg.MaxRetries {
			if err != nil {
				return fmt.Errorf("scim: %s %s: giving up after %d attempts: %w", method, path, attempt+1, err)
			}
			return apiError(method, path, status, respBody)
		}
		c.stats.retries.Add(1)
		c.log.Warn("retrying", zap.String("method", method), zap.String("path", path), zap.Int("status", status),
			zap.Duration("wait", wait), zap.Int("attempt", attempt+1), zap.Error(err))
		if err := c.sleep(ctx, wait); err != nil {
			return fmt.Errorf("scim: %s %s: %w", method, path, err)
		}
	}
}

func (c *Client) once(ctx context.Context, method, path string, body []byte) (int, http.Header, []byte, error) {
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

// Discover reads /ServiceProviderConfig and /ResourceTypes: whether PATCH works and which
// User extensions the target declares, so nothing undeclared is sent.
func (c *Client) Discover(ctx context.Context) (Capabilities, error) {
	var spc struct {
		Patch struct {
			Supported bool `json:"supported"`
		} `json:"patch"`
	}
	if err := c.do(ctx, http.MethodGet, "/ServiceProviderConfig", nil, &spc); err != nil {
		return Capabilities{}, err
	}
	caps := Capabilities{Patch: spc.Patch.Supported, Extensions: map[string]bool{}}
	var rts struct {
		Resources []resourceType `json:"Resources"`
	}
	err := c.do(ctx, http.MethodGet, "/ResourceTypes", nil, &rts)
	if err != nil {
		// some targets serve no /ResourceTypes; then only the core schema is sent
		c.log.Warn("no /ResourceTypes; sending core User attributes only", zap.Error(err))
		return caps, nil
	}
	for _, rt := range rts.Resources {
		if rt.Name == "User" || rt.Endpoint == "/Users" {
			for _, e := range rt.SchemaExtensions {
				caps.Extensions[e.Schema] = true
			}
		}
	}
	return caps, nil
}

type resourceType struct {
	Name             string `json:"name"`
	Endpoint         string `json:"endpoint"`
	SchemaExtensions []struct {
		Schema string `json:"schema"`
	} `json:"schemaExtensions"`
}

// Doc is a SCIM resource as JSON.
type Doc = scim.Doc

type listResponse struct {
	TotalResults int   `json:"totalResults"`
	Resources    []Doc `json:"Resources"`
}

// ListUsers pages through every user, following startIndex until totalResults or an empty page.
func (c *Client) ListUsers(ctx context.Context, fn func(Doc) error) error {
	start := 1
	for {
		var lr listResponse
		path := fmt.Sprintf("/Users?startIndex=%d&count=%d", start, c.cfg.PageSize)
		if err := c.do(ctx, http.MethodGet, path, nil, &lr); err != nil {
			return err
		}
		for _, d := range lr.Resources {
			if err := fn(d); err != nil {
				return err
			}
		}
		start += len(lr.Resources)
		if len(lr.Resources) == 0 || start > lr.TotalResults {
			return nil
		}
	}
}

// FindUser looks a user up by externalId, then by userName; nil when neither matches.
func (c *Client) FindUser(ctx context.Context, externalID, userName string) (Doc, error) {
	for _, f := range []struct{ attr, value string }{{"externalId", externalID}, {"userName", userName}} {
		if f.value == "" {
			continue
		}
		filter := f.attr + " eq " + strconv.Quote(f.value)
		var lr listResponse
		if err := c.do(ctx, http.MethodGet, "/Users?filter="+url.QueryEscape(filter), nil, &lr); err != nil {
			return nil, err
		}
		if len(lr.Resources) > 0 {
			return lr.Resources[0], nil
		}
	}
	return nil, nil
}

// CreateUser POSTs doc and returns the created resource.
func (c *Client) CreateUser(ctx context.Context, doc Doc) (Doc, error) {
	var out Doc
	err := c.do(ctx, http.MethodPost, "/Users", doc, &out)
	return out, err
}

// PatchOp is one RFC 7644 PATCH operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path,omitempty"`
	Value any    `json:"value,omitempty"`
}

// PatchUser applies ops to user id.
func (c *Client) PatchUser(ctx context.Context, id string, ops []PatchOp) error {
	body := map[string]any{"schemas": []string{scim.PatchOpSchema}, "Operations": ops}
	return c.do(ctx, http.MethodPatch, "/Users/"+url.PathEscape(id), body, nil)
}

// ReplaceUser PUTs doc as user id, for targets without PATCH.
func (c *Client) ReplaceUser(ctx context.Context, id string, doc Doc) error {
	return c.do(ctx, http.MethodPut, "/Users/"+url.PathEscape(id), doc, nil)
}

// DeleteUser deletes user id; a 404 means it is already gone, which is success.
func (c *Client) DeleteUser(ctx context.Context, id string) error {
	err := c.do(ctx, http.MethodDelete, "/Users/"+url.PathEscape(id), nil, nil)
	if IsStatus(err, http.StatusNotFound) {
		return nil
	}
	return err
}
