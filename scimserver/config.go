package scimserver

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/scimsync/scimsync/config"
)

// ServerConfig is the `server:` section: the SCIM endpoint identity providers provision into.
//
// Every limit is checked before the request is parsed further or any lock is taken, and a
// request over one gets 400 or 413 with the limit's key in the detail. The defaults admit what
// Okta and Entra send to a 100,000-user tenant; see README "Limits".
type ServerConfig struct {
	Listen      string        `yaml:"listen"`
	BaseURL     string        `yaml:"base_url"` // public URL of /scim/v2, for meta.location and Location
	Tokens      []TokenConfig `yaml:"tokens"`
	TLSCertFile string        `yaml:"tls_cert_file"`
	TLSKeyFile  string        `yaml:"tls_key_file"`
	// Password says what happens to a User's password: discard (default) or hash.
	Password string `yaml:"password"`

	MaxResults            int   `yaml:"max_results"`              // page size cap for list requests
	MaxBodyBytes          int64 `yaml:"max_body_bytes"`           // larger request bodies get 413 (users, everything but groups)
	MaxGroupBodyBytes     int64 `yaml:"max_group_body_bytes"`     // … for POST/PUT/PATCH of a Group, which can carry many members
	MaxFilterLength       int   `yaml:"max_filter_length"`        // bytes in ?filter= (and in a PATCH path)
	MaxFilterDepth        int   `yaml:"max_filter_depth"`         // nesting of parentheses, not and [ ]
	MaxFilterTerms        int   `yaml:"max_filter_terms"`         // comparisons in one filter
	MaxPatchOperations    int   `yaml:"max_patch_operations"`     // operations in one PATCH
	MaxValuesPerAttribute int   `yaml:"max_values_per_attribute"` // elements of one multi-valued User attribute
	MaxMembersPerRequest  int   `yaml:"max_members_per_request"`  // members named in one Group POST/PUT/PATCH
	MaxGroupMembers       int   `yaml:"max_group_members"`        // members of one group
	MaxResources          int   `yaml:"max_resources"`            // users and groups stored, in total
	MaxResourcesPerToken  int   `yaml:"max_resources_per_token"`  // users and groups created through one token
	// MaxPatchMemberWork bounds the work of one PATCH's member operations while it holds the
	// group, in member visits: a set-form add or remove, or a members[value eq "id"]
	// operation, costs about one pass over the group or less; any other filter on members,
	// or members.<attribute>, costs one pass per operation.
	MaxPatchMemberWork int64 `yaml:"max_patch_member_work"`
}

// TokenConfig is one named bearer token, so logs say which IdP did what.
type TokenConfig struct {
	Name      string        `yaml:"name"`
	Token     config.Secret `yaml:"token"`
	TokenFile string        `yaml:"token_file"`
}

// Password handling modes.
const (
	PasswordDiscard = "discard"
	PasswordHash    = "hash"
)

// DefaultServerConfig is the server section's defaults.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		Listen:   "127.0.0.1:8443",
		Password: PasswordDiscard,

		MaxResults:        200,
		MaxBodyBytes:      1 << 20,
		MaxGroupBodyBytes: 16 << 20, // 100,000 members with display names are about 8 MiB
		MaxFilterLength:   4096,
		MaxFilterDepth:    16,
		MaxFilterTerms:    64,
		// Entra sends one operation per changed attribute, Okta a handful; member changes come
		// as one operation with many values, or one per member from some clients.
		MaxPatchOperations:    1000,
		MaxValuesPerAttribute: 1000,
		MaxMembersPerRequest:  100_000,
		MaxGroupMembers:       200_000,
		MaxResources:          500_000,
		MaxResourcesPerToken:  250_000,
		MaxPatchMemberWork:    10_000_000,
	}
}

// Validate reports every problem in the section, with key paths relative to it.
func (c ServerConfig) Validate() config.Problems {
	var ps config.Problems
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		ps.Add("listen", "want host:port, got %q", c.Listen)
	}
	if len(c.Tokens) == 0 {
		ps.Add("tokens", "at least one bearer token is required; the server never runs unauthenticated")
	}
	names := map[string]bool{}
	for i, t := range c.Tokens {
		p := fmt.Sprintf("tokens[%d]", i)
		if t.Name == "" {
			ps.Add(p+".name", "every token needs a name (it is what the logs show)")
		} else if names[t.Name] {
			ps.Add(p+".name", "duplicate token name %q", t.Name)
		}
		names[t.Name] = true
		if t.Token.IsZero() && t.TokenFile == "" {
			ps.Add(p+".token", "set token or token_file")
		}
		if !t.Token.IsZero() && t.TokenFile != "" {
			ps.Add(p+".token_file", "set token or token_file, not both")
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		ps.Add("tls_cert_file", "tls_cert_file and tls_key_file go together")
	}
	switch c.Password {
	case PasswordDiscard, PasswordHash:
	default:
		ps.Add("password", "must be discard or hash, got %q", c.Password)
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			ps.Add("base_url", "must be an absolute http(s) URL without query, like https://scim.example.org/scim/v2")
		}
	}
	positive := []struct {
		key string
		v   int64
		min int64
	}{
		{"max_results", int64(c.MaxResults), 1},
		{"max_body_bytes", c.MaxBodyBytes, 1024},
		{"max_group_body_bytes", c.MaxGroupBodyBytes, 1024},
		{"max_filter_length", int64(c.MaxFilterLength), 64},
		{"max_filter_depth", int64(c.MaxFilterDepth), 1},
		{"max_filter_terms", int64(c.MaxFilterTerms), 1},
		{"max_patch_operations", int64(c.MaxPatchOperations), 1},
		{"max_values_per_attribute", int64(c.MaxValuesPerAttribute), 1},
		{"max_members_per_request", int64(c.MaxMembersPerRequest), 1},
		{"max_group_members", int64(c.MaxGroupMembers), 1},
		{"max_resources", int64(c.MaxResources), 1},
		{"max_resources_per_token", int64(c.MaxResourcesPerToken), 1},
	}
	for _, p := range positive {
		if p.v < p.min {
			ps.Add(p.key, "must be at least %d, got %d", p.min, p.v)
		}
	}
	// a set-form add of k members to a group of n costs k lookups and a merge pass of n + k
	if need := int64(c.MaxGroupMembers) + 2*int64(c.MaxMembersPerRequest); c.MaxPatchMemberWork < need {
		ps.Add("max_patch_member_work", "must be at least max_group_members + 2 × max_members_per_request (%d), so that one request adding the most members it may name to the largest group fits", need)
	}
	if c.MaxGroupBodyBytes > 0 && c.MaxGroupBodyBytes < c.MaxBodyBytes {
		ps.Add("max_group_body_bytes", "must not be below max_body_bytes (%d)", c.MaxBodyBytes)
	}
	return ps
}

// InsecureWarning says what protection of the identity providers' tokens is off, for the
// caller to log once; "" when none. Plain HTTP on an address other than loopback sends every
// bearer token, user attribute and password an IdP provisions across the network in clear.
func (c ServerConfig) InsecureWarning() string {
	host, _, err := net.SplitHostPort(c.Listen)
	if c.TLSCertFile != "" || err != nil || config.LoopbackHost(host) {
		return ""
	}
	return "the SCIM server serves plain HTTP on an address other than loopback: identity providers' bearer tokens, and the users and passwords they provision, cross the network in clear; set server.tls_cert_file and server.tls_key_file, or listen on 127.0.0.1 behind a TLS proxy"
}

// baseFromListen is the public base URL when base_url is unset: the scheme the server speaks
// and the address it listens on, never the request's Host header (which the client chooses).
// An unspecified host (0.0.0.0, ::) becomes the machine's host name.
func baseFromListen(addr string, tls bool, hostname func() (string, error)) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if h, err := hostname(); err == nil && h != "" {
			host = h
		} else {
			host = "localhost"
		}
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(strings.Trim(host, "[]"), port) + "/scim/v2"
}
