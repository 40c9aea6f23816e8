// Package targettest runs a SCIM target that misbehaves on demand, for tests only: scimsync's
// own SCIM server (the real handler, over a real state file) behind a wrapper whose switches
// make it strict where the RFC lets a server be strict, or broken and hostile the way real
// SaaS endpoints are (throttling, dripping bodies, lying about paging, answering a create with
// another user, echoing the bearer token, redirecting elsewhere, escape codes in errors).
//
// Every switch is a field of Behaviour, flipped at run time with Set:
//
//	tg := targettest.Start(t)
//	tg.Set(func(b *targettest.Behaviour) { b.List = targettest.ListRepeatFirstPage })
//
// Everything listens on 127.0.0.1 and stops with the test. Requests are counted per method
// (Count) and recorded (Requests), and answers still being sent are counted (Answering);
// requests that reached another origin carrying an Authorization header are recorded as leaks
// (Leaks).
package targettest

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimserver"
	"github.com/scimsync/scimsync/state"
)

// DefaultToken is the bearer token the target accepts unless WithToken says otherwise.
const DefaultToken = "targettest-token-4f1c9a7e2b"

// Behaviour is every switch of the target. The zero value is a well-behaved target.
type Behaviour struct {
	// Strict makes the target refuse what RFC 7644 lets a server refuse, enforced here
	// whatever the wrapped server does: a PATCH `replace` whose value filter matches nothing,
	// or a `remove` without a path, is 400 noTarget; an attribute /Schemas does not declare is
	// 400 invalidSyntax (in POST and PUT bodies and in PATCH paths and values).
	Strict bool
	// Undeclared removes attributes from what /Schemas declares (and, with Strict, from what
	// is accepted): "urn:…:User:description" for an extension attribute, "title" or
	// "name.middleName" for core ones.
	Undeclared []string
	// UsersOnlyInGroups makes /Schemas declare Group members of type User only (members.type
	// canonicalValues and members.$ref referenceTypes ["User"]), as a target without nested
	// groups does, and refuses a group member that is a group (400 invalidValue).
	UsersOnlyInGroups bool
	// NoPatch makes /ServiceProviderConfig say patch.supported false and answers every PATCH
	// 501, as a target that only takes PUT does.
	NoPatch bool
	// RequireETag: a PUT, PATCH or DELETE of a resource without If-Match is 428, and one whose
	// If-Match is not the current version is 412.
	RequireETag bool

	// EchoAuthorization puts the request's Authorization header into every error's detail.
	EchoAuthorization bool
	// HostileDetail puts ANSI escapes, a forged log line, newlines and bidi controls into every
	// error's detail.
	HostileDetail bool
	// PlainTextErrors answers errors as text/plain instead of SCIM JSON.
	PlainTextErrors bool

	// Redirect answers matching requests with RedirectStatus (default 307) to another place.
	Redirect RedirectMode
	// RedirectStatus is the status of redirects; 0 means 307.
	RedirectStatus int
	// RedirectMethods limits Redirect to these methods; empty means every method.
	RedirectMethods []string

	// Create changes how POST /Users is answered.
	Create CreateMode
	// VictimID is the user a CreateOtherUser or CreateSeeOther answer points at; empty means
	// the first stored user whose userName differs from the one posted.
	VictimID string

	// List changes how unfiltered GET /Users and GET /Groups are answered.
	List ListMode
	// IgnoreFilter answers a filtered GET /Users or /Groups with the unfiltered first page.
	IgnoreFilter bool
	// AnswerOtherUser answers GET, PUT and PATCH of one user with another user's resource
	// (VictimID, or the first other user); the write itself is applied to the user asked for.
	AnswerOtherUser bool

	// ThrottleStatus (429 or 503) answers the next ThrottleCount requests (negative: all of
	// them), with Retry-After: RetryAfter when that is not empty.
	ThrottleStatus int
	ThrottleCount  int
	RetryAfter     string
	// ThrottleShare, between 0 and 1, answers that share of requests, at random, with
	// ThrottleStatus (429 when unset) and RetryAfter: a flaky target rather than a busy one.
	ThrottleShare float64
	// RateLimit, when positive, is the target's own limit in requests per second (burst 1):
	// requests above it get 429 with Retry-After: 1.
	RateLimit float64

	// Drip sends every answer's body one byte per Drip.
	Drip time.Duration
	// DripMethods limits Drip to answers of these methods (e.g. POST, so that writes stay in
	// flight while listings and lookups answer at once); empty means every method.
	DripMethods []string
	// FailWrites answers every POST, PUT, PATCH and DELETE with this status (e.g. 503).
	FailWrites int
	// ConflictOnPost answers every POST with 409 uniqueness.
	ConflictOnPost bool
	// NoSchemas and NoResourceTypes answer 404 for /Schemas and /ResourceTypes.
	NoSchemas, NoResourceTypes bool
}

// RedirectMode is where the target redirects to.
type RedirectMode int

// Redirect destinations.
const (
	RedirectNone        RedirectMode = iota
	RedirectOtherPort                // same scheme and host, the catcher's port
	RedirectOtherScheme              // the other scheme (http <-> https), on the catcher for it
	RedirectOtherHost                // "localhost" instead of 127.0.0.1, same port: same server, other origin
	RedirectSameOrigin               // the same origin under /scim/v2/moved, which serves the same API
	RedirectOutsideBase              // the same origin under /moved/scim/v2, outside the base path
)

// CreateMode is how the target answers POST /Users.
type CreateMode int

// Create answers.
const (
	CreateNormal          CreateMode = iota
	CreateOtherUser                  // 201 with another, existing user's resource; nothing is created
	CreateSeeOther                   // 303 to another, existing user; nothing is created
	CreateEmptyBody                  // created, answered 201 with an empty body and the real Location
	CreateForeignLocation            // created, answered 201 with an empty body and a Location on another port
)

// ListMode is how the target answers unfiltered listings.
type ListMode int

// List answers.
const (
	ListNormal            ListMode = iota
	ListEmpty                      // totalResults 0, no resources, as if every user vanished
	ListIgnoreStartIndex           // page 1 whatever startIndex asks, and the page says startIndex 1
	ListRepeatFirstPage            // page 1's resources on every page, but startIndex echoed as asked
	ListEmptyPageWithMore          // pages after the first are empty while totalResults counts everyone
	ListHugeTotal                  // totalResults 10^9 and the same users on every page
	ListEndless                    // every page brings new made-up users; totalResults always one page more
	ListZeroItems                  // /ServiceProviderConfig says maxResults 0; pages hold no resources, itemsPerPage 0
	ListShortTotal                 // totalResults counts only the first page's resources
)

// Request is one request the target received.
type Request struct {
	Method, URI   string // URI as requested (path and query)
	Status        int
	Authorization bool      // whether it carried an Authorization header
	IfMatch       string    // its If-Match header
	At            time.Time // when it arrived
}

// Target is a running misbehaving target.
type Target struct {
	// URL is the SCIM base URL, e.g. http://127.0.0.1:41234/scim/v2.
	URL string
	// Token is the bearer token it accepts.
	Token string
	// CAFile is the PEM CA that signed its certificate (also for the https catcher).
	CAFile string
	// Server is the wrapped scimsync SCIM server.
	Server *scimserver.Server

	tb         testing.TB
	scheme     string
	addr       string            // 127.0.0.1:port
	catchers   map[string]string // scheme -> host:port of a server on another port
	schemaDocs []byte            // the wrapped server's /Schemas, fetched at start

	mu       sync.Mutex
	b        Behaviour
	limiter  *rate.Limiter
	counts   map[string]int64
	sending  map[string]int // answers recorded but not yet completely written, per method
	requests []Request
	leaks    []string
	endless  int
	rnd      *rand.Rand // for ThrottleShare; seeded, so a run is repeatable
}

// Option configures Start.
type Option func(*options)

type options struct {
	tls        bool
	token      string
	maxResults int
}

// WithTLS serves https with a throwaway CA (Target.CAFile).
func WithTLS() Option { return func(o *options) { o.tls = true } }

// WithToken sets the bearer token the target accepts.
func WithToken(tok string) Option { return func(o *options) { o.token = tok } }

// WithMaxResults sets the wrapped server's largest page (default 200).
func WithMaxResults(n int) Option { return func(o *options) { o.maxResults = n } }

// maxRecorded bounds the request log.
const maxRecorded = 10000

// Start runs a target for the test's lifetime.
func Start(tb testing.TB, opts ...Option) *Target {
	tb.Helper()
	o := options{token: DefaultToken, maxResults: 200}
	for _, f := range opts {
		f(&o)
	}
	dir := tb.TempDir()
	st, err := state.Open(filepath.Join(dir, "state.db"), state.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	// the target's own listener first: the server takes its locations from base_url, never from
	// the request's Host, and that base is this listener's
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	scheme := "http"
	if o.tls {
		scheme = "https"
	}
	cfg := scimserver.DefaultServerConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.BaseURL = scheme + "://" + ln.Addr().String() + "/scim/v2"
	cfg.MaxResults = o.maxResults
	cfg.Tokens = []scimserver.TokenConfig{{Name: "targettest", Token: config.NewSecret(o.token)}}
	srv, err := scimserver.NewServer(cfg, st, zap.NewNop())
	if err != nil {
		tb.Fatal(err)
	}
	tg := &Target{Token: o.token, Server: srv, tb: tb, scheme: "http", counts: map[string]int64{}, sending: map[string]int{}, catchers: map[string]string{},
		rnd: rand.New(rand.NewPCG(1, 2))}
	ca, cert, err := certificates(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tg.CAFile = ca
	if o.tls {
		tg.scheme = "https"
	}
	tg.addr = tg.serveOn(tb, ln, tg, o.tls, cert)
	tg.URL = tg.scheme + "://" + tg.addr + "/scim/v2"
	tg.catchers["http"] = tg.serve(tb, http.HandlerFunc(tg.catch), false, cert)
	tg.catchers["https"] = tg.serve(tb, http.HandlerFunc(tg.catch), true, cert)
	sch := tg.inner(http.MethodGet, "/Schemas", nil, nil)
	if sch.status != http.StatusOK {
		tb.Fatalf("targettest: the wrapped server's /Schemas: HTTP %d", sch.status)
	}
	tg.schemaDocs = sch.body
	return tg
}

func (tg *Target) serve(tb testing.TB, h http.Handler, withTLS bool, cert tls.Certificate) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return tg.serveOn(tb, ln, h, withTLS, cert)
}

func (tg *Target) serveOn(tb testing.TB, ln net.Listener, h http.Handler, withTLS bool, cert tls.Certificate) string {
	tb.Helper()
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	if withTLS {
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		ln = tls.NewListener(ln, hs.TLSConfig)
	}
	go func() { _ = hs.Serve(ln) }()
	tb.Cleanup(func() {
		// Close, not Shutdown: a dripping answer would hold Shutdown for as long as it drips
		_ = hs.Close()
	})
	return ln.Addr().String()
}

// Set changes the behaviour; fn edits a copy that replaces the current one atomically.
func (tg *Target) Set(fn func(b *Behaviour)) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	b := tg.b
	b.Undeclared = append([]string(nil), b.Undeclared...)
	b.RedirectMethods = append([]string(nil), b.RedirectMethods...)
	b.DripMethods = append([]string(nil), b.DripMethods...)
	fn(&b)
	if b.RateLimit != tg.b.RateLimit {
		tg.limiter = nil
		if b.RateLimit > 0 {
			tg.limiter = rate.NewLimiter(rate.Limit(b.RateLimit), 1)
		}
	}
	tg.b = b
}

// Reset makes the target well-behaved again (the stored users stay).
func (tg *Target) Reset() { tg.Set(func(b *Behaviour) { *b = Behaviour{} }) }

// Behaviour returns the current behaviour.
func (tg *Target) Behaviour() Behaviour {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.b
}

// Count is how many requests with method the target received since the last ResetCounts.
func (tg *Target) Count(method string) int64 {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.counts[strings.ToUpper(method)]
}

// Total is how many requests the target received since the last ResetCounts.
func (tg *Target) Total() int64 {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	var n int64
	for _, c := range tg.counts {
		n += c
	}
	return n
}

// Writes is how many POST, PUT, PATCH and DELETE requests the target received.
func (tg *Target) Writes() int64 {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.counts[http.MethodPost] + tg.counts[http.MethodPut] + tg.counts[http.MethodPatch] + tg.counts[http.MethodDelete]
}

// Answering is how many requests with method the target has handled (applied, counted and
// recorded) while their answer is still being sent: with Drip, a write the target has made
// whose client has not read the outcome yet. It is not reset by ResetCounts.
func (tg *Target) Answering(method string) int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.sending[strings.ToUpper(method)]
}

// Requests returns the requests received since the last ResetCounts (the latest 10,000).
func (tg *Target) Requests() []Request {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]Request(nil), tg.requests...)
}

// ResetCounts forgets the counters and the request log.
func (tg *Target) ResetCounts() {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.counts = map[string]int64{}
	tg.requests = nil
}

// Leaks lists the requests that carried an Authorization header to another origin than URL's
// (a catcher on another port or scheme, or this server under another host name).
func (tg *Target) Leaks() []string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]string(nil), tg.leaks...)
}

// CreateUser stores a user directly, bypassing every misbehaviour, and returns its id.
func (tg *Target) CreateUser(doc scim.Doc) string {
	tg.tb.Helper()
	raw, err := json.Marshal(doc)
	if err != nil {
		tg.tb.Fatal(err)
	}
	a := tg.inner(http.MethodPost, "/Users", raw, nil)
	if a.status != http.StatusCreated {
		tg.tb.Fatalf("targettest: create user: HTTP %d: %s", a.status, a.body)
	}
	var out scim.Doc
	if err := json.Unmarshal(a.body, &out); err != nil {
		tg.tb.Fatal(err)
	}
	id, _ := out["id"].(string)
	return id
}

// Users returns every stored user, read directly, bypassing every misbehaviour.
func (tg *Target) Users() []scim.Doc {
	tg.tb.Helper()
	docs, err := tg.all("/Users")
	if err != nil {
		tg.tb.Fatal(err)
	}
	return docs
}

// Groups returns every stored group, members included, bypassing the misbehaviours.
func (tg *Target) Groups() []scim.Doc {
	tg.tb.Helper()
	docs, err := tg.all("/Groups")
	if err != nil {
		tg.tb.Fatal(err)
	}
	return docs
}

// User returns one stored user by id, or nil.
func (tg *Target) User(id string) scim.Doc {
	tg.tb.Helper()
	a := tg.inner(http.MethodGet, "/Users/"+id, nil, nil)
	if a.status != http.StatusOK {
		return nil
	}
	var d scim.Doc
	if err := json.Unmarshal(a.body, &d); err != nil {
		tg.tb.Fatal(err)
	}
	return d
}

// answer is a complete response before the target's finishing touches.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) String() string { return fmt.Sprintf("HTTP %d %s", a.status, a.body) }

// inner asks the wrapped server directly, authenticated, for path below /scim/v2.
func (tg *Target) inner(method, path string, body []byte, hdr http.Header) answer {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req := httptest.NewRequest(method, "/scim/v2"+path, rd)
	req.Host = tg.addr
	if tg.scheme == "https" {
		req.TLS = &tls.ConnectionState{}
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	req.Header.Set("Authorization", "Bearer "+tg.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	rec := httptest.NewRecorder()
	tg.Server.Handler().ServeHTTP(rec, req)
	return answer{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// all reads every resource at path through the wrapped server's own paging.
func (tg *Target) all(path string) ([]scim.Doc, error) {
	var out []scim.Doc
	for start := 1; start < 1_000_000; {
		a := tg.inner(http.MethodGet, fmt.Sprintf("%s?startIndex=%d&count=200", path, start), nil, nil)
		if a.status != http.StatusOK {
			return nil, fmt.Errorf("targettest: list %s: %s", path, a)
		}
		var page struct {
			TotalResults int        `json:"totalResults"`
			Resources    []scim.Doc `json:"Resources"`
		}
		if err := json.Unmarshal(a.body, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Resources...)
		start += len(page.Resources)
		if len(page.Resources) == 0 || start > page.TotalResults {
			return out, nil
		}
	}
	return out, nil
}

// catch is the server on another port: whatever reaches it with credentials is a leak.
func (tg *Target) catch(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		tg.mu.Lock()
		tg.leaks = append(tg.leaks, fmt.Sprintf("%s %s://%s%s", r.Method, scheme, r.Host, r.URL.RequestURI()))
		tg.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/scim+json")
	_, _ = io.WriteString(w, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"caught","userName":"caught"}`)
}

// ServeHTTP is the wrapper: it decides each misbehaviour in turn, and otherwise forwards to
// the wrapped server.
func (tg *Target) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tg.mu.Lock()
	b := tg.b
	lim := tg.limiter
	throttle := false
	if b.ThrottleStatus != 0 && b.ThrottleCount != 0 {
		throttle = true
		if tg.b.ThrottleCount > 0 {
			tg.b.ThrottleCount--
		}
	}
	if b.ThrottleShare > 0 && tg.rnd.Float64() < b.ThrottleShare {
		throttle = true
		if b.ThrottleStatus == 0 {
			b.ThrottleStatus = http.StatusTooManyRequests
		}
	}
	tg.mu.Unlock()

	if host, _, _ := net.SplitHostPort(r.Host); host != "127.0.0.1" && r.Header.Get("Authorization") != "" {
		tg.mu.Lock()
		tg.leaks = append(tg.leaks, fmt.Sprintf("%s %s://%s%s", r.Method, tg.scheme, r.Host, r.URL.RequestURI()))
		tg.mu.Unlock()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<20))
	if err != nil {
		tg.finish(w, r, b, scimError(http.StatusRequestEntityTooLarge, "", "request body too large"))
		return
	}
	a := tg.decide(r, b, body, throttle, lim)
	tg.finish(w, r, b, a)
}

func (tg *Target) decide(r *http.Request, b Behaviour, body []byte, throttle bool, lim *rate.Limiter) answer {
	path := r.URL.Path
	moved := false
	if rest, ok := strings.CutPrefix(path, "/moved"); ok {
		path, moved = rest, true
	}
	rel, ok := strings.CutPrefix(path, "/scim/v2")
	if !ok {
		return scimError(http.StatusNotFound, "", "not a SCIM path")
	}
	if rest, ok := strings.CutPrefix(rel, "/moved"); ok {
		rel, moved = rest, true
	}
	if b.Redirect != RedirectNone && !moved && methodIn(r.Method, b.RedirectMethods) {
		if a, ok := tg.redirect(r, b); ok {
			return a
		}
	}
	if !tg.authorized(r) {
		a := scimError(http.StatusUnauthorized, "", "authentication required")
		a.header.Set("WWW-Authenticate", `Bearer realm="targettest"`)
		return a
	}
	if throttle {
		a := scimError(b.ThrottleStatus, "", "slow down")
		if b.RetryAfter != "" {
			a.header.Set("Retry-After", b.RetryAfter)
		}
		return a
	}
	if lim != nil && !lim.Allow() {
		a := scimError(http.StatusTooManyRequests, "", "rate limit exceeded")
		a.header.Set("Retry-After", "1")
		return a
	}
	switch {
	case b.NoSchemas && strings.HasPrefix(rel, "/Schemas"):
		return scimError(http.StatusNotFound, "", "no /Schemas here")
	case b.NoResourceTypes && strings.HasPrefix(rel, "/ResourceTypes"):
		return scimError(http.StatusNotFound, "", "no /ResourceTypes here")
	}
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	if r.Method == http.MethodPatch && b.NoPatch {
		return scimError(http.StatusNotImplemented, "", "PATCH is not supported here")
	}
	if write && b.FailWrites != 0 {
		return scimError(b.FailWrites, "", "writes are failing")
	}
	if r.Method == http.MethodPost && b.ConflictOnPost {
		return scimError(http.StatusConflict, "uniqueness", "userName is already taken")
	}
	if write {
		if a, refused := tg.checkWrite(r, b, rel, body); refused {
			return a
		}
		if b.UsersOnlyInGroups && strings.HasPrefix(rel, "/Groups") && tg.groupAsMember(body) {
			return scimError(http.StatusBadRequest, "invalidValue", "a group cannot be a member of a group here")
		}
	}
	if r.Method == http.MethodPost && rel == "/Users" && b.Create != CreateNormal {
		return tg.create(r, b, body)
	}
	if r.Method == http.MethodGet && (rel == "/Users" || rel == "/Groups") {
		filtered := r.URL.Query().Get("filter") != ""
		switch {
		case filtered && b.IgnoreFilter:
			return tg.list(r, Behaviour{List: ListIgnoreStartIndex}, rel)
		case !filtered && b.List != ListNormal:
			return tg.list(r, b, rel)
		}
	}
	a := tg.forward(r, rel, body)
	if id, ok := strings.CutPrefix(rel, "/Users/"); ok && b.AnswerOtherUser && a.status < 300 && len(a.body) > 0 {
		if other := tg.other(b.VictimID, id); other != "" {
			if o := tg.inner(http.MethodGet, "/Users/"+other, nil, nil); o.status == http.StatusOK {
				a.body = o.body
			}
		}
	}
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(rel, "/Schemas") && a.status == http.StatusOK &&
		(len(b.Undeclared) > 0 || b.UsersOnlyInGroups):
		a.body = reduceSchemas(a.body, b.Undeclared)
		if b.UsersOnlyInGroups {
			a.body = usersOnlyInGroups(a.body)
		}
	case r.Method == http.MethodGet && rel == "/ServiceProviderConfig" && (b.List == ListZeroItems || b.NoPatch):
		if b.List == ListZeroItems {
			a.body = setMaxResultsZero(a.body)
		}
		if b.NoPatch {
			a.body = setPatchUnsupported(a.body)
		}
	}
	return a
}

// forward sends the request to the wrapped server as it came.
func (tg *Target) forward(r *http.Request, rel string, body []byte) answer {
	hdr := http.Header{}
	for _, k := range []string{"If-Match", "If-None-Match", "Content-Type"} {
		if v := r.Header.Get(k); v != "" {
			hdr.Set(k, v)
		}
	}
	uri := rel
	if r.URL.RawQuery != "" {
		uri += "?" + r.URL.RawQuery
	}
	var b []byte
	if len(body) > 0 {
		b = body
	}
	// decide checked the caller's token; the wrapped server is asked with its own
	return tg.inner(r.Method, uri, b, hdr)
}

func (tg *Target) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	return len(h) > 7 && strings.EqualFold(h[:7], "bearer ") && strings.TrimSpace(h[7:]) == tg.Token
}

func (tg *Target) redirect(r *http.Request, b Behaviour) (answer, bool) {
	status := b.RedirectStatus
	if status == 0 {
		status = http.StatusTemporaryRedirect
	}
	var loc string
	switch b.Redirect {
	case RedirectOtherPort:
		loc = tg.scheme + "://" + tg.catchers[tg.scheme] + r.URL.RequestURI()
	case RedirectOtherScheme:
		other := map[string]string{"http": "https", "https": "http"}[tg.scheme]
		loc = other + "://" + tg.catchers[other] + r.URL.RequestURI()
	case RedirectOtherHost:
		_, port, _ := net.SplitHostPort(tg.addr)
		loc = tg.scheme + "://localhost:" + port + r.URL.RequestURI()
	case RedirectSameOrigin:
		loc = tg.scheme + "://" + tg.addr + "/scim/v2/moved" + strings.TrimPrefix(r.URL.RequestURI(), "/scim/v2")
	case RedirectOutsideBase:
		loc = tg.scheme + "://" + tg.addr + "/moved" + r.URL.RequestURI()
	default:
		return answer{}, false
	}
	a := answer{status: status, header: http.Header{}}
	a.header.Set("Location", loc)
	return a, true
}

// create answers POST /Users according to b.Create.
func (tg *Target) create(r *http.Request, b Behaviour, body []byte) answer {
	switch b.Create {
	case CreateOtherUser, CreateSeeOther:
		var posted scim.Doc
		_ = json.Unmarshal(body, &posted)
		victim := b.VictimID
		if victim == "" {
			users, err := tg.all("/Users")
			if err != nil {
				return scimError(http.StatusInternalServerError, "", err.Error())
			}
			for _, u := range users {
				if name, _ := u["userName"].(string); !strings.EqualFold(name, fmt.Sprint(posted["userName"])) {
					victim, _ = u["id"].(string)
					break
				}
			}
		}
		if victim == "" {
			return scimError(http.StatusInternalServerError, "", "targettest: no other user to answer with")
		}
		loc := tg.URL + "/Users/" + victim
		if b.Create == CreateSeeOther {
			a := answer{status: http.StatusSeeOther, header: http.Header{}}
			a.header.Set("Location", loc)
			return a
		}
		a := tg.inner(http.MethodGet, "/Users/"+victim, nil, nil)
		if a.status != http.StatusOK {
			return a
		}
		a.status = http.StatusCreated
		a.header.Set("Location", loc)
		return a
	case CreateEmptyBody, CreateForeignLocation:
		a := tg.forward(r, "/Users", body)
		if a.status != http.StatusCreated {
			return a
		}
		loc := a.header.Get("Location")
		if b.Create == CreateForeignLocation {
			loc = tg.scheme + "://" + tg.catchers[tg.scheme] + "/scim/v2/Users/" + idOf(a.body)
		}
		out := answer{status: http.StatusCreated, header: http.Header{}}
		out.header.Set("Location", loc)
		return out
	}
	return tg.forward(r, "/Users", body)
}

// other picks the user to answer with instead of id: victim, or the first other stored user.
func (tg *Target) other(victim, id string) string {
	if victim != "" && victim != id {
		return victim
	}
	users, err := tg.all("/Users")
	if err != nil {
		return ""
	}
	for _, u := range users {
		if uid, _ := u["id"].(string); uid != id {
			return uid
		}
	}
	return ""
}

func idOf(body []byte) string {
	var d struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &d)
	return d.ID
}

// finish decorates errors as the behaviour says and writes the answer, dripping if asked.
func (tg *Target) finish(w http.ResponseWriter, r *http.Request, b Behaviour, a answer) {
	if a.header == nil {
		a.header = http.Header{}
	}
	if a.status >= 400 {
		a = decorateError(a, r, b)
	}
	tg.record(r, a.status)
	defer tg.answered(r.Method)
	for k, vs := range a.header {
		if strings.EqualFold(k, "Content-Length") {
			continue
		}
		w.Header()[k] = vs
	}
	if b.Drip <= 0 || !methodIn(r.Method, b.DripMethods) {
		w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
		w.WriteHeader(a.status)
		_, _ = w.Write(a.body)
		return
	}
	w.WriteHeader(a.status)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	t := time.NewTicker(b.Drip)
	defer t.Stop()
	for i := range a.body {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		if _, err := w.Write(a.body[i : i+1]); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

func (tg *Target) record(r *http.Request, status int) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.counts[r.Method]++
	tg.sending[r.Method]++
	if len(tg.requests) >= maxRecorded {
		tg.requests = tg.requests[1:]
	}
	tg.requests = append(tg.requests, Request{Method: r.Method, URI: r.URL.RequestURI(), Status: status,
		Authorization: r.Header.Get("Authorization") != "", IfMatch: r.Header.Get("If-Match"), At: time.Now()})
}

// answered ends what record started: the answer to a request with method is written (or its
// client is gone).
func (tg *Target) answered(method string) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.sending[method]--
}

// forgedLine is what HostileDetail puts in front of every error detail.
const forgedLine = "\x1b[2J\x1b[H\x1b[1;32mRun 99: 200 created\x1b[0m\r\n\u202escimsync OK\u202c\nRun 100: 0 failed\x07"

func decorateError(a answer, r *http.Request, b Behaviour) answer {
	var doc map[string]any
	if json.Unmarshal(a.body, &doc) != nil || doc == nil {
		doc = map[string]any{"schemas": []string{scim.ErrorSchema}, "status": strconv.Itoa(a.status), "detail": string(a.body)}
	}
	detail, _ := doc["detail"].(string)
	if b.HostileDetail {
		detail = forgedLine + detail
	}
	if b.EchoAuthorization {
		echo := " (request had Authorization: " + r.Header.Get("Authorization") + ")"
		detail += echo
		doc["message"] = "headers: Authorization=" + r.Header.Get("Authorization")
	}
	doc["detail"] = detail
	if b.PlainTextErrors {
		a.header.Set("Content-Type", "text/plain; charset=utf-8")
		a.body = []byte("error " + strconv.Itoa(a.status) + ": " + detail + "\n")
		return a
	}
	raw, err := json.Marshal(doc)
	if err == nil {
		a.body = raw
		a.header.Set("Content-Type", "application/scim+json")
	}
	return a
}

// scimError is a SCIM error answer.
func scimError(status int, scimType, detail string) answer {
	doc := map[string]any{"schemas": []string{scim.ErrorSchema}, "status": strconv.Itoa(status), "detail": detail}
	if scimType != "" {
		doc["scimType"] = scimType
	}
	raw, _ := json.Marshal(doc)
	h := http.Header{}
	h.Set("Content-Type", "application/scim+json")
	return answer{status: status, header: h, body: raw}
}

func methodIn(m string, list []string) bool {
	if len(list) == 0 {
		return true
	}
	for _, x := range list {
		if strings.EqualFold(x, m) {
			return true
		}
	}
	return false
}
