package scimserver

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	elimity "github.com/elimity-com/scim"
	scimerr "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

// ServerConfig is the `server:` section: the SCIM endpoint identity providers provision into.
type ServerConfig struct {
	Listen       string        `yaml:"listen"`
	BaseURL      string        `yaml:"base_url"` // public URL of /scim/v2, for meta.location behind a proxy
	Tokens       []TokenConfig `yaml:"tokens"`
	TLSCertFile  string        `yaml:"tls_cert_file"`
	TLSKeyFile   string        `yaml:"tls_key_file"`
	MaxResults   int           `yaml:"max_results"`    // page size cap for list requests
	MaxBodyBytes int64         `yaml:"max_body_bytes"` // larger request bodies get 413
}

// TokenConfig is one named bearer token, so logs say which IdP did what.
type TokenConfig struct {
	Name      string        `yaml:"name"`
	Token     config.Secret `yaml:"token"`
	TokenFile string        `yaml:"token_file"`
}

// DefaultServerConfig is the server section's defaults.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{Listen: "127.0.0.1:8443", MaxResults: 200, MaxBodyBytes: 1 << 20}
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
	if c.MaxResults < 1 {
		ps.Add("max_results", "must be at least 1")
	}
	if c.MaxBodyBytes < 1024 {
		ps.Add("max_body_bytes", "must be at least 1024")
	}
	if c.BaseURL != "" && !strings.HasPrefix(c.BaseURL, "http://") && !strings.HasPrefix(c.BaseURL, "https://") {
		ps.Add("base_url", "must be an absolute http(s) URL")
	}
	return ps
}

type namedToken struct {
	name  string
	value []byte
}

// Server is scimsync's SCIM 2.0 service provider: elimity routes and validates, and this type
// stores, filters, patches and fills the gaps the pinned elimity commit leaves.
type Server struct {
	cfg     ServerConfig
	log     *zap.Logger
	store   *store
	tokens  []namedToken
	users   elimity.ResourceType
	groups  elimity.ResourceType
	idx     map[state.Kind]scim.Index
	handler http.Handler

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
	s := &Server{cfg: cfg, log: log.Named("scim-server")}
	for _, t := range cfg.Tokens {
		sec, err := config.ResolveSecret(t.Token, t.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("scim: token %q: %w", t.Name, err)
		}
		s.tokens = append(s.tokens, namedToken{name: t.Name, value: []byte(sec.Reveal())})
	}
	var err error
	if s.store, err = newStore(st, time.Now); err != nil {
		return nil, err
	}
	// Entra sends booleans as strings ("False"); elimity accepts them only with this switch,
	// which is a package-level setting of the library.
	schema.SetAllowStringValues(true)

	us, gs := scim.UserResourceSchema(), scim.GroupResourceSchema()
	enterprise, own := schema.ExtensionEnterpriseUser(), scim.ScimsyncExtension()
	s.idx = map[state.Kind]scim.Index{
		state.KindUser:  scim.NewIndex(us, enterprise, own),
		state.KindGroup: scim.NewIndex(gs),
	}
	s.users = elimity.ResourceType{ID: optional.NewString("User"), Name: "User", Endpoint: "/Users",
		Description: optional.NewString("User Account"), Schema: us,
		SchemaExtensions: []elimity.SchemaExtension{{Schema: enterprise}, {Schema: own}},
		Handler:          &handler{srv: s, kind: state.KindUser}}
	s.groups = elimity.ResourceType{ID: optional.NewString("Group"), Name: "Group", Endpoint: "/Groups",
		Description: optional.NewString("Group"), Schema: gs,
		Handler: &handler{srv: s, kind: state.KindGroup}}
	lib, err := elimity.NewServer(&elimity.ServerArgs{
		ServiceProviderConfig: &elimity.ServiceProviderConfig{
			DocumentationURI: optional.NewString("https://github.com/scimsync/scimsync#scim-server"),
			AuthenticationSchemes: []elimity.AuthenticationScheme{{Type: elimity.AuthenticationTypeOauthBearerToken,
				Name: "OAuth Bearer Token", Description: "Bearer token from the server.tokens config section", Primary: true}},
			MaxResults:       cfg.MaxResults,
			SupportFiltering: true,
			SupportPatch:     true,
		},
		ResourceTypes: []elimity.ResourceType{s.users, s.groups},
	}, elimity.WithLogger(libLogger{s.log}))
	if err != nil {
		return nil, fmt.Errorf("scim: build server: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/scim/v2/", s.authenticate(s.limitBody(s.fixResponse(normalizeFilter(http.StripPrefix("/scim", lib))))))
	s.handler = mux
	return s, nil
}

// Wrap puts middleware (metrics, access logs) around the server's handler; call before Start.
func (s *Server) Wrap(mw func(http.Handler) http.Handler) { s.handler = mw(s.handler) }

// Handler serves /scim/v2/; for embedding in another listener (the daemon's).
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on cfg.Listen and serves until Stop.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("scim: listen %s: %w", s.cfg.Listen, err)
	}
	s.listener = ln
	s.httpSrv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
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
	s.log.Info("listening", zap.String("addr", ln.Addr().String()), zap.Bool("tls", s.cfg.TLSCertFile != ""))
	return nil
}

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

type ctxKey int

const callerKey ctxKey = 0

func caller(r *http.Request) string {
	if name, ok := r.Context().Value(callerKey).(string); ok {
		return name
	}
	return "unknown"
}

func writeError(w http.ResponseWriter, status int, scimType, detail string) {
	w.Header().Set("Content-Type", "application/scim+json")
	w.WriteHeader(status)
	body := fmt.Sprintf(`{"schemas":[%q],"status":"%d","detail":%q`, scim.ErrorSchema, status, detail)
	if scimType != "" {
		body += fmt.Sprintf(`,"scimType":%q`, scimType)
	}
	_, _ = w.Write([]byte(body + "}"))
}

// authenticate checks the bearer token against every configured token in constant time and
// remembers which one matched. A failure reveals nothing but the scheme.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		var given []byte
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			given = []byte(strings.TrimSpace(h[7:]))
		}
		match := -1
		for i, t := range s.tokens {
			if subtle.ConstantTimeCompare(given, t.value) == 1 && match < 0 {
				match = i
			}
		}
		if match < 0 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="scimsync"`)
			writeError(w, http.StatusUnauthorized, "", "authentication required")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey, s.tokens[match].name)))
	})
}

// limitBody answers 413 for bodies over the limit; elimity itself reads without a bound.
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := s.cfg.MaxBodyBytes
		if r.ContentLength > limit {
			writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body over %d bytes", limit))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		body, err := readAll(r)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body over %d bytes", limit))
				return
			}
			writeError(w, http.StatusBadRequest, string(scimerr.ScimTypeInvalidSyntax), "could not read the request body")
			return
		}
		r.Body = body
		next.ServeHTTP(w, r)
	})
}

// libLogger adapts zap to elimity's Logger, which calls Error("msg", k, v, …).
type libLogger struct{ l *zap.Logger }

func (l libLogger) Error(args ...any) {
	if len(args) == 0 {
		return
	}
	msg, ok := args[0].(string)
	if !ok {
		msg = fmt.Sprint(args[0])
	}
	l.l.WithOptions(zap.AddCallerSkip(1)).Sugar().Errorw(msg, args[1:]...)
}
