// Package ldap reads users and groups from a directory: dial, TLS, bind and paged search over
// go-ldap, or an LDIF file for offline previews and the demo. Entries come out streamed, one at
// a time.
//
// Read delivers what changed since a cursor, with the delta mechanism the server offers
// (ldap.delta: auto picks from the root DSE's supportedControl):
//   - syncrepl: RFC 4533 refreshOnly with a cookie (OpenLDAP with the syncprov overlay, 389-DS,
//     FreeIPA). Deletions, renames, moves out of the base and entries leaving the filter arrive
//     from the server's session log; when the log cannot cover the gap the server answers with a
//     present phase and the read is Full.
//   - dirsync: AD's DirSync control. The bind account needs the "Replicating Directory Changes"
//     right on the domain (Windows: delegate it on the domain root; Samba: samba-tool dsacl set
//     --car=get-changes). Without it, auto falls back to usn and says why.
//   - usn: uSNChanged against the DC's highestCommittedUSN, deletions through the show-deleted
//     control (the account must be allowed to list CN=Deleted Objects to see them).
//   - timestamp: modifyTimestamp with an overlap window (ldap.timestamp_overlap); it does not see
//     deletions, so the caller's periodic full read must.
//
// Every cursor is pinned to the server that issued it and to a fingerprint of what was read; a
// cursor that does not fit gives a full read, with the reason in ReadResult.Fallback.
package ldap

import (
	"context"
	"crypto/tls"
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
	// Delta says how Read finds what changed: auto picks from the server's supportedControl.
	Delta string `yaml:"delta"` // auto | syncrepl | dirsync | usn | timestamp | off
	// TimestampOverlap is how far before the last modifyTimestamp a timestamp delta reads again,
	// covering clock skew between replicas and writes still in flight when the last read ran.
	TimestampOverlap config.Duration `yaml:"timestamp_overlap"`
}

// Delta mechanisms, as named in ldap.delta, Cursor.Mechanism and ReadResult.Mechanism.
const (
	DeltaAuto      = "auto"
	DeltaSyncrepl  = "syncrepl"
	DeltaDirSync   = "dirsync"
	DeltaUSN       = "usn"
	DeltaTimestamp = "timestamp"
	DeltaOff       = "off"
	// MechanismFull is ReadResult.Mechanism for a read of everything in scope.
	MechanismFull = "full"
)

// DefaultConfig is the section's defaults.
func DefaultConfig() Config {
	return Config{
		UserFilter: "(objectClass=inetOrgPerson)", Scope: "sub", PageSize: 500,
		DialTimeout: config.Duration(10 * time.Second), RequestTimeout: config.Duration(2 * time.Minute),
		IDAttribute: "entryUUID", Delta: DeltaAuto, TimestampOverlap: config.Duration(5 * time.Minute),
	}
}

// scheme is the URL's scheme as it is dialled: lower-cased, so LDAP:// is ldap:// everywhere
// (a prefix test on the raw value would take LDAP:// for something else).
func (c Config) scheme() string {
	u, err := url.Parse(c.URL)
	if err != nil {
		return ""
	}
	return u.Scheme // url.Parse lower-cases it
}

func (c Config) isFile() bool { return c.scheme() == "file" }

// filePath is the path of a file:// URL (scheme in any case). Another form of file: URL is
// taken whole as the path, which then fails to open with its name in the error.
func (c Config) filePath() string {
	const prefix = "file://"
	if len(c.URL) >= len(prefix) && strings.EqualFold(c.URL[:len(prefix)], prefix) {
		return c.URL[len(prefix):]
	}
	return c.URL
}

// Validate reports every problem in the section.
func (c Config) Validate() config.Problems {
	var ps config.Problems
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		ps.Add("url", "required (ldap://host:389, ldaps://host:636 or file:///path/to/export.ldif)")
	case err != nil:
		// the reason only: url.Error quotes the whole value, which may hold a password
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		ps.Add("url", "not a URL: %v", err)
	case u.Scheme != "ldap" && u.Scheme != "ldaps" && u.Scheme != "file":
		ps.Add("url", "scheme must be ldap, ldaps or file, got %q", u.Scheme)
	case u.User != nil:
		ps.Add("url", "must not carry credentials: they would be printed with the URL in errors and logs; use bind_dn with bind_password or bind_password_file")
	case u.Scheme == "ldaps" && c.StartTLS:
		ps.Add("start_tls", "ldaps:// is already TLS; start_tls goes with ldap://")
	}
	if !c.isFile() {
		if c.BindDN != "" {
			if err := checkBindName(c.BindDN); err != nil {
				ps.Add("bind_dn", "%v", err)
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
	switch c.Delta {
	case DeltaAuto, DeltaSyncrepl, DeltaDirSync, DeltaUSN, DeltaTimestamp, DeltaOff:
	default:
		ps.Add("delta", "must be auto, syncrepl, dirsync, usn, timestamp or off, got %q", c.Delta)
	}
	if d := c.TimestampOverlap.D(); d < 0 || d > 24*time.Hour {
		ps.Add("timestamp_overlap", "must be between 0 and 24h, got %s", d)
	}
	return ps
}

// checkBindName accepts the three forms directories take for a simple bind: a DN, a UPN
// (svc-scim@example.com; AD and Samba) and a down-level logon name (EXAMPLE\svc-scim; AD and
// Samba). Anything else is refused here rather than by the server at 3 a.m.
func checkBindName(name string) error {
	if strings.TrimSpace(name) != name {
		return errors.New("has leading or trailing spaces")
	}
	if strings.Contains(name, "=") {
		if _, err := goldap.ParseDN(name); err != nil {
			return fmt.Errorf("not a DN: %w", err)
		}
		return nil
	}
	if user, domain, ok := strings.Cut(name, "@"); ok {
		if user == "" || domain == "" || strings.ContainsAny(name, " \\") || strings.Count(name, "@") != 1 {
			return fmt.Errorf("%q is neither a DN nor a UPN (user@domain)", name)
		}
		return nil
	}
	if domain, user, ok := strings.Cut(name, "\\"); ok {
		if user == "" || domain == "" || strings.ContainsAny(user, "\\@") {
			return fmt.Errorf("%q is neither a DN nor DOMAIN\\user", name)
		}
		return nil
	}
	return fmt.Errorf("%q is not a DN, a UPN (user@domain) or DOMAIN\\user", name)
}

var scopes = map[string]int{"sub": goldap.ScopeWholeSubtree, "one": goldap.ScopeSingleLevel, "base": goldap.ScopeBaseObject}

// Entry is one directory entry: its DN, its stable id and its attributes (names lower-cased,
// ranged values already expanded, objectGUID in canonical form).
type Entry struct {
	DN string
	ID string // the value of the configured id attribute
	// UUID is the entry's UUID as a delta mechanism identifies it: syncrepl's sync-state
	// entryUUID, AD's objectGUID in canonical form; "" when unknown. It equals ID when the id
	// attribute is entryUUID or objectGUID; syncrepl delete notices carry only the UUID.
	UUID  string
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
	if c.cfg.scheme() == "ldap" && !c.cfg.StartTLS && !isLoopback(c.cfg.URL) {
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
	return c.Search(ctx, c.UserQuery(attrs), "", fn)
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

// EscapeFilter escapes a value for use inside a filter, exactly once.
func EscapeFilter(v string) string { return goldap.EscapeFilter(v) }

// ParseDN parses a DN, so callers compare DNs normalised rather than as strings.
func ParseDN(s string) (*goldap.DN, error) { return goldap.ParseDN(s) }
