package sync

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/scim"
)

// MappingConfig is the `mapping:` section. It is merged over the target profile's mapping:
// attributes and rules key by key (an empty attribute value removes a mapping), the rest when set.
type MappingConfig struct {
	Attributes map[string]string `yaml:"attributes,omitempty"`
	Required   []string          `yaml:"required,omitempty"`
	Rules      map[string]Rule   `yaml:"rules,omitempty"`
	// DisabledIf is an LDAP filter; matching users are sent with active=false ("none" turns
	// the profile's off).
	DisabledIf string `yaml:"disabled_if,omitempty"`
	// Exclude is an LDAP filter: matching entries are not synced at all (counted, never
	// deprovisioned). Empty means the directory's default: on Active Directory, computer and
	// built-in accounts; "none" syncs everything the user filter selects.
	Exclude string `yaml:"exclude,omitempty"`
	// UniqueUserNames says what happens when two directory users map to one userName:
	// "invalid" (both reported, the second not sent) or "suffix" (the later one gets -2, -3 …,
	// recorded in state so it is stable across runs).
	UniqueUserNames string `yaml:"unique_user_names,omitempty"`
}

// Rule is a constraint a target puts on one attribute, checked before anything is sent.
type Rule struct {
	MinLength int    `yaml:"min_length,omitempty"`
	MaxLength int    `yaml:"max_length,omitempty"` // in characters
	Pattern   string `yaml:"pattern,omitempty"`    // the whole value must match
	Email     bool   `yaml:"email,omitempty"`
}

// Keys computed by the sync itself, not configurable.
const (
	keyExternalID = "externalId"
	keyDN         = "ldapUserDN"
	keyActive     = "active"
)

// paths says where each mapping key lands in a SCIM User, in the shared attribute model.
var paths = func() map[string]scim.AttrPath {
	m := map[string]scim.AttrPath{
		keyExternalID: {Attr: "externalId"},
		keyActive:     {Attr: "active", Bool: true, Default: "true"},
		keyDN:         {Ext: scim.ScimsyncSchema, Attr: "ldapUserDN"},
	}
	for _, a := range []string{"userName", "displayName", "nickName", "title", "userType", "preferredLanguage", "locale", "timezone", "profileUrl"} {
		m[a] = scim.AttrPath{Attr: a}
	}
	for _, s := range []string{"givenName", "familyName", "middleName", "formatted", "honorificPrefix", "honorificSuffix"} {
		m["name."+s] = scim.AttrPath{Attr: "name", Sub: s}
	}
	for _, t := range []string{"work", "home", "other"} {
		m["emails."+t] = scim.AttrPath{Attr: "emails", Sub: "value", Type: t}
	}
	for _, t := range []string{"work", "home", "mobile", "fax", "pager", "other"} {
		m["phoneNumbers."+t] = scim.AttrPath{Attr: "phoneNumbers", Sub: "value", Type: t}
	}
	for _, a := range []string{"employeeNumber", "costCenter", "organization", "division", "department"} {
		m["enterprise."+a] = scim.AttrPath{Ext: scim.EnterpriseSchema, Attr: a}
	}
	m["enterprise.manager"] = scim.AttrPath{Ext: scim.EnterpriseSchema, Attr: "manager", Sub: "value"}
	m["description"] = scim.AttrPath{Ext: scim.ScimsyncSchema, Attr: "description"}
	return m
}()

func mappableKeys() []string {
	var out []string
	for k := range paths {
		if k != keyExternalID && k != keyActive && k != keyDN {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Mapping turns directory entries into desired SCIM users.
type Mapping struct {
	profile    Profile
	cfg        MappingConfig
	fields     []field
	required   map[string]bool
	rules      map[string]compiledRule
	disabledIf *ldap.Matcher
	// defaultDisabled says disabledIf is the profile's default, not the administrator's.
	defaultDisabled bool
	exclude         *ldap.Matcher
	excludeNone     bool // exclude: none
	suffix          bool
}

type field struct {
	key  string
	tmpl *Template
}

type compiledRule struct {
	Rule
	re *regexp.Regexp
}

// NewMapping merges cfg over the named profile's mapping and compiles every template and rule,
// reporting every problem with its key.
func NewMapping(profileName string, cfg MappingConfig) (*Mapping, config.Problems) {
	var ps config.Problems
	prof, ok := ProfileByName(profileName)
	if !ok {
		ps.Add("profile", "unknown target profile %q (known: %s)", profileName, strings.Join(ProfileNames(), ", "))
		prof, _ = ProfileByName("generic")
	}
	// the same merge `scimsync profiles --show` prints, so what it shows is what runs
	eff := Effective(prof.Name, cfg)
	merged, required := eff.Attributes, eff.Required
	for k, v := range cfg.Attributes {
		if v == "" && !isMappable(k) { // dropped by the merge, but still a misspelt key
			ps.Add("attributes."+k, "unknown SCIM attribute key (known: %s)", strings.Join(mappableKeys(), ", "))
		}
	}
	m := &Mapping{profile: prof, cfg: cfg, required: map[string]bool{}, rules: map[string]compiledRule{}}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		src := merged[k]
		if !isMappable(k) {
			ps.Add("attributes."+k, "unknown SCIM attribute key (known: %s)", strings.Join(mappableKeys(), ", "))
			continue
		}
		t, err := CompileTemplate(src)
		if err != nil {
			ps.Add("attributes."+k, "%v", err)
			continue
		}
		m.fields = append(m.fields, field{key: k, tmpl: t})
	}
	for i, r := range required {
		if _, ok := merged[r]; !ok {
			ps.Add(fmt.Sprintf("required[%d]", i), "%q is required but not mapped", r)
		}
		m.required[r] = true
	}
	if !m.required["userName"] {
		ps.Add("required", "userName must be required: a user without one cannot be matched or created")
	}
	rules := eff.Rules
	for k, r := range rules {
		if !isMappable(k) {
			ps.Add("rules."+k, "unknown SCIM attribute key")
			continue
		}
		cr := compiledRule{Rule: r}
		if r.Pattern != "" {
			re, err := regexp.Compile(`^(?:` + r.Pattern + `)$`)
			if err != nil {
				ps.Add("rules."+k+".pattern", "%v", err)
				continue
			}
			cr.re = re
		}
		if r.MaxLength < 0 || r.MinLength < 0 || (r.MaxLength > 0 && r.MinLength > r.MaxLength) {
			ps.Add("rules."+k, "lengths must be 0 or more, min_length at most max_length")
		}
		m.rules[k] = cr
	}
	disabledIf := eff.DisabledIf
	m.defaultDisabled = cfg.DisabledIf == "" && disabledIf == lockedAccount
	switch cfg.Exclude {
	case "":
	case "none":
		m.excludeNone = true
	default:
		em, err := ldap.CompileMatcher(cfg.Exclude)
		if err != nil {
			ps.Add("exclude", "%v", err)
		} else {
			m.exclude = &em
		}
	}
	if disabledIf != "" && disabledIf != "none" {
		dm, err := ldap.CompileMatcher(disabledIf)
		if err != nil {
			ps.Add("disabled_if", "%v", err)
		} else {
			m.disabledIf = &dm
		}
	}
	unique := eff.UniqueUserNames
	switch unique {
	case "", "invalid":
	case "suffix":
		m.suffix = true
	default:
		ps.Add("unique_user_names", "must be invalid or suffix, got %q", unique)
	}
	return m, ps
}

func isMappable(k string) bool {
	_, ok := paths[k]
	return ok && k != keyExternalID && k != keyActive && k != keyDN
}

// Profile is the target profile this mapping was built from.
func (m *Mapping) Profile() Profile { return m.profile }

// Attributes lists the LDAP attributes the mapping reads, to request nothing else.
func (m *Mapping) Attributes() []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range m.fields {
		for _, a := range f.tmpl.Attributes() {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	for _, dm := range []*ldap.Matcher{m.disabledIf, m.exclude} {
		if dm == nil {
			continue
		}
		for _, a := range dm.Attributes() {
			if l := strings.ToLower(a); !seen[l] {
				seen[l] = true
				out = append(out, l)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Desired is one user as the directory says it should be on the target.
type Desired struct {
	ExternalID string            `json:"id"`
	DN         string            `json:"dn"`
	UUID       string            `json:"uuid,omitempty"` // the entry's UUID as deltas name it
	Values     map[string]string `json:"v"`              // mapping key -> value; absent keys are absent on the target
	Active     bool              `json:"active"`         // false when the directory says the account is locked or disabled
}

// UserName is the desired userName.
func (d Desired) UserName() string { return d.Values["userName"] }

// MapError says why an entry cannot be mapped: every missing attribute, with the entry's DN.
type MapError struct {
	DN        string
	Attribute string // the first SCIM attribute that failed, for the plan's invalid item
	Rule      string
	Problems  []string
}

func (e *MapError) Error() string {
	return fmt.Sprintf("sync: entry %q: %s", e.DN, strings.Join(e.Problems, "; "))
}

// Map evaluates every field for e.
func (m *Mapping) Map(e ldap.Entry) (Desired, *MapError) {
	d := Desired{ExternalID: e.ID, DN: e.DN, UUID: e.UUID, Values: map[string]string{}, Active: m.disabledIf == nil || !m.disabledIf.Match(e)}
	var merr *MapError
	fail := func(attr, rule, problem string) {
		if merr == nil {
			merr = &MapError{DN: e.DN, Attribute: attr, Rule: rule}
		}
		merr.Problems = append(merr.Problems, problem)
	}
	if e.ID == "" {
		fail(keyExternalID, "required", "no stable id attribute (ldap.id_attribute) on the entry")
	}
	for _, f := range m.fields {
		v, ok, missing := f.tmpl.Eval(e)
		if !ok || v == "" {
			if m.required[f.key] {
				fail(f.key, "required", fmt.Sprintf("%s is required but %s %s missing", f.key, strings.Join(missing, ", "), isOrAre(len(missing))))
			}
			continue
		}
		if r, ok := m.rules[f.key]; ok {
			if rule, problem := r.check(v); rule != "" {
				fail(f.key, rule, fmt.Sprintf("%s %s", f.key, problem))
				continue
			}
		}
		d.Values[f.key] = v
	}
	if merr != nil {
		return Desired{}, merr
	}
	return d, nil
}

// check returns the broken rule and why, or "" when v complies.
func (r compiledRule) check(v string) (rule, problem string) {
	n := utf8.RuneCountInString(v)
	switch {
	case r.MinLength > 0 && n < r.MinLength:
		return fmt.Sprintf("at least %d characters", r.MinLength), fmt.Sprintf("%q has %d", v, n)
	case r.MaxLength > 0 && n > r.MaxLength:
		return fmt.Sprintf("at most %d characters", r.MaxLength), fmt.Sprintf("%q has %d", v, n)
	case r.re != nil && !r.re.MatchString(v):
		return "pattern " + r.Pattern, fmt.Sprintf("%q does not match", v)
	case r.Email && !looksLikeEmail(v):
		return "email address", fmt.Sprintf("%q is not an email address", v)
	}
	return "", ""
}

func looksLikeEmail(v string) bool {
	at := strings.LastIndexByte(v, '@')
	return at > 0 && at < len(v)-1 && !strings.ContainsAny(v, " \t\r\n") && strings.Contains(v[at:], ".")
}

func isOrAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}
