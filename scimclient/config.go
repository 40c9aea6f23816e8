package scimclient

import (
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/scimsync/scimsync/config"
)

// TargetConfig is the `target:` section: the SCIM endpoint the sync writes to.
type TargetConfig struct {
	URL                string          `yaml:"url"`
	Token              config.Secret   `yaml:"token"`
	TokenFile          string          `yaml:"token_file"`
	Profile            string          `yaml:"profile"`
	CAFile             string          `yaml:"ca_file"`
	InsecureSkipVerify bool            `yaml:"insecure_skip_verify"`
	Timeout            config.Duration `yaml:"timeout"`             // per request attempt, body included
	Concurrency        int             `yaml:"concurrency"`         // writes in flight
	RequestsPerSecond  float64         `yaml:"requests_per_second"` // 0 = unlimited until the target throttles
	Burst              int             `yaml:"burst"`               // requests allowed at once above the rate; 0 = default
	MaxRetries         int             `yaml:"max_retries"`
	PageSize           int             `yaml:"page_size"`
	// MaxRetryAfter is the longest Retry-After the client honours. A target that asks for a
	// longer wait is treated as unavailable: the run stops (ErrCircuitOpen) rather than sleep
	// through the next schedule or retry earlier than it was asked to.
	MaxRetryAfter config.Duration `yaml:"max_retry_after"`
	// MaxConsecutiveFailures is how many calls in a row may fail for a reason that is not the
	// request's own (5xx, timeouts, network, throttling that outlasts the retries) before the
	// client refuses every further call for the rest of the run (ErrCircuitOpen). 0 means the
	// default.
	MaxConsecutiveFailures int `yaml:"max_consecutive_failures"`
}

// withDefaults fills the keys added after the first release whose zero value means "default",
// so a TargetConfig built in code before they existed keeps working.
func (c TargetConfig) withDefaults() TargetConfig {
	d := DefaultTargetConfig()
	if c.Burst == 0 {
		c.Burst = d.Burst
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = d.MaxRetryAfter
	}
	if c.MaxConsecutiveFailures == 0 {
		c.MaxConsecutiveFailures = d.MaxConsecutiveFailures
	}
	return c
}

// DefaultTargetConfig is the section's defaults.
func DefaultTargetConfig() TargetConfig {
	return TargetConfig{Profile: "generic", Timeout: config.Duration(30 * time.Second), Concurrency: 4,
		RequestsPerSecond: 20, Burst: 2, MaxRetries: 5, PageSize: 200,
		MaxRetryAfter: config.Duration(time.Minute), MaxConsecutiveFailures: 10}
}

// Validate reports every problem in the section.
func (c TargetConfig) Validate() config.Problems {
	var ps config.Problems
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		ps.Add("url", "want the SCIM base URL, e.g. https://app.example.com/scim/v2")
	case u.User != nil:
		ps.Add("url", "must not carry credentials: they would be sent to every redirect and printed in errors; use token or token_file")
	case u.RawQuery != "" || u.Fragment != "":
		ps.Add("url", "must be the SCIM base URL without a query or fragment")
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
	if c.Burst < 0 || c.Burst > 1000 {
		ps.Add("burst", "must be between 1 and 1000 (0 for the default, 2)")
	}
	if c.MaxRetries < 0 || c.MaxRetries > 20 {
		ps.Add("max_retries", "must be between 0 and 20")
	}
	if c.PageSize < 1 || c.PageSize > 10000 {
		ps.Add("page_size", "must be between 1 and 10000")
	}
	if d := c.MaxRetryAfter.D(); d != 0 && (d < time.Second || d > time.Hour) {
		ps.Add("max_retry_after", "must be between 1s and 1h (0 for the default, 1m)")
	}
	if c.MaxConsecutiveFailures < 0 || c.MaxConsecutiveFailures > 10000 {
		ps.Add("max_consecutive_failures", "must be between 1 and 10000 (0 for the default, 10)")
	}
	return ps
}

// InsecureWarning says what protection of the bearer token is off, for the caller to log once;
// "" when none.
func (c TargetConfig) InsecureWarning() string {
	u, err := url.Parse(c.URL)
	if err != nil {
		return ""
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return "target.url is plain http:// to a host that is not loopback: the bearer token and every user's data cross the network in clear"
	}
	if u.Scheme == "https" && c.InsecureSkipVerify {
		return "target.insecure_skip_verify is on: the target's TLS certificate is NOT verified, so anyone on the path can receive the bearer token"
	}
	return ""
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
