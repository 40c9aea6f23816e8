package scimclient

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
)

func TestTargetConfigValidate(t *testing.T) {
	ok := DefaultTargetConfig()
	ok.URL, ok.Token = "https://scim.example.org/scim/v2", config.NewSecret("t")
	if ps := ok.Validate(); len(ps) != 0 {
		t.Fatalf("defaults: %v", ps)
	}
	for _, tt := range []struct {
		key string
		mod func(*TargetConfig)
	}{
		{"url", func(c *TargetConfig) { c.URL = "https://user:pw@scim.example.org/scim/v2" }},
		{"url", func(c *TargetConfig) { c.URL = "https://scim.example.org/scim/v2?x=1" }},
		{"url", func(c *TargetConfig) { c.URL = "ftp://scim.example.org" }},
		{"burst", func(c *TargetConfig) { c.Burst = -1 }},
		{"max_retry_after", func(c *TargetConfig) { c.MaxRetryAfter = config.Duration(2 * time.Hour) }},
		{"max_retry_after", func(c *TargetConfig) { c.MaxRetryAfter = config.Duration(time.Millisecond) }},
		{"max_consecutive_failures", func(c *TargetConfig) { c.MaxConsecutiveFailures = -1 }},
		{"page_size", func(c *TargetConfig) { c.PageSize = 0 }},
	} {
		c := ok
		tt.mod(&c)
		ps := c.Validate()
		if len(ps) != 1 || ps[0].Path != tt.key {
			t.Errorf("%s: %v", tt.key, ps)
		}
	}
	// keys added later: zero means the default, so configs built in code keep working
	c := ok
	c.Burst, c.MaxRetryAfter, c.MaxConsecutiveFailures = 0, 0, 0
	cl, err := NewClient(c, zap.NewNop())
	if err != nil || cl.cfg.Burst != 2 || cl.cfg.MaxRetryAfter.D() != time.Minute || cl.cfg.MaxConsecutiveFailures != 10 {
		t.Fatalf("%+v %v", cl.cfg, err)
	}
	c.Token = config.NewSecret("tok\r\nX-Injected: 1")
	if _, err := NewClient(c, zap.NewNop()); err == nil || strings.Contains(err.Error(), "Injected") {
		t.Fatalf("a token with a line break: %v", err)
	}
}

func TestInsecureWarning(t *testing.T) {
	for _, tt := range []struct {
		url      string
		insecure bool
		want     string
	}{
		{"https://scim.example.org/scim/v2", false, ""},
		{"https://scim.example.org/scim/v2", true, "insecure_skip_verify"},
		{"http://scim.example.org/scim/v2", false, "plain http://"},
		{"http://127.0.0.1:8443/scim/v2", false, ""},
		{"http://[::1]:8443/scim/v2", false, ""},
		{"http://localhost/scim/v2", false, ""},
		{"http://127.0.0.1.example.org/scim/v2", false, "plain http://"},
	} {
		c := TargetConfig{URL: tt.url, InsecureSkipVerify: tt.insecure}
		got := c.InsecureWarning()
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("%s insecure=%v: %q", tt.url, tt.insecure, got)
		}
	}
}
