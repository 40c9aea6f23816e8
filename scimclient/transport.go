package scimclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

const (
	// maxResponseBytes bounds a success answer (a page of 200 users is well under 1 MiB); a
	// larger one fails rather than filling memory.
	maxResponseBytes = 32 << 20
	// maxRedirects bounds same-origin redirects per call.
	maxRedirects = 5
)

// request is one HTTP exchange to send: absolute URL, the body already encoded.
type request struct {
	method, url string
	body        []byte
	ifMatch     string
}

// response is a complete, bounded answer.
type response struct {
	status int
	header http.Header
	body   []byte
	url    string // where it came from, after redirects
}

// send performs one call: paced by the governor, retried on throttling, 5xx and network
// errors where a retry cannot duplicate anything, redirected only within the target's
// origin, and stopped by the breaker. name is "METHOD path" for messages. It returns a 2xx
// response or an error whose text is redacted and sanitised.
func (c *Client) send(ctx context.Context, req request, name string) (response, error) {
	if err := c.brk.check(); err != nil {
		return response{}, fmt.Errorf("scim: %s: %w", name, err)
	}
	write := req.method != http.MethodGet
	if write {
		c.stats.writes.Add(1)
	}
	resp, err := c.sendLoop(ctx, req, name)
	if err != nil && write {
		c.stats.failedWrites.Add(1)
	}
	return resp, c.red.Error(err)
}

func (c *Client) sendLoop(ctx context.Context, req request, name string) (response, error) {
	hops, timeouts := 0, 0
	for attempt := 0; ; attempt++ {
		if err := c.brk.check(); err != nil {
			return response{}, fmt.Errorf("scim: %s: %w", name, err)
		}
		if err := c.gov.wait(ctx, c.pause); err != nil {
			if cerr := c.brk.check(); cerr != nil {
				return response{}, fmt.Errorf("scim: %s: %w", name, cerr)
			}
			return response{}, fmt.Errorf("scim: %s: %w", name, err)
		}
		sentAt := c.now()
		resp, wrote, err := c.once(ctx, req)
		if c.observe != nil {
			c.observe(req.method, resp.status)
		}
		var failure error         // why this attempt failed, if it is retried no more
		wait := time.Duration(0)  // slept here before the retry
		shown := time.Duration(0) // the wait the log reports (the governor's pause, or wait)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return response{}, fmt.Errorf("scim: %s: %w", name, ctx.Err())
			}
			failure = fmt.Errorf("scim: %s: %w", name, c.netError(err))
			timeout := isTimeout(err)
			switch {
			case errors.Is(err, errTooLarge) && req.method != http.MethodPost:
				c.brk.failed(failure)
				return response{}, failure
			case wrote && req.method == http.MethodPost:
				// the target may have created the resource: a second POST could duplicate it
				c.brk.failed(failure)
				return response{}, fmt.Errorf("%w; not retried: %w", failure, ErrOutcomeUnknown)
			case timeout && timeouts > 0:
				// a target that timed out twice on one request will not answer a third time
				// within the run's patience: every attempt costs a whole target.timeout
				c.brk.failed(failure)
				return response{}, failure
			}
			if timeout {
				timeouts++
			}
			wait = c.backoff(attempt)
		case resp.status >= 300 && resp.status < 400:
			next, rerr := c.redirect(req, resp, name)
			if rerr != nil {
				c.brk.failed(rerr)
				return response{}, rerr
			}
			if hops++; hops > maxRedirects {
				err := fmt.Errorf("scim: %s: more than %d redirects: %w", name, maxRedirects, ErrRedirectRefused)
				c.brk.failed(err)
				return response{}, err
			}
			c.stats.redirects.Add(1)
			req = next
			attempt-- // following a redirect is not a retry
			continue
		case resp.status == http.StatusTooManyRequests ||
			(resp.status == http.StatusServiceUnavailable && resp.header.Get("Retry-After") != ""):
			c.stats.throttled.Add(1)
			failure = c.apiError(req.method, name, resp)
			ra, named := parseRetryAfter(resp.header.Get("Retry-After"), c.now())
			if named && ra > c.cfg.MaxRetryAfter.D() {
				err := fmt.Errorf("%w: the target answered %s with HTTP %d and asked to wait %s (Retry-After), longer than target.max_retry_after (%s)",
					ErrCircuitOpen, name, resp.status, ra.Round(time.Second), c.cfg.MaxRetryAfter.D())
				c.brk.trip(err)
				return response{}, fmt.Errorf("scim: %s: %w", name, err)
			}
			if !named {
				ra = -1
			}
			// the governor's pause is the wait: every worker honours it together
			shown = c.gov.throttled(sentAt, ra, c.backoff(attempt))
		case resp.status == http.StatusRequestTimeout:
			// the target did not receive the whole request: repeating it is safe, POST included
			failure = c.apiError(req.method, name, resp)
			wait = c.backoff(attempt)
		case resp.status >= 500:
			failure = c.apiError(req.method, name, resp)
			if req.method == http.MethodPost && resp.status != http.StatusServiceUnavailable {
				// a gateway's 502/504, or a 500 after the insert: the create may have happened
				c.brk.failed(failure)
				return response{}, fmt.Errorf("%w; not retried: %w", failure, ErrOutcomeUnknown)
			}
			wait = c.backoff(attempt)
		case resp.status == http.StatusUnauthorized:
			err := fmt.Errorf("%w (%w: the target refused the token)", c.apiError(req.method, name, resp), ErrCircuitOpen)
			c.brk.trip(err)
			return response{}, err
		case resp.status >= 400:
			c.brk.succeeded() // the target is alive; it refused this one request
			return response{}, c.apiError(req.method, name, resp)
		case resp.status < 200:
			err := fmt.Errorf("scim: %s: unexpected HTTP %d", name, resp.status)
			c.brk.failed(err)
			return response{}, err
		default:
			c.brk.succeeded()
			c.gov.succeeded()
			return resp, nil
		}
		if attempt >= c.cfg.MaxRetries {
			c.brk.failed(failure)
			return response{}, fmt.Errorf("giving up after %d attempts: %w", attempt+1, failure)
		}
		c.stats.retries.Add(1)
		c.log.Warn("retrying", zap.String("request", name), zap.Int("status", resp.status),
			zap.Duration("wait", max(wait, shown)), zap.Int("attempt", attempt+1), zap.Error(c.red.Error(failure)))
		if wait > 0 {
			if err := c.pause(ctx, wait); err != nil {
				if cerr := c.brk.check(); cerr != nil {
					return response{}, fmt.Errorf("scim: %s: %w", name, cerr)
				}
				return response{}, fmt.Errorf("scim: %s: %w", name, err)
			}
		}
	}
}

// once sends one HTTP request and reads the whole answer within target.timeout, so a target
// that drips its body costs one timeout, not one per byte. wrote reports whether the request
// reached the target in full (after which a POST must not be repeated).
func (c *Client) once(ctx context.Context, req request) (resp response, wrote bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout.D())
	defer cancel()
	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) { sent.Store(info.Err == nil) },
	})
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hreq, err := http.NewRequestWithContext(ctx, req.method, req.url, body)
	if err != nil {
		return response{}, false, err
	}
	hreq.Header.Set("Authorization", "Bearer "+c.token.Reveal())
	hreq.Header.Set("Accept", "application/scim+json, application/json")
	if req.body != nil {
		hreq.Header.Set("Content-Type", "application/scim+json")
	}
	if req.ifMatch != "" {
		hreq.Header.Set("If-Match", req.ifMatch)
	}
	c.stats.requests.Add(1)
	hresp, err := c.hc.Do(hreq)
	if err != nil {
		return response{}, sent.Load(), err
	}
	defer hresp.Body.Close()
	limit := int64(maxResponseBytes)
	if hresp.StatusCode >= 300 {
		limit = maxErrorBody // only the start of an error is shown
	}
	data, err := io.ReadAll(io.LimitReader(hresp.Body, limit+1))
	resp = response{status: hresp.StatusCode, header: hresp.Header, url: req.url}
	if err != nil {
		return resp, true, fmt.Errorf("read the answer to %s: %w", req.method, err)
	}
	if int64(len(data)) > limit {
		if hresp.StatusCode < 300 {
			return resp, true, fmt.Errorf("%w: answer larger than %d bytes", errTooLarge, limit)
		}
		data = data[:limit]
	}
	resp.body = data
	return resp, true, nil
}

// errTooLarge marks an answer over maxResponseBytes; retrying would read it again.
var errTooLarge = errors.New("response too large")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// netError rewords a per-attempt deadline so the message names the setting that bounds it.
func (c *Client) netError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no complete answer within target.timeout (%s): %w", c.cfg.Timeout.D(), err)
	}
	return err
}

// backoff is the wait before retrying a 5xx or a network error: exponential with full jitter,
// never above target.max_retry_after.
func (c *Client) backoff(attempt int) time.Duration {
	ceiling := min(500*time.Millisecond<<min(attempt, 10), 30*time.Second, c.cfg.MaxRetryAfter.D())
	return time.Duration(rand.Int64N(int64(ceiling)) + 1)
}

// pause sleeps d, waking early when ctx ends or the breaker opens.
func (c *Client) pause(ctx context.Context, d time.Duration) error {
	return c.sleep(ctx, d)
}

func (c *Client) sleepInterruptible(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.brk.done:
		return c.brk.check()
	case <-t.C:
		return nil
	}
}

// redirect decides whether a 3xx answer to req is followed, and how. Only the target's own
// origin (scheme, host and port of target.url) ever receives the bearer token: a redirect
// anywhere else is refused, not followed without the header, so a moved target is noticed
// and fixed in target.url rather than silently half-working.
func (c *Client) redirect(req request, resp response, name string) (request, error) {
	loc := resp.header.Get("Location")
	if loc == "" {
		return request{}, fmt.Errorf("scim: %s: HTTP %d without a Location: %w", name, resp.status, ErrRedirectRefused)
	}
	next, err := c.resolve(req.url, loc)
	if err != nil {
		err = fmt.Errorf("scim: %s: HTTP %d: %w: %w", name, resp.status, ErrRedirectRefused, err)
		if resp.status == http.StatusSeeOther && req.method == http.MethodPost {
			// a 303 answers a POST that was processed: the resource exists, somewhere
			err = fmt.Errorf("%w (%w)", err, ErrOutcomeUnknown)
		}
		return request{}, err
	}
	switch resp.status {
	case http.StatusSeeOther:
		return request{method: http.MethodGet, url: next}, nil
	case http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return request{method: req.method, url: next, body: req.body, ifMatch: req.ifMatch}, nil
	case http.StatusMovedPermanently, http.StatusFound:
		if req.method == http.MethodGet {
			return request{method: http.MethodGet, url: next}, nil
		}
		return request{}, fmt.Errorf("scim: %s: HTTP %d moves a %s, which may not be repeated as the same request: %w (update target.url)",
			name, resp.status, req.method, ErrRedirectRefused)
	}
	return request{}, fmt.Errorf("scim: %s: HTTP %d is not a redirect the client follows: %w", name, resp.status, ErrRedirectRefused)
}

// resolve makes loc (from the target) absolute against from and checks that it stays on the
// target's origin.
func (c *Client) resolve(from, loc string) (string, error) {
	base, err := url.Parse(from)
	if err != nil {
		return "", err
	}
	ref, err := url.Parse(strings.TrimSpace(loc))
	if err != nil {
		return "", fmt.Errorf("unreadable Location %q", c.text(loc, MaxTextLen))
	}
	u := base.ResolveReference(ref)
	if u.User != nil {
		return "", fmt.Errorf("the Location carries credentials; not following it")
	}
	if !sameOrigin(c.origin, u) {
		return "", fmt.Errorf("the target sent us to %s, another origin than %s; the bearer token is only ever sent to target.url's origin",
			c.text(originOf(u), MaxTextLen), originOf(c.origin))
	}
	if !belowBase(c.origin.Path, u.Path) {
		return "", fmt.Errorf("the target sent us to %s, outside target.url's path %s; the bearer token is only ever sent below it (another application may share the origin)",
			c.text(u.Path, MaxTextLen), c.origin.Path)
	}
	return u.String(), nil
}

// belowBase reports whether p (decoded) is base or below it once dot segments are resolved,
// including those spelled %2e%2e or with %2f, which some servers decode before routing.
func belowBase(base, p string) bool {
	if base = path.Clean("/" + base); base == "/" {
		return true
	}
	p = path.Clean("/" + p)
	return p == base || strings.HasPrefix(p, base+"/")
}

func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && portOf(a) == portOf(b)
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

func originOf(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + u.Host
}

// apiError builds the error for a non-success answer, with the target's text redacted first
// (so a secret cannot be cut in half by the length bound), then sanitised and bounded.
func (c *Client) apiError(method, name string, resp response) error {
	scimType, detail := parseErrorBody(resp.body)
	path := strings.TrimPrefix(name, method+" ")
	return &APIError{Method: method, Path: path, Status: resp.status,
		ScimType: c.text(scimType, 64), Detail: c.text(detail, MaxTextLen)}
}

// text makes target-provided text safe: redacted, one clean line, redacted again (in case the
// cleaning joined a secret the target had split with escape codes), stripped of a start of a
// secret it ends with (a target that cut its echo of the token short), and only then bounded.
// Bounding first would cut a secret into a prefix the redactor no longer recognises.
func (c *Client) text(s string, maxLen int) string {
	return bound(c.red.MaskTail(c.red.Redact(clean(c.red.Redact(s)))), maxLen)
}
