package sync

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/scimsync/scimsync/ldap"
)

func TestRuleChecks(t *testing.T) {
	tests := []struct {
		rule Rule
		v    string
		ok   bool
	}{
		{Rule{MaxLength: 5}, "abcde", true},
		{Rule{MaxLength: 5}, "abcdef", false},
		{Rule{MaxLength: 4}, "Zoë!", true}, // characters, not bytes
		{Rule{MinLength: 2}, "a", false},
		{Rule{Pattern: "[A-Za-z0-9-]+"}, "jo-hn", true},
		{Rule{Pattern: "[A-Za-z0-9-]+"}, "jo.hn", false},
		{Rule{Pattern: "[a-z]+"}, "abc1", false}, // the whole value must match
		{Rule{Email: true}, "a@b.org", true},
		{Rule{Email: true}, "a@b", false},
		{Rule{Email: true}, "@b.org", false},
		{Rule{Email: true}, "a b@c.org", false},
	}
	for _, tt := range tests {
		m, ps := NewMapping("generic", MappingConfig{Rules: map[string]Rule{"title": tt.rule}})
		if len(ps) > 0 {
			t.Fatal(ps)
		}
		rule, _ := m.rules["title"].check(tt.v)
		if (rule == "") != tt.ok {
			t.Errorf("%+v on %q: broke %q", tt.rule, tt.v, rule)
		}
	}
}

func TestProfileUserNames(t *testing.T) {
	tests := []struct {
		profile, uid, mail, want string
	}{
		{"nuage-vsd", "Zoë.Ünal", "z@x.org", "Zoe-Unal"},
		{"nuage-vsd", strings.Repeat("x", 40), "z@x.org", strings.Repeat("x", 32)},
		{"nuage-vsd", "a b,c", "z@x.org", "a-b-c"},
		{"passbolt", "ignored", "John.Smith@Example.ORG", "john.smith@example.org"},
		{"cloudomation", "jsmith", "j@x.org", "jsmith"},
	}
	for _, tt := range tests {
		m, ps := NewMapping(tt.profile, MappingConfig{})
		if len(ps) > 0 {
			t.Fatal(ps)
		}
		d, merr := m.Map(ldap.Entry{DN: "uid=x", ID: "1", Attrs: map[string][]string{"uid": {tt.uid}, "mail": {tt.mail},
			"givenname": {"G"}, "sn": {"S"}, "cn": {"G S"}}})
		if merr != nil || d.UserName() != tt.want {
			t.Errorf("%s(%q): %q %v, want %q", tt.profile, tt.uid, d.UserName(), merr, tt.want)
		}
	}
}

func TestSuffixesAreStableAndFit(t *testing.T) {
	m, _ := NewMapping("nuage-vsd", MappingConfig{})
	mk := func(id, dn, name string) Desired {
		return Desired{ExternalID: id, DN: dn, Values: map[string]string{"userName": name}}
	}
	long := strings.Repeat("a", 32)
	got, invalid := assignNames(m, []Desired{mk("1", "uid=b", long), mk("2", "uid=a", long), mk("3", "uid=c", long)}, nil)
	for _, n := range got {
		if utf8.RuneCountInString(n) > 32 {
			t.Fatalf("suffixed name too long: %q", n)
		}
	}
	if len(invalid) != 0 || got["2"] != long || got["1"] != long[:30]+"-2" || got["3"] != long[:30]+"-3" {
		t.Fatalf("first assignment %v", got)
	}
	// next run: user 2 has left; the others keep their recorded names, nobody is renamed, whatever
	// order the directory returns them in
	links := map[string]string{"1": got["1"], "3": got["3"]}
	again, _ := assignNames(m, []Desired{mk("3", "uid=c", long), mk("1", "uid=b", long)}, links)
	for ext, n := range again {
		if n != got[ext] {
			t.Fatalf("user %s renamed from %q to %q", ext, got[ext], n)
		}
	}
	// without suffixes the loser is invalid, and the linked user wins over the smaller DN
	plain, _ := NewMapping("generic", MappingConfig{})
	names, inv := assignNames(plain, []Desired{mk("9", "uid=a", "x"), mk("8", "uid=z", "x")}, map[string]string{"8": "x"})
	if names["8"] != "x" || inv["9"].Rule != "unique" || !strings.Contains(inv["9"].Reason, "uid=z") {
		t.Fatalf("linked user must win: %v %+v", names, inv)
	}
}

// assignNames runs the name claims of a full read over ds (links: externalId -> linked name).
func assignNames(m *Mapping, ds []Desired, links map[string]string) (map[string]string, map[string]Item) {
	c := newClaims(m)
	dns := map[string]string{}
	for _, d := range ds {
		dns[d.ExternalID] = d.DN
	}
	c.dnOf = func(ext string) string { return dns[ext] }
	for _, d := range ds {
		name, linked := links[d.ExternalID]
		c.claim(d, linked, name)
	}
	c.resolve()
	names, invalid := map[string]string{}, map[string]Item{}
	for _, d := range ds {
		if n, inv := c.result(d); inv != nil {
			invalid[d.ExternalID] = *inv
		} else {
			names[d.ExternalID] = n
		}
	}
	return names, invalid
}

var nuageUserName = regexp.MustCompile(`^[A-Za-z0-9-]{1,32}$`)

// FuzzProfiles: whatever the directory holds, a profile either reports the user invalid or
// produces values that keep the target's rules, also after collision suffixes.
func FuzzProfiles(f *testing.F) {
	f.Add("Zoë.Ünal", "Zoë", "Ünal", "Zoë Ünal", "zoe@example.org")
	f.Add(strings.Repeat("ü", 40), "", "", "Smith, John", "a@b.c")
	f.Add("日本", "x", "y", "z", "not-an-email")
	mappings := map[string]*Mapping{}
	for _, name := range ProfileNames() {
		mappings[name], _ = NewMapping(name, MappingConfig{})
	}
	f.Fuzz(func(t *testing.T, uid, given, sn, cn, mail string) {
		attrs := map[string][]string{}
		for k, v := range map[string]string{"uid": uid, "givenname": given, "sn": sn, "cn": cn, "mail": mail} {
			if v != "" {
				attrs[k] = []string{v}
			}
		}
		for name, m := range mappings {
			d, merr := m.Map(ldap.Entry{DN: "uid=x", ID: "id", Attrs: attrs})
			if merr != nil {
				continue
			}
			for k, r := range m.rules {
				if v, ok := d.Values[k]; ok {
					if rule, problem := r.check(v); rule != "" {
						t.Fatalf("%s: %s breaks %s: %s", name, k, rule, problem)
					}
				}
			}
			if name == "nuage-vsd" {
				twin := Desired{ExternalID: "id2", DN: "uid=y", Values: map[string]string{"userName": d.UserName()}}
				names, _ := assignNames(m, []Desired{d, twin}, nil)
				for _, n := range names {
					if !nuageUserName.MatchString(n) {
						t.Fatalf("nuage userName %q breaks the rule", n)
					}
				}
				if d.Values["name.givenName"] == "" || d.Values["emails.work"] == "" {
					t.Fatalf("nuage: required values missing without an error: %v", d.Values)
				}
			}
		}
	})
}
