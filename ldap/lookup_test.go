package ldap_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/ldap/slapdtest"
)

func TestDiscoverOpenLDAP(t *testing.T) {
	srv := slapdtest.Start(t, "")
	info, err := clientFor(t, srv, nil).Discover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Vendor != ldap.VendorOpenLDAP || info.IsAD() || !info.Supports(ldap.OIDSyncRequest) ||
		!slices.Contains(info.NamingContexts, slapdtest.Suffix) {
		t.Fatalf("discovered %+v", info)
	}
}

func TestLookups(t *testing.T) {
	srv := slapdtest.Start(t, seedPeople(120)+"dn: uid=odd,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: odd\n"+
		"cn: Smith, J*hn (x) \\ Zoë\nsn: Ünal\nentryUUID: "+slapdtest.UUID(999)+"\n\n")
	c := clientFor(t, srv, nil)
	q := c.UserQuery([]string{"uid", "cn"})
	ctx := context.Background()

	// ByIDs batches (120 ids in three OR filters) and skips ids that match nothing
	var ids []string
	for i := 0; i < 120; i += 1 {
		ids = append(ids, slapdtest.UUID(i))
	}
	ids = append(ids, slapdtest.UUID(5000), slapdtest.UUID(999))
	got := map[string]bool{}
	if err := c.ByIDs(ctx, q, ids, func(e ldap.Entry) error {
		if got[e.ID] || e.UUID != e.ID {
			t.Errorf("ByIDs delivered %+v", e)
		}
		got[e.ID] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 121 || got[slapdtest.UUID(5000)] || !got[slapdtest.UUID(999)] {
		t.Fatalf("ByIDs found %d entries", len(got))
	}

	// Search ANDs a targeted filter built with escaping
	var found []string
	if err := c.Search(ctx, q, "(cn="+ldap.EscapeFilter(`Smith, J*hn (x) \ Zoë`)+")", func(e ldap.Entry) error {
		found = append(found, e.First("uid"))
		return nil
	}); err != nil || strings.Join(found, ",") != "odd" {
		t.Fatalf("Search found %v, %v", found, err)
	}
	if err := c.Search(ctx, q, "(uid=bad", func(ldap.Entry) error { return nil }); err == nil {
		t.Fatal("a broken extra filter was accepted")
	}

	// ByDN: in scope, in another case and spacing, out of scope, gone, filtered out
	for _, tt := range []struct {
		dn   string
		want string
	}{
		{slapdtest.PersonDN("u7"), "u7"},
		{"UID=U7, OU=People, DC=Example, DC=Org", "u7"},
		{"uid=nobody," + slapdtest.People, ""},
		{slapdtest.Moved, ""},
		{slapdtest.People, ""}, // in scope, but not an inetOrgPerson
	} {
		e, ok, err := c.ByDN(ctx, q, tt.dn)
		if err != nil || ok != (tt.want != "") || e.First("uid") != tt.want {
			t.Errorf("ByDN(%q) = %+v, %v, %v", tt.dn, e, ok, err)
		}
	}
	if _, _, err := c.ByDN(ctx, q, "not a dn"); err == nil {
		t.Error("ByDN took a broken DN")
	}
}

// TestGroupsAndDNForms reads the three kinds of group and shows that the DN the memberof overlay
// writes and the DN slapadd keeps differ as strings and agree once normalised.
func TestGroupsAndDNForms(t *testing.T) {
	people := "dn: cn=Research\\, Europe,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\ncn: Research, Europe\nsn: R\nuid: research\n\n" +
		seedPeople(3)
	groups := slapdtest.GroupOfUniqueNames("uniq", slapdtest.PersonDN("u1")+"#'0101'B", slapdtest.PersonDN("u2")) +
		slapdtest.PosixGroup("posix", 5000, "u0", "u2")
	srv := slapdtest.Start(t, people+groups)
	// online, through the memberof overlay: a group whose RDN has a comma, with a member whose
	// RDN has one too
	srv.Add(t, slapdtest.GroupOfNames("Sales, EMEA", "cn=Research\\2C Europe,ou=people,dc=example,dc=org", slapdtest.PersonDN("u0")))
	c := clientFor(t, srv, nil)
	ctx := context.Background()
	q := ldap.Query{BaseDN: slapdtest.Groups, Scope: "sub", Filter: "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
		Attributes: []string{"cn", "member", "uniqueMember", "memberUid"}, IDAttribute: "entryUUID"}
	byCN := map[string]ldap.Entry{}
	if err := c.Search(ctx, q, "", func(e ldap.Entry) error { byCN[e.First("cn")] = e; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(byCN) != 3 {
		t.Fatalf("groups %v", byCN)
	}
	sales := byCN["Sales, EMEA"]
	if n, _ := ldap.NormalizeDN(sales.DN); n != `cn=sales\, emea,ou=groups,dc=example,dc=org` {
		t.Fatalf("group DN %q normalises to %q", sales.DN, n)
	}
	var members []string
	for _, m := range sales.Attrs["member"] {
		n, err := ldap.NormalizeDN(m)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, n)
	}
	// the person as the memberof overlay names it in memberOf, and as the directory names it
	research, ok, err := c.ByDN(ctx, ldap.Query{BaseDN: slapdtest.People, Scope: "sub", Filter: "(objectClass=*)",
		Attributes: []string{"memberOf"}, IDAttribute: "entryUUID"}, "cn=Research\\, Europe,"+slapdtest.People)
	if err != nil || !ok {
		t.Fatalf("research: %v %v", ok, err)
	}
	memberOf := research.First("memberOf")
	if memberOf == "" {
		t.Fatal("the memberof overlay wrote no memberOf")
	}
	nm, _ := ldap.NormalizeDN(memberOf)
	ns, _ := ldap.NormalizeDN(sales.DN)
	nr, _ := ldap.NormalizeDN(research.DN)
	if nm != ns || !slices.Contains(members, nr) {
		t.Fatalf("normalised forms disagree: memberOf %q→%q group %q→%q; member %q→%q in %v", memberOf, nm, sales.DN, ns, research.DN, nr, members)
	}

	uniq := byCN["uniq"]
	var uids []string
	for _, v := range uniq.Attrs["uniquemember"] {
		dn, uid, err := ldap.SplitUniqueMember(v)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := ldap.NormalizeDN(dn)
		uids = append(uids, n+"#"+uid)
	}
	slices.Sort(uids)
	if strings.Join(uids, " ") != "uid=u1,ou=people,dc=example,dc=org#0101 uid=u2,ou=people,dc=example,dc=org#" {
		t.Fatalf("uniqueMember %v", uids)
	}
	if got := strings.Join(byCN["posix"].Attrs["memberuid"], ","); got != "u0,u2" {
		t.Fatalf("memberUid %s", got)
	}
}

// TestTimestampDelta is the fallback for servers without syncrepl or AD's mechanisms: upserts
// since the high-water mark minus the overlap; deletions are not seen (Deletes false).
func TestTimestampDelta(t *testing.T) {
	srv := slapdtest.Start(t, seedPeople(5))
	c := clientFor(t, srv, func(cfg *ldap.Config) {
		cfg.Delta = ldap.DeltaTimestamp
		cfg.TimestampOverlap = config.Duration(0)
	})
	q := c.UserQuery([]string{"uid", "mail"})
	d, cur := read(t, c, q, nil)
	d.expect(t, "first", true, "u0,u1,u2,u3,u4")
	if cur == nil || cur.Mechanism != ldap.DeltaTimestamp || cur.Time.IsZero() {
		t.Fatalf("cursor %+v", cur)
	}
	// modifyTimestamp has a one-second resolution, and the delta reads from the high-water
	// second inclusive (a write in the same second as the last read must not be missed), so the
	// entries stamped in that second come again
	time.Sleep(1100 * time.Millisecond)
	srv.Replace(t, slapdtest.PersonDN("u3"), "mail", "three@example.org")
	d, next := read(t, c, q, cur)
	d.expect(t, "delta 1", false, "u0,u1,u2,u3,u4")
	time.Sleep(1100 * time.Millisecond)
	srv.Replace(t, slapdtest.PersonDN("u2"), "mail", "two@example.org")
	srv.Delete(t, slapdtest.PersonDN("u4"))
	d, next2 := read(t, c, q, next)
	d.expect(t, "delta 2", false, "u2,u3")
	if d.res.Mechanism != ldap.DeltaTimestamp || d.res.Deletes || d.res.Warning == "" || !next2.Time.After(next.Time) || !next.Time.After(cur.Time) {
		t.Fatalf("timestamp delta %+v, cursor %v → %v → %v", d.res, cur.Time, next.Time, next2.Time)
	}
	if got := d.upserts[slapdtest.UUID(2)].First("mail"); got != "two@example.org" {
		t.Fatalf("u2 mail %q", got)
	}
	next = next2
	// with an overlap the same change is read again: harmless, and it is what covers clock skew
	c2 := clientFor(t, srv, func(cfg *ldap.Config) { cfg.Delta = ldap.DeltaTimestamp })
	d, _ = read(t, c2, q, next)
	d.expect(t, "overlap", false, "u0,u1,u2,u3")
	if d.res.Fallback != "" {
		t.Fatalf("overlap: %+v", d.res)
	}
}

func TestDeltaOffAndFile(t *testing.T) {
	srv := slapdtest.Start(t, seedPeople(3))
	c := clientFor(t, srv, func(cfg *ldap.Config) { cfg.Delta = ldap.DeltaOff })
	d, cur := read(t, c, c.UserQuery(nil), nil)
	if !d.res.Full || len(d.upserts) != 3 || cur != nil || d.res.Mechanism != ldap.MechanismFull {
		t.Fatalf("delta off: %+v", d.res)
	}
	cfg := ldap.DefaultConfig()
	cfg.URL = "file://testdata/ad-users.ldif"
	cfg.BaseDN = "OU=Staff,DC=example,DC=test"
	cfg.UserFilter = "(&(objectClass=user)(!(objectClass=computer)))"
	cfg.IDAttribute = "objectGUID"
	fc, err := ldap.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d, cur = read(t, fc, fc.UserQuery([]string{"sAMAccountName"}), nil)
	if !d.res.Full || d.res.Mechanism != ldap.MechanismFull || cur != nil || len(d.upserts) == 0 {
		t.Fatalf("file read: %+v, %d upserts", d.res, len(d.upserts))
	}
	for u, e := range d.upserts {
		if e.ID != u || len(u) != 36 {
			t.Fatalf("file entry %s has ID %q", u, e.ID)
		}
	}
}
