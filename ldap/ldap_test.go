package ldap_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/ldap/slapdtest"
)

func clientFor(t *testing.T, srv *slapdtest.Server, mutate func(*ldap.Config)) *ldap.Client {
	t.Helper()
	cfg := ldap.DefaultConfig()
	cfg.URL = srv.URL
	cfg.BindDN = slapdtest.AdminDN
	cfg.BindPassword = config.NewSecret(slapdtest.AdminPW)
	cfg.BaseDN = slapdtest.People
	cfg.PageSize = 100
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := ldap.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPagedSearchReturnsEveryEntry(t *testing.T) {
	var seed strings.Builder
	const n = 1234
	for i := 0; i < n; i++ {
		seed.WriteString(slapdtest.Person(fmt.Sprintf("user%04d", i), slapdtest.UUID(i), "Given", fmt.Sprintf("Sn%d", i), fmt.Sprintf("user%04d@example.org", i)))
	}
	// names with filter and DN metacharacters, a comma in the cn, NUL-free non-ASCII
	seed.WriteString("dn: uid=odd,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: odd\ncn: Smith, J*hn (x) \\ Zoë\nsn: Ünal\nentryUUID: " + slapdtest.UUID(99999) + "\n\n")
	srv := slapdtest.Start(t, seed.String())
	c := clientFor(t, srv, nil)
	seen := map[string]ldap.Entry{}
	err := c.Users(context.Background(), []string{"uid", "cn", "sn", "mail"}, func(e ldap.Entry) error {
		if _, dup := seen[e.ID]; dup {
			t.Errorf("entry %s delivered twice", e.DN)
		}
		seen[e.ID] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n+1 {
		t.Fatalf("got %d entries over pages of 100, want %d", len(seen), n+1)
	}
	odd := seen[slapdtest.UUID(99999)]
	if odd.First("cn") != `Smith, J*hn (x) \ Zoë` || odd.First("sn") != "Ünal" {
		t.Fatalf("odd entry: %+v", odd)
	}
	// a filter built with escaping finds exactly that entry
	c2 := clientFor(t, srv, func(cfg *ldap.Config) { cfg.UserFilter = "(cn=" + ldap.EscapeFilter(odd.First("cn")) + ")" })
	var got []string
	if err := c2.Users(context.Background(), []string{"uid"}, func(e ldap.Entry) error { got = append(got, e.First("uid")); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "odd" {
		t.Fatalf("escaped filter found %v", got)
	}
}

func TestBindFailureAndUnreachable(t *testing.T) {
	srv := slapdtest.Start(t, "")
	c := clientFor(t, srv, func(cfg *ldap.Config) { cfg.BindPassword = config.NewSecret("wrong-password-xyz") })
	err := c.Users(context.Background(), nil, func(ldap.Entry) error { return nil })
	if err == nil || strings.Contains(err.Error(), "wrong-password-xyz") || !strings.Contains(err.Error(), "bind") {
		t.Fatalf("bad password: %v", err)
	}
	c = clientFor(t, srv, func(cfg *ldap.Config) {
		cfg.URL = "ldap://127.0.0.1:1"
		cfg.DialTimeout = config.Duration(time.Second)
	})
	if err := c.Users(context.Background(), nil, func(ldap.Entry) error { return nil }); err == nil {
		t.Fatal("unreachable directory gave no error")
	}
}

func TestCancelledSearchIsAnError(t *testing.T) {
	var seed strings.Builder
	for i := 0; i < 300; i++ {
		seed.WriteString(slapdtest.Person(fmt.Sprintf("u%d", i), slapdtest.UUID(i), "G", "S", ""))
	}
	srv := slapdtest.Start(t, seed.String())
	c := clientFor(t, srv, nil)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err := c.Users(ctx, nil, func(ldap.Entry) error {
		n++
		if n == 10 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled search returned %v after %d entries", err, n)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := ldap.DefaultConfig()
	cfg.URL = "ldaps://x"
	cfg.StartTLS = true
	cfg.BindDN = "not a dn"
	cfg.UserFilter = "(uid=bad"
	cfg.Scope = "everything"
	cfg.PageSize = 0
	ps := cfg.Validate()
	paths := map[string]bool{}
	for _, p := range ps {
		paths[p.Path] = true
	}
	for _, want := range []string{"start_tls", "bind_dn", "bind_password", "base_dn", "user_filter", "scope", "page_size"} {
		if !paths[want] {
			t.Errorf("no problem reported for %s (got %v)", want, ps)
		}
	}
}

// TestValidateKeepsURLCredentialsOut: a URL with credentials is refused, and neither that
// problem nor an unparsable URL's repeats the password.
func TestValidateKeepsURLCredentialsOut(t *testing.T) {
	for u, want := range map[string]string{
		"ldap://admin:s3cr3t-pw@ldap.example.org":     "must not carry credentials",
		"ldap://admin:s3cr3t-pw@ldap example.org:%zz": "not a URL",
	} {
		cfg := ldap.DefaultConfig()
		cfg.URL = u
		found := false
		for _, p := range cfg.Validate() {
			if p.Path != "url" {
				continue
			}
			found = strings.Contains(p.Msg, want)
			if strings.Contains(p.Msg, "s3cr3t") {
				t.Errorf("%s: the problem repeats the password: %s", u, p.Msg)
			}
		}
		if !found {
			t.Errorf("%s: no url problem saying %q", u, want)
		}
	}
}
