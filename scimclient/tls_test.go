package scimclient

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap/slapdtest"
	"github.com/scimsync/scimsync/scimserver"
	"github.com/scimsync/scimsync/state"
)

func TestServerTLSAndClientVerification(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key, err := slapdtest.Certificates(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(dir, "state.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := scimserver.DefaultServerConfig()
	cfg.Listen, cfg.TLSCertFile, cfg.TLSKeyFile = "127.0.0.1:0", cert, key
	cfg.Tokens = []scimserver.TokenConfig{{Name: "t", Token: config.NewSecret(testToken)}}
	srv, err := scimserver.NewServer(cfg, st, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.Background())
	base := "https://" + srv.Addr() + "/scim/v2"
	for _, tt := range []struct {
		name    string
		caFile  string
		wantErr bool
	}{{"trusted CA", ca, false}, {"system roots only", "", true}} {
		t.Run(tt.name, func(t *testing.T) {
			tc := DefaultTargetConfig()
			tc.URL, tc.Token, tc.CAFile, tc.MaxRetries = base, config.NewSecret(testToken), tt.caFile, 0
			c, err := NewClient(tc, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			caps, err := c.Discover(context.Background())
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("want a certificate error, got %v", err)
				}
				return
			}
			if err != nil || !caps.Patch {
				t.Fatalf("discover over TLS: %+v %v", caps, err)
			}
			// meta.location follows the scheme the request came in on
			doc, err := c.CreateUser(context.Background(), userBody("alice", "e1"))
			if err != nil || !strings.HasPrefix(doc["meta"].(map[string]any)["location"].(string), "https://") {
				t.Fatalf("create over TLS: %v %v", doc, err)
			}
		})
	}
}
