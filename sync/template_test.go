package sync

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/state"
)

func entry() ldap.Entry {
	return ldap.Entry{DN: "uid=zoe,ou=people,dc=example,dc=org", ID: "id-1", Attrs: map[string][]string{
		"uid": {"Zoë.Ünal"}, "givenname": {"Zoë"}, "sn": {"Ünal"}, "cn": {"Ünal, Zoë"}, "mail": {"Zoe@Example.org"},
		"upn": {"zoe@corp.example"},
	}}
}

func TestTemplates(t *testing.T) {
	tests := []struct {
		src  string
		want string
		ok   bool
	}{
		{`{uid}`, "Zoë.Ünal", true},
		{`static`, "static", true},
		{`{givenName} {sn}`, "Zoë Ünal", true},
		{`{title} {sn}`, "", false},
		{`{title ?? ""} {sn}`, "Ünal", true},
		{`{title | default("Staff")}`, "Staff", true},
		{`{title ?? "Staff"}`, "Staff", true},
		{`{mail | lower}`, "zoe@example.org", true},
		{`{nomail ?? upn ?? mail}`, "zoe@corp.example", true},
		{`{uid | ascii | lower | replace("[^a-z0-9-]", "-") | truncate(5)}`, "zoe-u", true},
		{`{cn | upper}`, "ÜNAL, ZOË", true},
		{`{sn | truncate(2)}`, "Ün", true},
		{`{{literal}} {uid}`, "{literal} Zoë.Ünal", true},
		{`{uid}@example.org`, "Zoë.Ünal@example.org", true},
		{`{missing}@example.org`, "", false},
	}
	for _, tt := range tests {
		tmpl, err := CompileTemplate(tt.src)
		if err != nil {
			t.Fatalf("%s: %v", tt.src, err)
		}
		got, ok, _ := tmpl.Eval(entry())
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s = %q,%v; want %q,%v", tt.src, got, ok, tt.want, tt.ok)
		}
	}
}

func TestTemplateErrorsNamePosition(t *testing.T) {
	for _, bad := range []string{`{uid`, `uid}`, `{uid | nosuch}`, `{uid | truncate(0)}`, `{uid | replace("(", "x")}`,
		`{1abc}`, `{uid | replace("a")}`, `{"unterminated}`, `{uid | default(x)}`} {
		if _, err := CompileTemplate(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestMappingReportsEveryMissingAttributeWithDN(t *testing.T) {
	m, ps := NewMapping("generic", MappingConfig{Attributes: map[string]string{"emails.work": "{nomail}", "title": "{notitle}"},
		Required: []string{"userName", "emails.work", "title"}})
	if len(ps) != 0 {
		t.Fatal(ps)
	}
	_, merr := m.Map(entry())
	if merr == nil || len(merr.Problems) != 2 || !strings.Contains(merr.Error(), entry().DN) {
		t.Fatalf("got %v", merr)
	}
	_, ps = NewMapping("generic", MappingConfig{Attributes: map[string]string{"nosuch": "{x}", "title": "{"}, Required: []string{"title", "nickName"}})
	if len(ps) != 4 { // unknown key, bad template, required but unmapped, userName not required
		t.Fatalf("problems %v", ps)
	}
	// removing a default with "" is fine; a misspelt key is reported even when emptied
	_, ps = NewMapping("generic", MappingConfig{Attributes: map[string]string{"title": "", "titel": ""}})
	if len(ps) != 1 || ps[0].Path != "attributes.titel" {
		t.Fatalf("problems %v", ps)
	}
}

func TestDeprovisionLimit(t *testing.T) {
	tests := []struct {
		name           string
		known, removed int
		allow          int
		blocked        bool
	}{
		{"one leaver in a small org", 12, 1, 0, false},
		{"count floor", 100, 10, 0, false},
		{"over the count in a small org", 100, 11, 0, true},
		{"percentage for a large directory", 10000, 500, 0, false},
		{"over the percentage", 10000, 501, 0, true},
		{"allowed once", 100, 40, 40, false},
		{"allowance too small", 100, 40, 39, true},
	}
	e := &Engine{cfg: DefaultConfig()}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlan("full")
			defer p.Close()
			p.Known = tt.known
			for i := 0; i < tt.removed; i++ {
				if err := p.add(Item{Action: ActionDisable, Name: fmt.Sprint(i)}); err != nil {
					t.Fatal(err)
				}
			}
			e.checkLimits(p, 0, tt.allow)
			if (p.Blocked != nil) != tt.blocked {
				t.Fatalf("blocked=%v, want %v", p.Blocked != nil, tt.blocked)
			}
			for _, it := range p.Items() {
				if it.Blocked != tt.blocked {
					t.Fatal("items not marked consistently")
				}
			}
			if p.Pending() == tt.blocked {
				t.Fatalf("pending=%v with blocked=%v", p.Pending(), tt.blocked)
			}
		})
	}
}

func TestRulesOrder(t *testing.T) {
	rules, err := compileRules([]OverrideRule{{DNSubtree: "ou=contractors,dc=example,dc=org"}, {UserName: "svc-*", Mode: "DEFAULT"}})
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{rules: rules}
	tests := []struct {
		user, dn  string
		overrides map[string]state.Override
		off       bool
	}{
		{"a", "uid=a,OU=Contractors,dc=example,dc=org", nil, true},
		{"svc-x", "uid=svc-x,ou=people,dc=example,dc=org", nil, false},
		{"a", "uid=a,ou=contractors,dc=example,dc=org", map[string]state.Override{"a": {Mode: state.ModeDefault}}, false},
		{"b", "uid=b,ou=people,dc=example,dc=org", map[string]state.Override{"b": {Mode: state.ModeCMS}}, true},
	}
	for _, tt := range tests {
		if off, why := e.handsOff(tt.user, tt.dn, nil, false, tt.overrides); off != tt.off {
			t.Errorf("%s %s: off=%v (%s)", tt.user, tt.dn, off, why)
		}
	}
}

func FuzzTemplate(f *testing.F) {
	for _, s := range []string{`{uid}`, `{a ?? "x" | lower | replace("[^a-z]", "-") | truncate(3)}`, `{{x}}`, `{mail}@{upn}`} {
		f.Add(s, "Zoë Ünal")
	}
	f.Fuzz(func(t *testing.T, src, value string) {
		tmpl, err := CompileTemplate(src)
		if err != nil {
			return
		}
		e := ldap.Entry{DN: "uid=x", Attrs: map[string][]string{}}
		for _, a := range tmpl.Attributes() {
			e.Attrs[a] = []string{value}
		}
		out, ok, _ := tmpl.Eval(e)
		if ok && utf8.ValidString(src) && utf8.ValidString(value) && !utf8.ValidString(out) {
			t.Fatalf("%q on %q produced invalid UTF-8 %q", src, value, out)
		}
	})
}

func FuzzMapping(f *testing.F) {
	f.Add("{uid | truncate(4)}", "alice", "alice@example.org")
	f.Fuzz(func(t *testing.T, tmpl, uid, mail string) {
		m, ps := NewMapping("generic", MappingConfig{Attributes: map[string]string{"userName": tmpl}})
		if len(ps) > 0 {
			return
		}
		d, merr := m.Map(ldap.Entry{DN: "uid=x", ID: "1", Attrs: map[string][]string{"uid": {uid}, "mail": {mail}}})
		if merr == nil && d.UserName() == "" {
			t.Fatal("a required userName mapped to empty without an error")
		}
		if merr == nil {
			p, _ := newPayload(m, scimclient.Capabilities{})
			doc := p.document(p.values(d))
			if doc["userName"] != d.UserName() {
				t.Fatalf("created document carries userName %v, want %q", doc["userName"], d.UserName())
			}
		}
	})
}
