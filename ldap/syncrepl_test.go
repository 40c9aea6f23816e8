package ldap_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/ldap/slapdtest"
)

// delta is what one Read delivered, by kind.
type delta struct {
	res     ldap.ReadResult
	upserts map[string]ldap.Entry // by UUID
	deletes map[string]ldap.Entry // by UUID
	present map[string]ldap.Entry // by UUID
	order   []string              // "kind uuid" in delivery order
}

// read runs one Read and passes its cursor through JSON, as the engine stores it.
func read(t *testing.T, c *ldap.Client, q ldap.Query, cur *ldap.Cursor) (delta, *ldap.Cursor) {
	t.Helper()
	d := delta{upserts: map[string]ldap.Entry{}, deletes: map[string]ldap.Entry{}, present: map[string]ldap.Entry{}}
	res, err := c.Read(context.Background(), q, cur, func(ch ldap.Change) error {
		if ch.Entry.UUID == "" {
			t.Errorf("%s without a UUID: %+v", ch.Kind, ch.Entry)
		}
		m := map[ldap.ChangeKind]map[string]ldap.Entry{ldap.ChangeUpsert: d.upserts, ldap.ChangeDelete: d.deletes, ldap.ChangePresent: d.present}[ch.Kind]
		if _, dup := m[ch.Entry.UUID]; dup {
			t.Errorf("%s %s delivered twice", ch.Kind, ch.Entry.UUID)
		}
		m[ch.Entry.UUID] = ch.Entry
		d.order = append(d.order, ch.Kind.String()+" "+ch.Entry.UUID)
		return nil
	})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	d.res = res
	if res.Cursor.Mechanism == "" {
		return d, nil
	}
	b, err := res.Cursor.Encode()
	if err != nil {
		t.Fatal(err)
	}
	next, err := ldap.DecodeCursor(b)
	if err != nil {
		t.Fatalf("cursor %s does not decode: %v", b, err)
	}
	return d, &next
}

func (d delta) uids(m map[string]ldap.Entry) string {
	var out []string
	for _, e := range m {
		out = append(out, e.First("uid"))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func keys(m map[string]ldap.Entry) string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// expect checks a delta delivered exactly the upserts (by uid) and deletes (by UUID) given.
func (d delta) expect(t *testing.T, step string, full bool, upsertUIDs string, deleteUUIDs ...string) {
	t.Helper()
	sort.Strings(deleteUUIDs)
	if got := d.uids(d.upserts); got != upsertUIDs {
		t.Errorf("%s: upserts %q, want %q", step, got, upsertUIDs)
	}
	if got := keys(d.deletes); got != strings.Join(deleteUUIDs, ",") {
		t.Errorf("%s: deletes %q, want %q", step, got, strings.Join(deleteUUIDs, ","))
	}
	if d.res.Full != full {
		t.Errorf("%s: Full = %v, want %v (%+v)", step, d.res.Full, full, d.res)
	}
}

func seedPeople(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(slapdtest.Person(fmt.Sprintf("u%d", i), slapdtest.UUID(i), "Given", fmt.Sprintf("Sn%d", i), fmt.Sprintf("u%d@example.org", i)))
	}
	return b.String()
}

func TestSyncreplDeltas(t *testing.T) {
	srv := slapdtest.Start(t, seedPeople(10)+slapdtest.GroupOfNames("staff", slapdtest.PersonDN("u0")))
	c := clientFor(t, srv, func(cfg *ldap.Config) {
		cfg.UserFilter = "(&(objectClass=inetOrgPerson)(!(description=gone)))"
	})
	q := c.UserQuery([]string{"uid", "mail", "description"})

	var groupUUID string
	groups := ldap.Query{BaseDN: slapdtest.Groups, Scope: "sub", Filter: "(objectClass=groupOfNames)", IDAttribute: "entryUUID"}
	if err := c.Search(context.Background(), groups, "", func(e ldap.Entry) error { groupUUID = e.UUID; return nil }); err != nil || groupUUID == "" {
		t.Fatalf("group uuid %q: %v", groupUUID, err)
	}

	d, cur := read(t, c, q, nil)
	d.expect(t, "first read", true, "u0,u1,u2,u3,u4,u5,u6,u7,u8,u9")
	if d.res.Mechanism != ldap.MechanismFull || d.res.Fallback != "no cursor" || !d.res.Deletes || cur == nil || cur.Mechanism != ldap.DeltaSyncrepl {
		t.Fatalf("first read: %+v", d.res)
	}
	if e := d.upserts[slapdtest.UUID(1)]; e.ID != slapdtest.UUID(1) || e.First("mail") != "u1@example.org" {
		t.Fatalf("u1 read as %+v", e)
	}

	d, cur = read(t, c, q, cur)
	d.expect(t, "no change", false, "")
	if d.res.Mechanism != ldap.DeltaSyncrepl || d.res.Fallback != "" || len(d.present) != 0 {
		t.Fatalf("no change: %+v, present %d", d.res, len(d.present))
	}

	steps := []struct {
		name    string
		change  func()
		upserts string
		deletes []string
		check   func(delta)
	}{
		{"add", func() { srv.Add(t, slapdtest.Person("u10", slapdtest.UUID(10), "New", "Comer", "")) }, "u10", nil, nil},
		{"modify", func() { srv.Replace(t, slapdtest.PersonDN("u1"), "mail", "first@example.org") }, "u1", nil,
			func(d delta) {
				if got := d.upserts[slapdtest.UUID(1)].First("mail"); got != "first@example.org" {
					t.Errorf("modify: mail %q", got)
				}
			}},
		{"delete", func() { srv.Delete(t, slapdtest.PersonDN("u2")) }, "", []string{slapdtest.UUID(2)},
			func(d delta) {
				if e := d.deletes[slapdtest.UUID(2)]; e.ID != slapdtest.UUID(2) {
					t.Errorf("delete carries ID %q, want the entryUUID", e.ID)
				}
			}},
		{"modrdn", func() { srv.Rename(t, slapdtest.PersonDN("u3"), "uid=u3b", "") }, "u3b", nil,
			func(d delta) {
				if e := d.upserts[slapdtest.UUID(3)]; !strings.HasPrefix(e.DN, "uid=u3b,") || e.ID != slapdtest.UUID(3) {
					t.Errorf("modrdn gave %+v", e)
				}
			}},
		{"move out of the base", func() { srv.Rename(t, slapdtest.PersonDN("u4"), "uid=u4", slapdtest.Moved) }, "", []string{slapdtest.UUID(4)}, nil},
		{"leave the filter", func() { srv.Replace(t, slapdtest.PersonDN("u5"), "description", "gone") }, "", []string{slapdtest.UUID(5)}, nil},
		// slapd's session log names every changed entry that does not match the search now as
		// "no longer matching", even one that never did: the group (outside the base) comes back
		// as a delete the engine ignores. The memberof overlay's change to u6 does not show.
		{"group change only", func() { srv.AddValues(t, slapdtest.GroupDN("staff"), "member", slapdtest.PersonDN("u6")) }, "", []string{groupUUID}, nil},
		{"several at once", func() {
			srv.Replace(t, slapdtest.PersonDN("u7"), "mail", "seven@example.org")
			srv.Delete(t, slapdtest.PersonDN("u8"))
			srv.Replace(t, slapdtest.PersonDN("u5"), "description") // back into the filter
		}, "u5,u7", []string{slapdtest.UUID(8)}, nil},
	}
	for _, st := range steps {
		st.change()
		before := string(cur.Cookie)
		d, cur = read(t, c, q, cur)
		d.expect(t, st.name, false, st.upserts, st.deletes...)
		if d.res.Mechanism != ldap.DeltaSyncrepl || d.res.Fallback != "" {
			t.Errorf("%s: %+v", st.name, d.res)
		}
		if st.upserts+strings.Join(st.deletes, "") != "" && string(cur.Cookie) == before {
			t.Errorf("%s: the cookie did not advance (%s)", st.name, before)
		}
		if st.check != nil {
			st.check(d)
		}
	}

	// after a restart the session log is gone; changes made before and after still arrive
	srv.Replace(t, slapdtest.PersonDN("u9"), "mail", "nine@example.org")
	srv.Restart(t)
	srv.Delete(t, slapdtest.PersonDN("u0"))
	d, cur = read(t, c, q, cur)
	if d.res.Mechanism != ldap.DeltaSyncrepl || d.res.Fallback != "" {
		t.Fatalf("after restart: %+v", d.res)
	}
	if d.res.Full {
		// slapd answers with a present phase when its session log is gone: the changed entry in
		// full, and every entry in scope (the changed one too) as present; u0 is in neither
		d.expect(t, "after restart (present phase)", true, "u9")
		want := []string{slapdtest.UUID(1), slapdtest.UUID(3), slapdtest.UUID(5), slapdtest.UUID(6), slapdtest.UUID(7), slapdtest.UUID(9), slapdtest.UUID(10)}
		if got := keys(d.present); got != strings.Join(want, ",") {
			t.Fatalf("present after restart %s", got)
		}
	} else {
		d.expect(t, "after restart", false, "u9", slapdtest.UUID(0))
	}

	// a cursor that is still good after all that: no change, nothing delivered
	d, cur = read(t, c, q, cur)
	d.expect(t, "quiet after restart", false, "")

	// the configuration changes what is read: a full read, and a new cursor
	c2 := clientFor(t, srv, func(cfg *ldap.Config) { cfg.UserFilter = "(objectClass=inetOrgPerson)" })
	d, cur2 := read(t, c2, c2.UserQuery([]string{"uid", "mail", "description"}), cur)
	d.expect(t, "filter changed", true, "u1,u10,u3b,u5,u6,u7,u9")
	if d.res.Mechanism != ldap.MechanismFull || !strings.Contains(d.res.Fallback, "configuration changed") || cur2.Fingerprint == cur.Fingerprint {
		t.Fatalf("filter changed: %+v", d.res)
	}
	q2 := q
	q2.Attributes = []string{"uid", "mail", "description", "sn"}
	d, _ = read(t, c, q2, cur)
	if d.res.Mechanism != ldap.MechanismFull || !strings.Contains(d.res.Fallback, "configuration changed") {
		t.Fatalf("attribute added: %+v", d.res)
	}

	// a cursor from another server, or for another mechanism, is refused
	other := *cur
	other.Server = "ldap:ldap://elsewhere.example:389|dc=example,dc=org|x"
	d, _ = read(t, c, q, &other)
	if d.res.Mechanism != ldap.MechanismFull || !strings.Contains(d.res.Fallback, "another server") || !d.res.Full {
		t.Fatalf("other server: %+v", d.res)
	}
	other = *cur
	other.Mechanism = ldap.DeltaTimestamp
	d, _ = read(t, c, q, &other)
	if d.res.Mechanism != ldap.MechanismFull || !strings.Contains(d.res.Fallback, "cursor is for timestamp") {
		t.Fatalf("other mechanism: %+v", d.res)
	}

	// a cookie the server refuses (from "before a restore": newer than anything it has)
	future := *cur
	future.Cookie = []byte("rid=000,csn=20991231235959.000000Z#000000#000#000000")
	d, next := read(t, c, q, &future)
	d.expect(t, "refused cookie", true, "u1,u10,u3b,u5,u6,u7,u9")
	if d.res.Mechanism != ldap.MechanismFull || !strings.Contains(d.res.Fallback, "refused the cookie") || !d.res.CursorRefused ||
		next == nil || len(next.Cookie) == 0 {
		t.Fatalf("refused cookie: %+v", d.res)
	}
	d, _ = read(t, c, q, next)
	d.expect(t, "after the refused cookie", false, "")
}

// TestSyncreplPresentPhase makes the session log too short for the gap, so slapd answers with a
// present phase: unchanged entries as present, and the read counts as full.
func TestSyncreplPresentPhase(t *testing.T) {
	srv := slapdtest.StartWith(t, seedPeople(6), slapdtest.Options{SessionLog: 2})
	c := clientFor(t, srv, nil)
	q := c.UserQuery([]string{"uid"})
	_, cur := read(t, c, q, nil)
	for i := 10; i < 15; i++ {
		srv.Add(t, slapdtest.Person(fmt.Sprintf("n%d", i), slapdtest.UUID(i), "N", "N", ""))
	}
	for i := 10; i < 14; i++ {
		srv.Delete(t, slapdtest.PersonDN(fmt.Sprintf("n%d", i)))
	}
	srv.Delete(t, slapdtest.PersonDN("u0"))
	d, cur := read(t, c, q, cur)
	if !d.res.Full || d.res.Mechanism != ldap.DeltaSyncrepl {
		t.Fatalf("want a present phase (Full), got %+v with %v", d.res, d.order)
	}
	// what is in scope now is exactly what was delivered as upsert or present
	inScope := map[string]bool{}
	for u := range d.upserts {
		inScope[u] = true
	}
	for u := range d.present {
		inScope[u] = true
	}
	var got []string
	for u := range inScope {
		got = append(got, u)
	}
	slices.Sort(got)
	want := []string{slapdtest.UUID(1), slapdtest.UUID(2), slapdtest.UUID(3), slapdtest.UUID(4), slapdtest.UUID(5), slapdtest.UUID(14)}
	if !slices.Equal(got, want) {
		t.Fatalf("in scope after the present phase %v, want %v", got, want)
	}
	if _, ok := d.upserts[slapdtest.UUID(14)]; !ok {
		t.Fatalf("the added entry n14 is not an upsert: %v", d.order)
	}
	for u, e := range d.present {
		if e.ID != u {
			t.Fatalf("present %s carries ID %q", u, e.ID)
		}
	}
	d, _ = read(t, c, q, cur)
	if len(d.upserts)+len(d.deletes) != 0 {
		t.Fatalf("after the present phase: %v", d.order)
	}
}

func TestReadStopsOnCallerErrorAndCancel(t *testing.T) {
	srv := slapdtest.Start(t, seedPeople(300))
	c := clientFor(t, srv, nil)
	q := c.UserQuery([]string{"uid"})
	mine := errors.New("target is down")
	n := 0
	_, err := c.Read(context.Background(), q, nil, func(ldap.Change) error {
		n++
		if n == 5 {
			return mine
		}
		return nil
	})
	if !errors.Is(err, mine) || n != 5 {
		t.Fatalf("caller error: %v after %d changes", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	_, err = c.Read(ctx, q, nil, func(ldap.Change) error {
		n++
		if n == 10 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read returned %v after %d changes", err, n)
	}
}
