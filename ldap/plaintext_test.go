package ldap_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
)

// TestPlaintextWarningReadsTheScheme: the scheme is case-insensitive (RFC 3986), and LDAP://
// dials plain LDAP just as ldap:// does, so it must be warned about just the same.
func TestPlaintextWarningReadsTheScheme(t *testing.T) {
	for _, tt := range []struct {
		url      string
		startTLS bool
		warn     bool
	}{
		{"ldap://dc1.example.org", false, true},
		{"LDAP://dc1.example.org", false, true},
		{"Ldap://dc1.example.org:389", false, true},
		{"LDAP://dc1.example.org", true, false},
		{"LDAPS://dc1.example.org", false, false},
		{"ldaps://dc1.example.org", false, false},
		{"LDAP://127.0.0.1:389", false, false},
		{"ldap://[::1]:389", false, false},
	} {
		cfg := ldap.DefaultConfig()
		cfg.URL, cfg.StartTLS, cfg.BaseDN = tt.url, tt.startTLS, "dc=example,dc=org"
		cfg.BindDN, cfg.BindPassword = "cn=syncer,dc=example,dc=org", config.NewSecret("pw")
		c, err := ldap.New(cfg)
		if err != nil {
			t.Fatalf("%s: %v", tt.url, err)
		}
		if got := c.InsecureWarning(); (got != "") != tt.warn {
			t.Errorf("%s start_tls=%v: warning %q, want one: %v", tt.url, tt.startTLS, got, tt.warn)
		}
	}
}

func TestFileURLSchemeIsCaseInsensitive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "export.ldif")
	ldif := "dn: uid=alice,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: alice\nentryUUID: 5f1e1c1e-0000-4000-8000-000000000001\n\n"
	if err := os.WriteFile(path, []byte(ldif), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := ldap.DefaultConfig()
	cfg.URL, cfg.BaseDN = "FILE://"+path, "ou=people,dc=example,dc=org"
	c, err := ldap.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	if err := c.Users(context.Background(), []string{"uid"}, func(e ldap.Entry) error { uids = append(uids, e.First("uid")); return nil }); err != nil || strings.Join(uids, ",") != "alice" {
		t.Fatalf("FILE:// read %v, %v", uids, err)
	}
}

// TestShortFileURLIsAnErrorNotAPanic: a file: URL without the // (file:x, file:/x) is read as
// the path it names or refused, never sliced past its end.
func TestShortFileURLIsAnErrorNotAPanic(t *testing.T) {
	for _, u := range []string{"file:x", "file:", "FILE:/x"} {
		cfg := ldap.DefaultConfig()
		cfg.URL, cfg.BaseDN = u, "ou=people,dc=example,dc=org"
		c, err := ldap.New(cfg)
		if err != nil {
			continue // refused up front: as good
		}
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s: panic %v", u, p)
				}
			}()
			if err := c.Users(context.Background(), []string{"uid"}, func(ldap.Entry) error { return nil }); err == nil {
				t.Errorf("%s: read without error", u)
			}
		}()
	}
}
