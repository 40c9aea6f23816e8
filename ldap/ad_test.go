package ldap_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/ldap/sambatest"
)

// TestMain stops the Samba DC the AD tests share (provisioned by the first one that needs it).
func TestMain(m *testing.M) {
	code := m.Run()
	sambatest.Stop()
	os.Exit(code)
}

const adUserFilter = "(&(objectClass=user)(!(objectClass=computer))(!(description=gone)))"

func adClient(t *testing.T, dc *sambatest.DC, base string, mutate func(*ldap.Config)) *ldap.Client {
	t.Helper()
	cfg := ldap.DefaultConfig()
	cfg.URL = dc.URL
	cfg.BindDN = sambatest.AdminUPN
	cfg.BindPassword = config.NewSecret(sambatest.AdminPW)
	cfg.BaseDN = base
	cfg.UserFilter = adUserFilter
	cfg.IDAttribute = "objectGUID"
	cfg.PageSize = 500
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := ldap.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var adAttrs = []string{"sAMAccountName", "userAccountControl", "mail", "description"}

func (d delta) sams(m map[string]ldap.Entry) string {
	var out []string
	for _, e := range m {
		out = append(out, e.First("sAMAccountName"))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func TestSambaDiscoverBindFormsAndSeed(t *testing.T) {
	dc := sambatest.Shared(t)
	ctx := context.Background()
	info, err := adClient(t, dc, sambatest.BaseDN, nil).Discover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !info.IsAD() || !info.Samba || !info.Supports(ldap.OIDDirSync) || !info.Supports(ldap.OIDShowDeleted) ||
		info.HighestCommittedUSN <= 0 || info.ForestFunctionality == "" || info.DSServiceName == "" ||
		!strings.EqualFold(info.DefaultNamingContext, sambatest.BaseDN) {
		t.Fatalf("discovered %+v", info)
	}

	// the three bind_dn forms Samba and AD take for a simple bind
	for _, name := range []string{sambatest.AdminUPN, sambatest.AdminDN, sambatest.Domain + `\Administrator`} {
		c := adClient(t, dc, sambatest.SeedOU, func(cfg *ldap.Config) { cfg.BindDN = name })
		n := 0
		if err := c.Users(ctx, []string{"sAMAccountName"}, func(ldap.Entry) error { n++; return nil }); err != nil || n != sambatest.SeedUsers {
			t.Fatalf("bind as %q: %d users, %v", name, n, err)
		}
	}

	// AD-shaped seed: disabled bit, built-in accounts, the computer left out by the filter
	c := adClient(t, dc, sambatest.BaseDN, func(cfg *ldap.Config) { cfg.UserFilter = "(objectClass=user)" })
	byName := map[string]ldap.Entry{}
	if err := c.Search(ctx, c.UserQuery([]string{"sAMAccountName", "userAccountControl", "isCriticalSystemObject", "objectClass"}), "",
		func(e ldap.Entry) error {
			if len(e.ID) != 36 || e.ID != e.UUID || e.First("objectGUID") != e.ID {
				t.Fatalf("entry %s: ID %q UUID %q", e.DN, e.ID, e.UUID)
			}
			byName[strings.ToLower(e.First("sAMAccountName"))] = e
			return nil
		}); err != nil {
		t.Fatal(err)
	}
	for name, disabled := range map[string]bool{"guest": true, "krbtgt": true, "administrator": false, "seed0003": true, "seed0004": false, "ws0001$": false} {
		e, ok := byName[name]
		if !ok {
			t.Fatalf("%s not read (%d entries)", name, len(byName))
		}
		var uac int
		fmt.Sscan(e.First("userAccountControl"), &uac)
		if (uac&2 != 0) != disabled {
			t.Errorf("%s: userAccountControl %d, disabled want %v", name, uac, disabled)
		}
	}
	if byName["krbtgt"].First("isCriticalSystemObject") != "TRUE" {
		t.Error("krbtgt is not a critical system object")
	}
}

// TestSambaRangedMembership reads a group with more members than AD returns at once
// (MaxValRange 1,500): the rest arrives through member;range=1500-*.
func TestSambaRangedMembership(t *testing.T) {
	dc := sambatest.Shared(t)
	c := adClient(t, dc, sambatest.SeedOU, nil)
	q := ldap.Query{BaseDN: sambatest.SeedOU, Scope: "sub", Filter: "(objectClass=group)", Attributes: []string{"member", "cn"}, IDAttribute: "objectGUID"}
	var groups []ldap.Entry
	if err := c.Search(context.Background(), q, "", func(e ldap.Entry) error { groups = append(groups, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 {
		t.Fatalf("%d groups", len(groups))
	}
	members := groups[0].Attrs["member"]
	if len(members) != sambatest.BigGroupMembers {
		t.Fatalf("big group has %d members, want %d", len(members), sambatest.BigGroupMembers)
	}
	want := map[string]bool{}
	for i := range sambatest.BigGroupMembers {
		n, _ := ldap.NormalizeDN(sambatest.SeedUserDN(i))
		want[n] = true
	}
	for _, m := range members {
		n, err := ldap.NormalizeDN(m)
		if err != nil || !want[n] {
			t.Fatalf("member %q: %v", m, err)
		}
		delete(want, n)
	}
	if len(want) != 0 {
		t.Fatalf("%d members missing", len(want))
	}
	for k := range groups[0].Attrs {
		if strings.Contains(k, ";range=") {
			t.Fatalf("ranged attribute name left in the entry: %s", k)
		}
	}
	// the same through ByDN
	e, ok, err := c.ByDN(context.Background(), q, sambatest.BigGroup)
	if err != nil || !ok || len(e.Attrs["member"]) != sambatest.BigGroupMembers {
		t.Fatalf("ByDN big group: %v %v %d", ok, err, len(e.Attrs["member"]))
	}
}

// adSteps runs the same changes through a delta mechanism and checks each delta is exact.
func adSteps(t *testing.T, dc *sambatest.DC, mech string) {
	ou := dc.OU(t, t.Name())
	outside := dc.OU(t, t.Name()+"-outside")
	for i := range 5 {
		dc.AddUser(t, ou, fmt.Sprintf("User %d", i), fmt.Sprintf("%s-u%d", mech, i), 512, map[string][]string{"mail": {fmt.Sprintf("u%d@example.test", i)}})
	}
	group := "CN=Team," + ou
	dc.Add(t, group, map[string][]string{"objectClass": {"group"}, "sAMAccountName": {mech + "-team"}})
	c := adClient(t, dc, ou, func(cfg *ldap.Config) { cfg.Delta = mech })
	q := c.UserQuery(adAttrs)

	d, cur := read(t, c, q, nil)
	p := mech + "-"
	if got := d.sams(d.upserts); got != p+"u0,"+p+"u1,"+p+"u2,"+p+"u3,"+p+"u4" || !d.res.Full || d.res.Mechanism != ldap.MechanismFull || cur.Mechanism != mech {
		t.Fatalf("first read: %s, %+v", got, d.res)
	}
	guid := map[string]string{}
	for u, e := range d.upserts {
		guid[e.First("sAMAccountName")] = u
	}
	d, cur = read(t, c, q, cur)
	if len(d.order) != 0 || d.res.Mechanism != mech || d.res.Fallback != "" {
		t.Fatalf("no change: %v %+v", d.order, d.res)
	}

	user := func(i int) string { return fmt.Sprintf("CN=User %d,%s", i, ou) }
	var groupDelete []string
	if mech == ldap.DeltaUSN {
		groupDelete = []string{"group"}
	}
	steps := []struct {
		name    string
		change  func()
		upserts string
		deletes []string
		check   func(delta)
	}{
		{"add", func() { dc.AddUser(t, ou, "User 5", p+"u5", 512, nil) }, p + "u5", nil, nil},
		{"modify", func() { dc.Replace(t, user(1), "mail", "one@example.test") }, p + "u1", nil, func(d delta) {
			if got := d.upserts[guid[p+"u1"]].First("mail"); got != "one@example.test" {
				t.Errorf("modify: mail %q", got)
			}
		}},
		{"disable", func() { dc.Replace(t, user(2), "userAccountControl", "514") }, p + "u2", nil, func(d delta) {
			if got := d.upserts[guid[p+"u2"]].First("userAccountControl"); got != "514" {
				t.Errorf("disable: userAccountControl %q", got)
			}
		}},
		{"delete", func() { dc.Delete(t, user(3)) }, "", []string{guid[p+"u3"]}, func(d delta) {
			if e := d.deletes[guid[p+"u3"]]; e.ID != guid[p+"u3"] || e.DN != "" {
				t.Errorf("delete notice %+v", e)
			}
		}},
		{"move out of the base", func() { dc.Move(t, user(4), "CN=User 4", outside) }, "", []string{guid[p+"u4"]}, func(d delta) {
			if e := d.deletes[guid[p+"u4"]]; !strings.HasSuffix(strings.ToLower(e.DN), strings.ToLower(outside)) {
				t.Errorf("moved-out notice carries DN %q", e.DN)
			}
		}},
		{"rename inside the base", func() { dc.Move(t, user(0), "CN=User Zero", "") }, p + "u0", nil, func(d delta) {
			if e := d.upserts[guid[p+"u0"]]; !strings.HasPrefix(e.DN, "CN=User Zero,") {
				t.Errorf("rename: DN %q", e.DN)
			}
		}},
		{"leave the filter", func() { dc.Replace(t, user(1), "description", "gone") }, "", []string{guid[p+"u1"]}, nil},
		// DirSync reports only objects whose requested attributes changed (member is not one);
		// uSNChanged sees the group change, and the group, not a user, comes as a delete
		{"group membership (not a user)", func() { dc.AddValues(t, group, "member", user(2)) }, "", groupDelete, nil},
	}
	for _, st := range steps {
		st.change()
		d, next := read(t, c, q, cur)
		if d.res.Mechanism != mech || d.res.Fallback != "" || d.res.Full || !d.res.Deletes {
			t.Fatalf("%s: %+v", st.name, d.res)
		}
		if got := d.sams(d.upserts); got != st.upserts {
			t.Errorf("%s: upserts %q, want %q", st.name, got, st.upserts)
		}
		want := append([]string(nil), st.deletes...)
		for i, w := range want {
			if w == "group" {
				want[i] = groupGUID(t, c, group)
			}
		}
		sort.Strings(want)
		if got := keys(d.deletes); got != strings.Join(want, ",") {
			t.Errorf("%s: deletes %q, want %q (%v)", st.name, got, strings.Join(want, ","), d.order)
		}
		if st.check != nil {
			st.check(d)
		}
		switch mech {
		case ldap.DeltaUSN:
			if next.USN <= cur.USN {
				t.Errorf("%s: USN did not advance (%d → %d)", st.name, cur.USN, next.USN)
			}
		default:
			if string(next.Cookie) == string(cur.Cookie) {
				t.Errorf("%s: cookie did not advance", st.name)
			}
		}
		cur = next
	}
	d, _ = read(t, c, q, cur)
	if len(d.order) != 0 {
		t.Fatalf("quiet end: %v", d.order)
	}
}

func groupGUID(t *testing.T, c *ldap.Client, dn string) string {
	t.Helper()
	e, ok, err := c.ByDN(context.Background(), ldap.Query{BaseDN: dn, Scope: "base", Filter: "(objectClass=group)", IDAttribute: "objectGUID"}, dn)
	if err != nil || !ok {
		t.Fatalf("group %s: %v %v", dn, ok, err)
	}
	return e.UUID
}

func TestSambaDirSyncDeltas(t *testing.T) { adSteps(t, sambatest.Shared(t), ldap.DeltaDirSync) }

func TestSambaUSNDeltas(t *testing.T) { adSteps(t, sambatest.Shared(t), ldap.DeltaUSN) }

// TestSambaDirSyncNotPermitted binds as an account without "Replicating Directory Changes":
// with ldap.delta auto the read goes on with uSNChanged and says why; granting the right makes
// DirSync work for the same account (bound as DOMAIN\user this time).
func TestSambaDirSyncNotPermitted(t *testing.T) {
	dc := sambatest.Shared(t)
	ou := dc.OU(t, t.Name())
	dc.AddUser(t, ou, "Plain One", "plain-one", 512, nil)
	upn := dc.CreateAccount(t, "svc-plain", "Svc-Plain-Passw0rd")
	plain := func(cfg *ldap.Config) { cfg.BindDN, cfg.BindPassword = upn, config.NewSecret("Svc-Plain-Passw0rd") }
	c := adClient(t, dc, ou, plain)
	q := c.UserQuery(adAttrs)
	d, cur := read(t, c, q, nil)
	if !d.res.Full || cur == nil || cur.Mechanism != ldap.DeltaUSN || !strings.Contains(d.res.Fallback, "DirSync not permitted") ||
		!strings.Contains(d.res.Fallback, "Replicating Directory Changes") || d.res.CursorRefused {
		t.Fatalf("first read as a plain account: %+v", d.res)
	}
	dc.Replace(t, "CN=Plain One,"+ou, "mail", "plain@example.test")
	d, cur = read(t, c, q, cur)
	if d.res.Mechanism != ldap.DeltaUSN || d.sams(d.upserts) != "plain-one" || d.res.Fallback != "" {
		t.Fatalf("usn delta as a plain account: %+v %v", d.res, d.order)
	}
	// the plain account cannot list CN=Deleted Objects: deletions stay unknown, and it says so
	if d.res.Deletes || d.res.Warning == "" {
		t.Fatalf("a plain account's usn delta claims to see deletions: %+v", d.res)
	}

	strict := adClient(t, dc, ou, func(cfg *ldap.Config) { plain(cfg); cfg.Delta = ldap.DeltaDirSync })
	if _, err := strict.Read(context.Background(), q, nil, func(ldap.Change) error { return nil }); err == nil ||
		!strings.Contains(err.Error(), "Replicating Directory Changes") {
		t.Fatalf("delta: dirsync without the right: %v", err)
	}

	dc.CreateAccount(t, "svc-repl", "Svc-Repl-Passw0rd")
	dc.GrantReplicatingChanges(t, "svc-repl")
	granted := adClient(t, dc, ou, func(cfg *ldap.Config) {
		cfg.BindDN, cfg.BindPassword = sambatest.Domain+`\svc-repl`, config.NewSecret("Svc-Repl-Passw0rd")
	})
	d, gcur := read(t, granted, q, nil)
	if gcur == nil || gcur.Mechanism != ldap.DeltaDirSync || d.res.Fallback != "no cursor" {
		t.Fatalf("granted account: %+v", d.res)
	}
	dc.Replace(t, "CN=Plain One,"+ou, "mail", "again@example.test")
	d, gcur = read(t, granted, q, gcur)
	if d.res.Mechanism != ldap.DeltaDirSync || d.sams(d.upserts) != "plain-one" || len(d.deletes) != 0 {
		t.Fatalf("granted account's DirSync delta: %+v %v", d.res, d.order)
	}
	// Samba (unlike Windows) hides tombstones from DirSync unless the account may list
	// CN=Deleted Objects: the read must not claim it saw deletions
	dc.Delete(t, "CN=Plain One,"+ou)
	d, _ = read(t, granted, q, gcur)
	if d.res.Mechanism != ldap.DeltaDirSync || d.res.Deletes || d.res.Warning == "" {
		t.Fatalf("granted account's DirSync delta after a delete: %+v %v", d.res, d.order)
	}
}

// TestSambaCursorFromAnotherDC: a cursor is only meaningful on the DC that issued it. A DC
// rebuilt behind the same address (same name, new invocationId) refuses it; the original DC,
// back, takes it again. A cookie the DC cannot parse is a full read too.
func TestSambaCursorFromAnotherDC(t *testing.T) {
	dc := sambatest.Shared(t)
	for _, mech := range []string{ldap.DeltaDirSync, ldap.DeltaUSN} {
		c := adClient(t, dc, sambatest.BaseDN, func(cfg *ldap.Config) {
			cfg.UserFilter = "(sAMAccountName=Administrator)"
			cfg.Delta = mech
		})
		q := c.UserQuery(adAttrs)
		_, cur := read(t, c, q, nil)
		if cur == nil || cur.Mechanism != mech {
			t.Fatalf("%s: cursor %+v", mech, cur)
		}
		restore := dc.StartAnother(t)
		d, _ := read(t, c, q, cur)
		restore()
		if !d.res.Full || d.res.Mechanism != ldap.MechanismFull || !strings.Contains(d.res.Fallback, "another server") || len(d.upserts) != 1 {
			t.Fatalf("%s on another DC: %+v", mech, d.res)
		}
		d, _ = read(t, c, q, cur)
		if d.res.Mechanism != mech || d.res.Fallback != "" {
			t.Fatalf("%s back on the issuing DC: %+v", mech, d.res)
		}
		if mech == ldap.DeltaDirSync {
			bad := *cur
			bad.Cookie = []byte("not a DirSync cookie")
			d, next := read(t, c, q, &bad)
			if !d.res.Full || !strings.Contains(d.res.Fallback, "rejected the DirSync cookie") || next == nil || len(next.Cookie) == 0 {
				t.Fatalf("garbage cookie: %+v", d.res)
			}
		}
	}
}

// TestSambaTimestamp: ldap.delta timestamp works on AD too (modifyTimestamp is constructed from
// whenChanged there), for DCs where neither DirSync nor uSNChanged may be used.
func TestSambaTimestamp(t *testing.T) {
	dc := sambatest.Shared(t)
	ou := dc.OU(t, t.Name())
	dc.AddUser(t, ou, "Stamp One", "stamp-one", 512, nil)
	dc.AddUser(t, ou, "Stamp Two", "stamp-two", 512, nil)
	c := adClient(t, dc, ou, func(cfg *ldap.Config) { cfg.Delta = ldap.DeltaTimestamp; cfg.TimestampOverlap = 0 })
	q := c.UserQuery(adAttrs)
	d, cur := read(t, c, q, nil)
	if d.sams(d.upserts) != "stamp-one,stamp-two" || cur == nil || cur.Mechanism != ldap.DeltaTimestamp {
		t.Fatalf("first read: %v %+v", d.order, d.res)
	}
	time.Sleep(1100 * time.Millisecond) // whenChanged has a one-second resolution
	dc.Replace(t, "CN=Stamp Two,"+ou, "mail", "two@example.test")
	d, next := read(t, c, q, cur)
	if d.res.Mechanism != ldap.DeltaTimestamp || d.res.Deletes || !strings.Contains(d.sams(d.upserts), "stamp-two") || !next.Time.After(cur.Time) {
		t.Fatalf("timestamp delta on AD: %v %+v", d.order, d.res)
	}
}
