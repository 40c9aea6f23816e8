package ldap

import (
	"context"
	"strings"
	"testing"
)

const sampleLDIF = `version: 1
# a comment
dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice
  Liddell
sn:: w5xuYWw=
mail: alice@example.org
entryUUID: u-1

dn: uid=bob,ou=other,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
entryUUID: u-2

dn: cn=group,ou=people,dc=example,dc=org
objectClass: groupOfNames
cn: group
`

func TestReadLDIF(t *testing.T) {
	var got []Entry
	if err := ReadLDIF(strings.NewReader(sampleLDIF), func(e Entry) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].First("cn") != "Alice Liddell" || got[0].First("sn") != "Ünal" {
		t.Fatalf("parsed %+v", got)
	}
	for _, bad := range []string{"dn: x\nchangetype: modify\n", " continuation\n", "uid: before-dn\n", "dn: x\nsn:: !!!\n", "dn: x\nnocolon\n"} {
		if err := ReadLDIF(strings.NewReader(bad), func(Entry) error { return nil }); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestFileSourceAppliesBaseScopeAndFilter(t *testing.T) {
	q := Query{BaseDN: "ou=people,dc=example,dc=org", Scope: "sub", Filter: "(objectClass=inetOrgPerson)", IDAttribute: "entryUUID"}
	var ids []string
	err := filterEntries(context.Background(), strings.NewReader(sampleLDIF), q, "", func(e Entry) error { ids = append(ids, e.ID); return nil })
	if err != nil || strings.Join(ids, ",") != "u-1" {
		t.Fatalf("ids %v err %v", ids, err)
	}
}

func TestMatcher(t *testing.T) {
	e := Entry{DN: "uid=a", Attrs: map[string][]string{"objectclass": {"top", "inetOrgPerson"}, "uid": {"Alice"}, "mail": {"a@x.org"}, "ou": {"Sales"}, "uac": {"514"}}}
	tests := map[string]bool{
		"(objectClass=inetorgperson)":           true,
		"(uid=alice)":                           true,
		"(&(uid=alice)(ou=Sales))":              true,
		"(|(uid=bob)(ou=sales))":                true,
		"(!(uid=alice))":                        false,
		"(mail=*)":                              true,
		"(title=*)":                             false,
		"(mail=a*@x.*)":                         true,
		"(mail=*@y.org)":                        false,
		"(uid>=B)":                              false,
		"(uid<=B)":                              true,
		"(cn=" + EscapeFilter("J*hn (x)") + ")": false,
		"(uac:1.2.840.113556.1.4.803:=2)":       true,
		"(uac:1.2.840.113556.1.4.803:=18)":      false,
		"(uac:1.2.840.113556.1.4.804:=18)":      true,
		"(uac:2.5.13.2:=2)":                     false,
	}
	for f, want := range tests {
		m, err := CompileMatcher(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if got := m.Match(e); got != want {
			t.Errorf("%s = %v, want %v", f, got, want)
		}
	}
}

func TestMatcherAttributes(t *testing.T) {
	m, err := CompileMatcher("(|(nsAccountLock=TRUE)(pwdAccountLockedTime=*)(userAccountControl:1.2.840.113556.1.4.803:=2))")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.Attributes(), ","); got != "nsAccountLock,pwdAccountLockedTime,userAccountControl" {
		t.Fatalf("attributes %s", got)
	}
}

func FuzzLDIF(f *testing.F) {
	f.Add(sampleLDIF)
	f.Add("dn: a\n b\nx:: QQ==\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		_ = ReadLDIF(strings.NewReader(s), func(e Entry) error {
			if e.DN == "" {
				t.Fatal("entry without DN delivered")
			}
			return nil
		})
	})
}

func FuzzFilterAndDN(f *testing.F) {
	f.Add("(&(uid=a*)(!(cn=x)))", "uid=a,ou=people,dc=example,dc=org", "a*b(c)\\")
	f.Fuzz(func(t *testing.T, filter, dn, value string) {
		e := Entry{DN: dn, Attrs: map[string][]string{"uid": {value}, "cn": {value}}}
		if m, err := CompileMatcher(filter); err == nil {
			_ = m.Match(e)
		}
		// an escaped value always yields a valid filter that matches the value itself
		m, err := CompileMatcher("(uid=" + EscapeFilter(value) + ")")
		if err != nil {
			t.Fatalf("escaped %q gives an invalid filter: %v", value, err)
		}
		if !m.Match(e) {
			t.Fatalf("escaped filter for %q does not match it", value)
		}
		if d, err := ParseDN(dn); err == nil {
			base, _ := ParseDN("dc=example,dc=org")
			_ = inScope(base, d.String(), "one")
		}
	})
}
