package ldap_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/ldap/slapdtest"
)

// TestSizeLimitIsPartial: a server's size limit cuts a read short; that is an error wrapping
// ErrPartial on every path, never a short success.
func TestSizeLimitIsPartial(t *testing.T) {
	srv := slapdtest.StartWith(t, seedPeople(50), slapdtest.Options{SizeLimit: 20})
	c := clientFor(t, srv, func(cfg *ldap.Config) {
		cfg.BindDN, cfg.BindPassword, cfg.PageSize = slapdtest.ReaderDN, config.NewSecret(slapdtest.ReaderPW), 10
	})
	q := c.UserQuery([]string{"uid"})
	ctx := context.Background()
	n := 0
	_, err := c.Read(ctx, q, nil, func(ldap.Change) error { n++; return nil })
	if !errors.Is(err, ldap.ErrPartial) {
		t.Fatalf("syncrepl refresh over the size limit: %v after %d changes", err, n)
	}
	n = 0
	err = c.Search(ctx, q, "", func(ldap.Entry) error { n++; return nil })
	if !errors.Is(err, ldap.ErrPartial) || n > 20 {
		t.Fatalf("paged search over the size limit: %v after %d entries", err, n)
	}
	if err := c.Users(ctx, []string{"uid"}, func(ldap.Entry) error { return nil }); !errors.Is(err, ldap.ErrPartial) {
		t.Fatalf("Users over the size limit: %v", err)
	}
	// under the limit the same account reads fine
	if err := c.Search(ctx, q, "(uid=u1*)", func(ldap.Entry) error { return nil }); err != nil {
		t.Fatalf("search under the limit: %v", err)
	}
}

// TestDroppedAndSilentServerArePartial stops slapd in the middle of a read, and pauses it (a
// hung server): both end the read with ErrPartial; the pause is noticed after request_timeout of
// silence even though go-ldap's own request timer is off for streaming.
func TestDroppedAndSilentServerArePartial(t *testing.T) {
	// more than the socket buffers hold, so the server is still sending when it stops
	srv := slapdtest.Start(t, seedPeople(50000))
	c := clientFor(t, srv, func(cfg *ldap.Config) { cfg.RequestTimeout = config.Duration(time.Second); cfg.PageSize = 1000 })
	q := c.UserQuery([]string{"uid", "cn", "sn", "mail"})

	n := 0
	start := time.Now()
	_, err := c.Read(context.Background(), q, nil, func(ldap.Change) error {
		n++
		if n == 1 {
			srv.Pause(t)
		}
		return nil
	})
	srv.Resume(t)
	if !errors.Is(err, ldap.ErrPartial) || !strings.Contains(err.Error(), "no answer") || n >= 50000 {
		t.Fatalf("paused server: %v after %d changes", err, n)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("the silence was noticed after %s", d)
	}

	n = 0
	err = c.Search(context.Background(), q, "", func(ldap.Entry) error {
		n++
		if n == 1 {
			srv.Stop()
		}
		return nil
	})
	if !errors.Is(err, ldap.ErrPartial) || n >= 50000 {
		t.Fatalf("stopped server: %v after %d entries", err, n)
	}
}

// TestServerStoppedBetweenPagesIsPartial: a server that stops after sending a whole page ends
// the read with ErrPartial. go-ldap starts no search on a connection it has seen close and
// reports nothing, which read as a last, empty page: the read looked complete.
func TestServerStoppedBetweenPagesIsPartial(t *testing.T) {
	srv := slapdtest.Start(t, seedPeople(3000))
	c := clientFor(t, srv, func(cfg *ldap.Config) { cfg.PageSize = 1000 })
	q := c.UserQuery([]string{"uid"})
	n := 0
	err := c.Search(context.Background(), q, "", func(ldap.Entry) error {
		if n++; n == 1000 {
			// the whole first page and its end have arrived; the next page finds the
			// connection closed (go-ldap notices the close within milliseconds)
			srv.Stop()
			time.Sleep(300 * time.Millisecond)
		}
		return nil
	})
	if !errors.Is(err, ldap.ErrPartial) || n != 1000 {
		t.Fatalf("stopped between pages: %v after %d entries", err, n)
	}
}
