// Package scimserver is scimsync's SCIM 2.0 service provider (RFC 7643/7644), the endpoint
// identity providers such as Okta and Entra ID provision users and groups into. It uses the
// elimity library for the schema definitions and their type validation; routing, filtering,
// PATCH, storage and responses are its own, so that every request is bounded before it is
// parsed and every answer follows the RFC (see README "SCIM server").
package scimserver

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/elimity-com/scim/schema"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

// namedToken is a configured bearer token as the server keeps it: its SHA-256 digest, so
// that comparing it with a given token takes the same time whatever either's length.
type namedToken struct {
	name   string
	digest [sha256.Size]byte
}

// resourceType is one of the two resource types the server serves.
type resourceType struct {
	kind       state.Kind
	name       string // User, Group
	endpoint   string // /Users, /Groups
	desc       string
	core       schema.Schema
	extensions []schema.Schema
}

// Server is scimsync's SCIM 2.0 service provider.
type Server struct {
	cfg       ServerConfig
	log       *zap.Logger
	store     *store
	tokens    []namedToken
	types     map[state.Kind]resourceType
	idx       map[state.Kind]scim.Index
	base      string // public URL of /scim/v2, never taken from a request
	passwords *passwords
	metrics   *metrics
	authLog   *authLogger
	red       *config.Redactor // the tokens, for text that is cut before the logger's core sees it
	slowScans chan struct{}    // filters the fast path cannot answer decode every resource: one at a time
	bigBodies chan struct{}    // bodies over max_body_bytes (large groups) are read one at a time
	handler   http.Handler

	httpSrv  *http.Server
	listener net.Listener
	done     chan error
}

// NewServer builds a server over st. Tokens are resolved here so a bad token_file fails at
// start-up, not at the first request.
func NewServer(cfg ServerConfig, st *state.Store, log *zap.Logger) (*Server, error) {
	if err := cfg.Validate().Err(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log.Named("scim-server"), metrics: newMetrics(),
		slowScans: make(chan struct{}, 1), bigBodies: make(chan struct{}, 1)}
	s.passwords = &passwords{mode: cfg.Password, log: s.log}
	s.red = config.NewRedactor()
	for _, t := range cfg.Tokens {
		sec, err := config.ResolveSecret(t.Token, t.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("scim: token %q: %w", t.Name, err)
		}
		s.tokens = append(s.tokens, namedToken{name: t.Name, digest: sha256.Sum256([]byte(sec.Reveal()))})
		s.red.Add(sec.Reveal())
		if config.ShortToken(sec.Reveal()) {
			s.log.Warn(fmt.Sprintf("a server token is shorter than %d characters: a short token can be guessed; use a random one (openssl rand -hex 32)", config.MinTokenLength),
				zap.String("token", t.Name))
		}
	}
	s.authLog = newAuthLogger(s.log, s.red, time.Now)
	st.ObserveCommits(func(took time.Duration, writes int) {
		s.metrics.commitSeconds.Observe(took.Seconds())
		s.metrics.commitWrites.Observe(float64(writes))
	})
	// Entra sends booleans as strings ("False"); elimity's validation accepts them only with
	// this switch, a package-level setting of the library.
	schema.SetAllowStringValues(true)
	us, gs := scim.UserResourceSchema(), scim.GroupResourceSchema()
	enterprise, own := schema.ExtensionEnterpriseUser(), scim.ScimsyncExtension()
	s.types = map[state.Kind]resourceType{
		state.KindUser: {kind: state.KindUser, name: "User", endpoint: "/Users", desc: "User Account", core: us,
			extensions: []schema.Schema{enterprise, own}},
		state.KindGroup: {kind: state.KindGroup, name: "Group", endpoint: "/Groups", desc: "Group", core: gs},
	}
	s.idx = map[state.Kind]scim.Index{
		state.KindUser:  scim.NewIndex(us, enterprise, own),
		state.KindGroup: scim.NewIndex(gs),
	}
	s.base = cfg.BaseURL
	if s.base == "" {
		s.base = baseFromListen(cfg.Listen, cfg.TLSCertFile != "", os.Hostname)
	}
	s.base = trimSlash(s.base)
	var err error
	start := time.Now()
	s.store, err = newStore(st, time.Now, storeLimits{maxResources: cfg.MaxResources,
		maxPerToken: cfg.MaxResourcesPerToken, maxGroupMembers: cfg.MaxGroupMembers})
	if err != nil {
		return nil, err
	}
	// everything is in memory now; the file's pages need not stay in this process's RSS
	if err := st.ReleaseMappedPages(); err != nil {
		s.log.Warn("could not release the state file's pages", zap.Error(err))
	}
	s.log.Info("store loaded", zap.Int("users", s.store.count(state.KindUser)),
		zap.Int("groups", s.store.count(state.KindGroup)), zap.Duration("took", time.Since(start)))
	mux := http.NewServeMux()
	mux.Handle("/scim/v2/", s.authenticate(http.HandlerFunc(s.serveSCIM)))
	mux.Handle("/scim/v2", s.authenticate(http.HandlerFunc(s.serveSCIM)))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { notFound(w, "endpoint (the SCIM API is under /scim/v2)") })
	s.handler = mux
	return s, nil
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// RegisterMetrics registers the server's metrics (failed authentications, refusals by limit,
// group-commit batches) on reg.
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range s.metrics.collectors() {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("scim: register metrics: %w", err)
		}
	}
	return nil
}

// Wrap puts middleware (metrics, access logs) around the server's handler; call before Start.
func (s *Server) Wrap(mw func(http.Handler) http.Handler) { s.handler = mw(s.handler) }

// Handler serves /scim/v2/; for embedding in another listener (the daemon's).
func (s *Server) Handler() http.Handler { return s.handler }

// BaseURL is the public URL of /scim/v2 that meta.location and Location are built from.
func (s *Server) BaseURL() string { return s.base }

// Start listens on cfg.Listen and serves until Stop.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("scim: listen %s: %w", s.cfg.Listen, err)
	}
	s.listener = ln
	if s.cfg.BaseURL == "" {
		// port 0 becomes a real port only now
		s.base = trimSlash(baseFromListen(ln.Addr().String(), s.cfg.TLSCertFile != "", os.Hostname))
		if host, _, _ := net.SplitHostPort(s.cfg.Listen); host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
			s.log.Warn("server.base_url is unset and the server listens on every address; set it to the URL identity providers use",
				zap.String("assumed", s.base))
		}
	}
	if w := s.cfg.InsecureWarning(); w != "" {
		s.log.Warn(w, zap.String("listen", s.cfg.Listen))
	}
	s.httpSrv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: maxHeaderBytes, ErrorLog: config.HTTPErrorLog(s.log, s.red)}
	s.done = make(chan error, 1)
	go func() {
		var err error
		if s.cfg.TLSCertFile != "" {
			s.httpSrv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			err = s.httpSrv.ServeTLS(ln, s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		} else {
			err = s.httpSrv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	s.log.Info("listening", zap.String("addr", ln.Addr().String()), zap.Bool("tls", s.cfg.TLSCertFile != ""),
		zap.String("base_url", s.base))
	return nil
}

// maxHeaderBytes bounds a request's header block, read before any token is checked. The
// largest header an IdP sends is its bearer token (a JWT of a few KiB); net/http's 1 MiB
// default let every unauthenticated connection hold a megabyte.
const maxHeaderBytes = 64 << 10

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Stop drains in-flight requests until ctx ends.
func (s *Server) Stop(ctx context.Context) error {
	if s.httpSrv == nil {
		return nil
	}
	err := s.httpSrv.Shutdown(ctx)
	if serveErr := <-s.done; err == nil {
		err = serveErr
	}
	return err
}
