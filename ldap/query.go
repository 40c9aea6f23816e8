package ldap

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
)

// Query says what to read; the same type serves users and groups.
type Query struct {
	BaseDN string
	Scope  string // sub | one | base
	Filter string
	// Attributes is what the mapping needs. The id attribute is always added, and so are the
	// attributes a delta mechanism identifies entries by (entryUUID, objectGUID, nsUniqueId):
	// a server ignores the ones it does not know.
	Attributes  []string
	IDAttribute string // entryUUID | objectGUID | ipaUniqueID | nsUniqueId | …
}

// UserQuery is the query the ldap section describes for users, reading attrs.
func (c *Client) UserQuery(attrs []string) Query {
	return Query{BaseDN: c.cfg.BaseDN, Scope: c.cfg.Scope, Filter: c.cfg.UserFilter, Attributes: attrs, IDAttribute: c.cfg.IDAttribute}
}

// check reports the first thing that makes q unusable, naming the field.
func (q Query) check() error {
	if _, err := goldap.ParseDN(q.BaseDN); err != nil {
		return fmt.Errorf("ldap: query base %q: %w", q.BaseDN, err)
	}
	if _, ok := scopes[q.Scope]; !ok {
		return fmt.Errorf("ldap: query scope must be sub, one or base, got %q", q.Scope)
	}
	if _, err := goldap.CompileFilter(q.Filter); err != nil {
		return fmt.Errorf("ldap: query filter %q: %w", q.Filter, err)
	}
	if q.IDAttribute == "" {
		return errors.New("ldap: query has no id attribute")
	}
	for _, a := range q.Attributes {
		if a == "" || strings.ContainsAny(a, " ()=,") {
			return fmt.Errorf("ldap: query attribute %q is not an attribute name", a)
		}
	}
	return nil
}

// uuidAttrs are requested on every read so that Entry.UUID is filled whatever the server is.
var uuidAttrs = []string{"entryUUID", "objectGUID", "nsUniqueId"}

// request lists the attributes to ask for: q's, the id attribute, the UUID attributes and extra,
// each once (names compare case-insensitively).
func (q Query) request(extra ...string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		if l := strings.ToLower(a); a != "" && !seen[l] {
			seen[l] = true
			out = append(out, a)
		}
	}
	for _, a := range q.Attributes {
		add(a)
	}
	add(q.IDAttribute)
	for _, a := range uuidAttrs {
		add(a)
	}
	for _, a := range extra {
		add(a)
	}
	return out
}

// session is one Read or Search: a bound connection that streams, and a second one, dialled on
// first use, for what must be asked while the first is still streaming (the rest of a ranged
// attribute, entries re-read in full). go-ldap delivers every message of a connection from one
// goroutine, so a lookup on the streaming connection would wait behind the unread stream.
type session struct {
	c    *Client
	conn *goldap.Conn
	aux  *goldap.Conn
}

func (c *Client) open(ctx context.Context) (*session, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	return &session{c: c, conn: conn}, nil
}

// dial connects and binds. The request timer is off: go-ldap starts it when a request is sent
// and never resets it as entries arrive, so a 100,000-entry syncrepl refresh would die at
// request_timeout while data still flows. each bounds the server's silence instead.
func (c *Client) dial(ctx context.Context) (*goldap.Conn, error) {
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	conn.SetTimeout(0)
	return conn, nil
}

func (s *session) lookup(ctx context.Context) (*goldap.Conn, error) {
	if s.aux == nil || s.aux.IsClosing() {
		conn, err := s.c.dial(ctx)
		if err != nil {
			return nil, err
		}
		s.aux = conn
	}
	return s.aux, nil
}

func (s *session) close() {
	_ = s.conn.Close()
	if s.aux != nil {
		_ = s.aux.Close()
	}
}

// each runs one asynchronous operation to its end, calling fn for every message. It closes
// conn when ctx ends (go-ldap has no Abandon; closing is what stops the server) or when the
// server stays silent for request_timeout while we wait for it; time spent in fn does not
// count. An error from fn stops the operation and is returned as is.
func (s *session) each(ctx context.Context, conn *goldap.Conn, start func(context.Context) goldap.Response, fn func(goldap.Response) error) error {
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	var silent atomic.Bool
	timeout := s.c.cfg.RequestTimeout.D()
	watchdog := time.AfterFunc(time.Hour, func() { silent.Store(true); _ = conn.Close() })
	watchdog.Stop()
	r := start(octx)
	answers := 0
	for {
		if timeout > 0 {
			watchdog.Reset(timeout)
		}
		ok := r.Next()
		watchdog.Stop()
		if !ok {
			break
		}
		answers++
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err // go-ldap reports a cancelled search as a success
	}
	if silent.Load() {
		return fmt.Errorf("%w: no answer from the server for %s (request_timeout)", ErrPartial, timeout)
	}
	if err := r.Err(); err != nil {
		return err
	}
	if answers == 0 && conn.IsClosing() {
		// go-ldap does not send a search on a connection it has seen close, and reports no
		// error: read as an empty last page, a server stopping between two pages made a
		// partial read look complete
		return fmt.Errorf("%w: the connection to the server closed before the request was sent", ErrPartial)
	}
	return nil
}

// failed wraps a search error naming the step. Limits and dropped connections mean entries are
// missing: they carry ErrPartial so nobody deprovisions on the strength of the read.
func failed(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrPartial) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("ldap: %s: %w", what, err)
	}
	var le *goldap.Error
	var ce callerError
	switch {
	case errors.As(err, &ce):
		return err
	case goldap.IsErrorAnyOf(err, goldap.LDAPResultSizeLimitExceeded, goldap.LDAPResultTimeLimitExceeded,
		goldap.LDAPResultAdminLimitExceeded, goldap.ErrorNetwork):
		return fmt.Errorf("ldap: %s: %w: %w", what, ErrPartial, err)
	case !errors.As(err, &le):
		// not a result from the server: the connection broke (EOF, reset) or a packet did not
		// decode, somewhere in the middle of the stream
		return fmt.Errorf("ldap: %s: %w: %w", what, ErrPartial, err)
	}
	return fmt.Errorf("ldap: %s: %w", what, err)
}

// callerError marks an error returned by the caller's callback, so it is passed up unwrapped.
type callerError struct{ err error }

func (e callerError) Error() string { return e.err.Error() }
func (e callerError) Unwrap() error { return e.err }

// asCaller marks err as the caller's, once.
func asCaller(err error) error {
	if _, ok := err.(callerError); ok || err == nil {
		return err
	}
	return callerError{err}
}

// unwrapCaller gives the caller back its own error, and wraps everything else with what.
func unwrapCaller(what string, err error) error {
	if err == nil {
		return nil
	}
	var ce callerError
	if errors.As(err, &ce) {
		return ce.err
	}
	return failed(what, err)
}

// maxPages bounds a paged search (at page_size 500, 500 million entries): a server that keeps
// answering with a cookie must not keep us reading forever.
const maxPages = 1 << 20

// paged runs a paged subtree/one/base search on conn and calls fn for every entry; referrals
// (AD's domain root returns some) are not chased.
func (s *session) paged(ctx context.Context, conn *goldap.Conn, base string, scope int, filter string, attrs []string,
	extra []goldap.Control, fn func(*goldap.Entry) error) error {
	var cookie []byte
	for page := 0; page < maxPages; page++ {
		paging := goldap.NewControlPaging(uint32(s.c.cfg.PageSize))
		paging.SetCookie(cookie)
		ctrls := append([]goldap.Control{paging}, extra...)
		// a fresh request per page: go-ldap mutates requests, and a reused one loses entries
		req := goldap.NewSearchRequest(base, scope, goldap.NeverDerefAliases, 0, 0, false, filter, attrs, ctrls)
		cookie = nil
		err := s.each(ctx, conn, func(c context.Context) goldap.Response { return conn.SearchAsync(c, req, s.c.cfg.PageSize) },
			func(r goldap.Response) error {
				if e := r.Entry(); e != nil {
					return asCaller(fn(e))
				}
				if p, ok := goldap.FindControl(r.Controls(), goldap.ControlTypePaging).(*goldap.ControlPaging); ok {
					cookie = p.Cookie
				}
				return nil
			})
		if err != nil {
			return err
		}
		if len(cookie) == 0 {
			return nil
		}
	}
	return fmt.Errorf("%w: more than %d pages", ErrPartial, maxPages)
}

// Search streams every entry in q's scope that matches q.Filter and, when not "", extraFilter
// (ANDed), with full attributes. It is what `sync --user` uses for a targeted lookup.
func (c *Client) Search(ctx context.Context, q Query, extraFilter string, fn func(Entry) error) error {
	if c.cfg.isFile() {
		return c.fileSearch(ctx, q, extraFilter, fn)
	}
	if err := q.check(); err != nil {
		return err
	}
	filter, err := andFilter(q.Filter, extraFilter)
	if err != nil {
		return err
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	return s.search(ctx, q, filter, nil, fn)
}

func andFilter(filter, extra string) (string, error) {
	if extra == "" {
		return filter, nil
	}
	if _, err := goldap.CompileFilter(extra); err != nil {
		return "", fmt.Errorf("ldap: filter %q: %w", extra, err)
	}
	return "(&" + filter + extra + ")", nil
}

// search is Search on an open session, with extra attributes to request.
func (s *session) search(ctx context.Context, q Query, filter string, extraAttrs []string, fn func(Entry) error) error {
	err := s.paged(ctx, s.conn, q.BaseDN, scopes[q.Scope], filter, q.request(extraAttrs...), nil, func(e *goldap.Entry) error {
		entry, err := s.entry(ctx, e, q)
		if err != nil {
			return err
		}
		return fn(entry)
	})
	return unwrapCaller(fmt.Sprintf("search %q for %s", q.BaseDN, filter), err)
}

// idBatch is how many ids one ByIDs search asks for: an OR of 50 equality assertions is well
// within every server's filter limits and keeps a page full.
const idBatch = 50

// ByIDs streams the entries in q's scope, matching q.Filter, whose id attribute is one of ids
// (batched OR filters). Ids that match nothing are simply not delivered.
func (c *Client) ByIDs(ctx context.Context, q Query, ids []string, fn func(Entry) error) error {
	if c.cfg.isFile() {
		want := map[string]bool{}
		for _, id := range ids {
			want[id] = true
		}
		return c.fileSearch(ctx, q, "", func(e Entry) error {
			if want[e.ID] {
				return fn(e)
			}
			return nil
		})
	}
	if err := q.check(); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	return s.byIDs(ctx, q, q.IDAttribute, ids, nil, fn)
}

// byIDs searches for entries whose attr is one of ids, idBatch at a time.
func (s *session) byIDs(ctx context.Context, q Query, attr string, ids []string, extraAttrs []string, fn func(Entry) error) error {
	for len(ids) > 0 {
		n := min(idBatch, len(ids))
		var or strings.Builder
		for _, id := range ids[:n] {
			v, err := assertionValue(attr, id)
			if err != nil {
				return err
			}
			or.WriteString("(" + attr + "=" + v + ")")
		}
		ids = ids[n:]
		filter := "(&" + q.Filter + "(|" + or.String() + "))"
		if err := s.search(ctx, q, filter, extraAttrs, fn); err != nil {
			return err
		}
	}
	return nil
}

// assertionValue escapes id for a filter on attr: objectGUID is compared as its 16 bytes, so
// the canonical string is turned back into them and every byte escaped.
func assertionValue(attr, id string) (string, error) {
	if strings.EqualFold(attr, "objectGUID") {
		raw, err := ParseGUID(id)
		if err != nil {
			return "", fmt.Errorf("ldap: id %q: %w", id, err)
		}
		return escapeBinary(raw), nil
	}
	return goldap.EscapeFilter(id), nil
}

func escapeBinary(b []byte) string {
	const hexdigits = "0123456789abcdef"
	out := make([]byte, 0, 3*len(b))
	for _, c := range b {
		out = append(out, '\\', hexdigits[c>>4], hexdigits[c&15])
	}
	return string(out)
}

// ByDN reads the entry dn when it is in q's scope and matches q.Filter; ok is false when it is
// not (gone, out of scope, or filtered out).
func (c *Client) ByDN(ctx context.Context, q Query, dn string) (Entry, bool, error) {
	var found Entry
	var ok bool
	if c.cfg.isFile() {
		want, err := NormalizeDN(dn)
		if err != nil {
			return Entry{}, false, fmt.Errorf("ldap: DN %q: %w", dn, err)
		}
		err = c.fileSearch(ctx, q, "", func(e Entry) error {
			if n, err := NormalizeDN(e.DN); err == nil && n == want {
				found, ok = e, true
			}
			return nil
		})
		return found, ok, err
	}
	if err := q.check(); err != nil {
		return Entry{}, false, err
	}
	d, err := goldap.ParseDN(dn)
	if err != nil {
		return Entry{}, false, fmt.Errorf("ldap: DN %q: %w", dn, err)
	}
	base, _ := goldap.ParseDN(q.BaseDN)
	if !inScopeDN(base, d, q.Scope) {
		return Entry{}, false, nil
	}
	s, err := c.open(ctx)
	if err != nil {
		return Entry{}, false, err
	}
	defer s.close()
	err = s.paged(ctx, s.conn, dn, goldap.ScopeBaseObject, q.Filter, q.request(), nil, func(e *goldap.Entry) error {
		entry, err := s.entry(ctx, e, q)
		if err != nil {
			return err
		}
		found, ok = entry, true
		return nil
	})
	if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, unwrapCaller(fmt.Sprintf("read %q", dn), err)
	}
	return found, ok, nil
}

// entry turns a search result into an Entry: names lower-cased, ranged values fetched in full,
// objectGUID in canonical form, ID and UUID filled.
func (s *session) entry(ctx context.Context, e *goldap.Entry, q Query) (Entry, error) {
	out := Entry{DN: e.DN, Attrs: make(map[string][]string, len(e.Attributes))}
	for _, a := range e.Attributes {
		name := strings.ToLower(a.Name)
		if strings.Contains(name, ";range=") {
			r, err := parseRange(name)
			if err != nil {
				return Entry{}, fmt.Errorf("ldap: entry %q: %w", e.DN, err)
			}
			values, err := s.rest(ctx, e.DN, r, a.Values)
			if err != nil {
				return Entry{}, err
			}
			out.Attrs[r.attr] = append(out.Attrs[r.attr], values...)
			continue
		}
		if name == "objectguid" {
			if len(a.ByteValues) == 1 && len(a.ByteValues[0]) == 16 {
				out.Attrs[name] = []string{GUIDString(a.ByteValues[0])}
			}
			continue
		}
		out.Attrs[name] = a.Values
	}
	out.UUID = uuidOf(out)
	out.ID = out.First(q.IDAttribute)
	return out, nil
}

// uuidOf is the UUID a delta mechanism knows the entry by: AD's objectGUID, RFC 4530
// entryUUID, or 389-DS's nsUniqueId (its content-sync plugin sends those 16 bytes as the
// sync-state UUID).
func uuidOf(e Entry) string {
	if v := e.First("objectGUID"); v != "" {
		return v
	}
	if v := e.First("entryUUID"); v != "" {
		return strings.ToLower(v)
	}
	if v := e.First("nsUniqueId"); v != "" {
		if u, ok := nsUniqueIDToUUID(v); ok {
			return u
		}
	}
	return ""
}

// nsUniqueIDToUUID regroups 389-DS's 8-8-8-8 hex nsUniqueId as a UUID (8-4-4-4-12).
func nsUniqueIDToUUID(v string) (string, bool) {
	h := strings.ReplaceAll(v, "-", "")
	if len(h) != 32 {
		return "", false
	}
	for _, c := range h {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return "", false
		}
	}
	h = strings.ToLower(h)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], true
}

// valueRange is one `attr;range=lo-hi` attribute description (hi -1 for `*`, the last part).
type valueRange struct {
	attr   string
	lo, hi int
}

// parseRange reads AD's ranged attribute description (lower-cased), e.g. member;range=0-1499 or
// member;range=1500-*.
func parseRange(name string) (valueRange, error) {
	i := strings.Index(name, ";range=")
	if i <= 0 {
		return valueRange{}, fmt.Errorf("attribute %q: not a ranged attribute", name)
	}
	lo, hi, ok := strings.Cut(name[i+len(";range="):], "-")
	r := valueRange{attr: name[:i]}
	var err error
	if !ok {
		return valueRange{}, fmt.Errorf("attribute %q: bad range", name)
	}
	if r.lo, err = strconv.Atoi(lo); err != nil || r.lo < 0 {
		return valueRange{}, fmt.Errorf("attribute %q: bad range start", name)
	}
	if hi == "*" {
		r.hi = -1
		return r, nil
	}
	if r.hi, err = strconv.Atoi(hi); err != nil || r.hi < r.lo {
		return valueRange{}, fmt.Errorf("attribute %q: bad range end", name)
	}
	return r, nil
}

// maxRangeSteps bounds the loop that fetches a ranged attribute (at AD's 1,500 values a step,
// 150 million values): a server that never says `*` must not keep us asking.
const maxRangeSteps = 100000

// rest fetches the values of a ranged attribute that the first answer left out, asking for
// attr;range=hi+1-* until the server marks the last part with `*`.
func (s *session) rest(ctx context.Context, dn string, first valueRange, values []string) ([]string, error) {
	r := first
	for step := 0; r.hi >= 0; step++ {
		if step >= maxRangeSteps {
			return nil, fmt.Errorf("ldap: entry %q: attribute %s: %w: more than %d ranges", dn, first.attr, ErrPartial, maxRangeSteps)
		}
		conn, err := s.lookup(ctx)
		if err != nil {
			return nil, err
		}
		want := fmt.Sprintf("%s;range=%d-*", r.attr, r.hi+1)
		req := goldap.NewSearchRequest(dn, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 0, 0, false,
			"(objectClass=*)", []string{want}, nil)
		next := valueRange{hi: -2}
		err = s.each(ctx, conn, func(c context.Context) goldap.Response { return conn.SearchAsync(c, req, 1) },
			func(res goldap.Response) error {
				e := res.Entry()
				if e == nil {
					return nil
				}
				for _, a := range e.Attributes {
					name := strings.ToLower(a.Name)
					switch {
					case name == r.attr: // the server sent what is left without a range
						values = append(values, a.Values...)
						next = valueRange{attr: r.attr, hi: -1}
					case strings.HasPrefix(name, r.attr+";range="):
						nr, err := parseRange(name)
						if err != nil {
							return fmt.Errorf("ldap: entry %q: %w", dn, err)
						}
						if nr.lo != r.hi+1 || (nr.hi >= 0 && nr.hi < nr.lo) {
							return fmt.Errorf("ldap: entry %q: asked for %s, got %s", dn, want, a.Name)
						}
						values = append(values, a.Values...)
						next = nr
					}
				}
				return nil
			})
		if err != nil {
			return nil, failed(fmt.Sprintf("read %s of %q", want, dn), err)
		}
		if next.hi == -2 {
			// the entry or the attribute vanished between two requests: what we have is not all
			return nil, fmt.Errorf("ldap: entry %q: %w: %s returned nothing", dn, ErrPartial, want)
		}
		r = next
	}
	return values, nil
}
