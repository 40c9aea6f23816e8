// Package ldap reads users from a directory: dial, TLS, bind and paged search over go-ldap, or
// an LDIF file for offline previews and the demo. Entries come out streamed, one at a time.
package ldap

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/scimsync/scimsync/config"
)

// Config is the `ldap:` section.
type Config struct {
	URL                string          `yaml:"url"` // ldap://, ldaps:// or file:///path.ldif
	StartTLS           bool            `yaml:"start_tls"`
	CAFile             string          `yaml:"ca_file"`
	InsecureSkipVerify bool            `yaml:"insecure_skip_verify"`
	BindDN             string          `yaml:"bind_dn"`
	BindPassword       config.Secret   `yaml:"bind_password"`
	BindPasswordFile   string          `yaml:"bind_password_file"`
	BaseDN             string          `yaml:"base_dn"`
	UserFilter         string          `yaml:"user_filter"`
	Scope              string          `yaml:"scope"` // sub | one | base
	PageSize           int             `yaml:"page_size"`
	DialTimeout        config.Duration `yaml:"dial_timeout"`
	RequestTimeout     config.Duration `yaml:"request_timeout"`
	IDAttribute        string          `yaml:"id_attribute"` // entryUUID | objectGUID | ipaUniqueID | …
}

// DefaultConfig is the section's defaults.
func DefaultConfig() Config {
	return Config{
		UserFilter: "(objectClass=inetOrgPerson)", Scope: "sub", PageSize: 500,
		DialTimeout: config.Duration(10 * time.Second), RequestTimeout: config.Duration(2 * time.Minute),
		IDAttribute: "entryUUID",
	}
}

func (c Config) isFile() bool { return strings.HasPrefix(c.URL, "file://") }

// Validate reports every problem in the section.
func (c Config) Validate() config.Problems {
	var ps config.Problems
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		ps.Add("url", "required (ldap://host:389, ldaps://host:636 or file:///path/to/export.ldif)")
	case err != nil:
		ps.Add("url", "not a URL: %v", err)
	case u.Scheme != "ldap" && u.Scheme != "ldaps" && u.Scheme != "file":
		ps.Add("url", "scheme must be ldap, ldaps or file, got %q", u.Scheme)
	case u.Scheme == "ldaps" && c.StartTLS:
		ps.Add("start_tls", "ldaps:// is already TLS; start_tls goes with ldap://")
	}
	if !c.isFile() {
		if c.BindDN != "" {
			if _, err := goldap.ParseDN(c.BindDN); err != nil {
				ps.Add("bind_dn", "not a DN: %v", err)
			}
			if c.BindPassword.IsZero() && c.BindPasswordFile == "" {
				ps.Add("bind_password", "bind_dn is set: give bind_password or bind_password_file")
			}
		}
		if !c.BindPassword.IsZero() && c.BindPasswordFile != "" {
			ps.Add("bind_password_file", "set bind_password or bind_password_file, not both")
		}
		if c.BaseDN == "" {
			ps.Add("base_dn", "required")
		}
	}
	if c.BaseDN != "" {
		if _, err := goldap.ParseDN(c.BaseDN); err != nil {
			ps.Add("base_dn", "not a DN: %v", err)
		}
	}
	if _, err := goldap.CompileFilter(c.UserFilter); err != nil {
		ps.Add("user_filter", "not an LDAP filter: %v", err)
	}
	if _, ok := scopes[c.Scope]; !ok {
		ps.Add("scope", "must be sub, one or base, got %q", c.Scope)
	}
	if c.PageSize < 1 || c.PageSize > 100000 {
		ps.Add("page_size", "must be between 1 and 100000")
	}
	if c.IDAttribute == "" {
		ps.Add("id_attribute", "required (entryUUID on OpenLDAP, objectGUID on AD, ipaUniqueID on FreeIPA)")
	}
	if c.CAFile != "" {
		if _, err := os.Stat(c.CAFile); err != nil {
			ps.Add("ca_file", "%v", err)
		}
	}
	return ps
}

var scopes = map[string]int{"sub": goldap.ScopeWholeSubtree, "one": goldap.ScopeSingleLevel, "base": goldap.ScopeBaseObject}

// Entry is one directory user: its DN, its stable id and its attributes (names lower-cased).
type Entry struct {
	DN    string
	ID    string
	Attrs map[string][]string
}

// First returns the first value of attr, or "".
func (e Entry) First(attr string) string {
	if v := e.Attrs[strings.ToLower(attr)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// ErrPartial means the directory returned fewer entries than exist (a size or time limit, a
// dropped connection): the sync must not treat the missing ones as deleted.
var ErrPartial = errors.New("ldap: the directory returned a partial result")

// Source streams users.
type Source interface {
	Users(ctx context.Context, attrs []string, fn func(Entry) error) error
}

// Client reads users from a directory server or an LDIF file.
type Client struct {
	cfg      Config
	password config.Secret
	tls      *tls.Config
}

var _ Source = (*Client)(nil)

// New validates cfg and resolves the bind password. It does not connect.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate().Err(); err != nil {
		return nil, err
	}
	pw, err := config.ResolveSecret(cfg.BindPassword, cfg.BindPasswordFile)
	if err != nil {
		return nil, fmt.Errorf("ldap: bind password: %w", err)
	}
	c := &Client{cfg: cfg, password: pw}
	if !cfg.isFile() {
		if c.tls, err = tlsConfig(cfg); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// InsecureWarning says what verification is off, for the caller to log once; "" when none.
func (c *Client) InsecureWarning() string {
	if c.cfg.InsecureSkipVerify {
		return "ldap.insecure_skip_verify is on: the directory's TLS certificate is NOT verified"
	}
	if strings.HasPrefix(c.cfg.URL, "ldap://") && !c.cfg.StartTLS && !isLoopback(c.cfg.URL) {
		return "ldap.url is plain ldap:// without start_tls: the bind password crosses the network in clear"
	}
	return ""
}

func isLoopback(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	ip := net.ParseIP(u.Hostname())
	return u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback())
}

func tlsConfig(cfg Config) (*tls.Config, error) {
	u, _ := url.Parse(cfg.URL)
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname(), InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // opt-in, warned
	if cfg.CAFile != "" {
		pool, err := config.CertPool(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ldap: %w", err)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// connect dials, upgrades and binds. The caller closes the connection.
func (c *Client) connect(ctx context.Context) (*goldap.Conn, error) {
	dialer := &net.Dialer{Timeout: c.cfg.DialTimeout.D(), KeepAlive: 30 * time.Second}
	if dl, ok := ctx.Deadline(); ok {
		dialer.Deadline = dl
	}
	conn, err := goldap.DialURL(c.cfg.URL, goldap.DialWithDialer(dialer), goldap.DialWithTLSConfig(c.tls))
	if err != nil {
		return nil, fmt.Errorf("ldap: dial %s: %w", c.cfg.URL, err)
	}
	if c.cfg.StartTLS {
		if err := conn.StartTLS(c.tls); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("ldap: starttls %s: %w", c.cfg.URL, err)
		}
	}
	conn.SetTimeout(c.cfg.RequestTimeout.D())
	if c.cfg.BindDN != "" {
		// never log or wrap the request: it holds the password
		if err := conn.Bind(c.cfg.BindDN, c.password.Reveal()); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("ldap: bind as %q: %w", c.cfg.BindDN, err)
		}
	}
	return conn, nil
}

// Users streams every entry under base_dn matching user_filter, page by page, to fn. It
// returns ErrPartial (wrapped) when the directory stopped early, and ctx.Err() when cancelled:
// both mean "do not deprovision anything on the strength of this read".
func (c *Client) Users(ctx context.Context, attrs []string, fn func(Entry) error) error {
	if c.cfg.isFile() {
		return c.usersFromFile(ctx, fn)
	}
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	want := withID(attrs, c.cfg.IDAttribute)
	paging := goldap.NewControlPaging(uint32(c.cfg.PageSize))
	for {
		// a fresh request per page: go-ldap mutates requests, and a reused one loses entries
		req := goldap.NewSearchRequest(c.cfg.BaseDN, scopes[c.cfg.Scope], goldap.NeverDerefAliases, 0, 0, false,
			c.cfg.UserFilter, want, []goldap.Control{paging})
		res := conn.SearchAsync(ctx, req, c.cfg.PageSize)
		var cookie []byte
		var cbErr error
		for res.Next() {
			if e := res.Entry(); e != nil {
				if cbErr == nil {
					cbErr = fn(c.toEntry(e))
				}
				continue
			}
			if ctrl, ok := goldap.FindControl(res.Controls(), goldap.ControlTypePaging).(*goldap.ControlPaging); ok {
				cookie = ctrl.Cookie
			}
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ldap: search %q: %w", c.cfg.BaseDN, err) // SearchAsync reports nil on cancel
		}
		if err := res.Err(); err != nil {
			if goldap.IsErrorAnyOf(err, goldap.LDAPResultSizeLimitExceeded, goldap.LDAPResultTimeLimitExceeded,
				goldap.LDAPResultAdminLimitExceeded, goldap.ErrorNetwork) {
				return fmt.Errorf("ldap: search %q: %w: %w", c.cfg.BaseDN, ErrPartial, err)
			}
			return fmt.Errorf("ldap: search %q: %w", c.cfg.BaseDN, err)
		}
		if cbErr != nil {
			return cbErr
		}
		if len(cookie) == 0 {
			return nil
		}
		paging.SetCookie(cookie)
	}
}

// Check binds and reads one page, for `scimsync check`.
func (c *Client) Check(ctx context.Context) (int, error) {
	if c.cfg.isFile() {
		n := 0
		err := c.usersFromFile(ctx, func(Entry) error { n++; return nil })
		return n, err
	}
	conn, err := c.connect(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	req := goldap.NewSearchRequest(c.cfg.BaseDN, scopes[c.cfg.Scope], goldap.NeverDerefAliases, 0, 0, false,
		c.cfg.UserFilter, []string{c.cfg.IDAttribute}, []goldap.Control{goldap.NewControlPaging(uint32(c.cfg.PageSize))})
	res, err := conn.Search(req)
	if err != nil {
		return 0, fmt.Errorf("ldap: search %q: %w", c.cfg.BaseDN, err)
	}
	return len(res.Entries), nil
}

func withID(attrs []string, id string) []string {
	for _, a := range attrs {
		if strings.EqualFold(a, id) {
			return attrs
		}
	}
	return append(append([]string(nil), attrs...), id)
}

func (c *Client) toEntry(e *goldap.Entry) Entry {
	out := Entry{DN: e.DN, Attrs: make(map[string][]string, len(e.Attributes))}
	for _, a := range e.Attributes {
		out.Attrs[strings.ToLower(a.Name)] = a.Values
	}
	if strings.EqualFold(c.cfg.IDAttribute, "objectGUID") {
		if raw := e.GetRawAttributeValue(c.cfg.IDAttribute); len(raw) == 16 {
			out.ID = GUIDString(raw)
		}
		out.Attrs["objectguid"] = []string{out.ID}
	} else {
		out.ID = e.GetEqualFoldAttributeValue(c.cfg.IDAttribute)
	}
	return out
}

// GUIDString renders AD's 16-byte objectGUID in its canonical form; the first three fields are
// little-endian, so uuid.FromBytes would print a different id than AD tools show.
func GUIDString(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}

// EscapeFilter escapes a value for use inside a filter, exactly once.
func EscapeFilter(v string) string { return goldap.EscapeFilter(v) }

// ParseDN parses a DN, so callers compare DNs normalised rather than as strings.
func ParseDN(s string) (*goldap.DN, error) { return goldap.ParseDN(s) }
