package ldap_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/ldap/slapdtest"
)

func TestTLSVerifiedByDefault(t *testing.T) {
	srv := slapdtest.StartTLS(t, slapdtest.Person("alice", slapdtest.UUID(1), "Alice", "A", "alice@example.org"))
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	_ = os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	tests := []struct {
		name     string
		cfg      func(*ldap.Config)
		wantErr  string // "" = reads alice
		insecure bool   // InsecureWarning must say so
	}{
		{"ldaps with the CA", func(c *ldap.Config) { c.URL, c.CAFile = srv.LDAPSURL, srv.CAFile }, "", false},
		{"StartTLS with the CA", func(c *ldap.Config) { c.StartTLS, c.CAFile = true, srv.CAFile }, "", false},
		{"ldaps, unknown CA", func(c *ldap.Config) { c.URL = srv.LDAPSURL }, "certificate", false},
		{"StartTLS, unknown CA", func(c *ldap.Config) { c.StartTLS = true }, "certificate", false},
		{"ldaps, verification off", func(c *ldap.Config) { c.URL, c.InsecureSkipVerify = srv.LDAPSURL, true }, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clientFor(t, srv, tt.cfg)
			var uids []string
			err := c.Users(context.Background(), []string{"uid"}, func(e ldap.Entry) error { uids = append(uids, e.First("uid")); return nil })
			switch {
			case tt.wantErr == "" && (err != nil || len(uids) != 1):
				t.Fatalf("got %v, %v", uids, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("want an error about %q, got %v", tt.wantErr, err)
			case err != nil && strings.Contains(err.Error(), slapdtest.AdminPW):
				t.Fatal("the error leaks the bind password")
			}
			if got := c.InsecureWarning() != ""; got != tt.insecure {
				t.Fatalf("InsecureWarning %q", c.InsecureWarning())
			}
		})
	}
	cfg := ldap.DefaultConfig()
	cfg.URL, cfg.BaseDN, cfg.CAFile = srv.LDAPSURL, slapdtest.People, notPEM
	cfg.BindDN, cfg.BindPassword = slapdtest.AdminDN, config.NewSecret(slapdtest.AdminPW)
	if _, err := ldap.New(cfg); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("ca_file without a certificate: %v", err)
	}
}
