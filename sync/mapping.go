package sync

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
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

// slot is where a mapping key lands in a SCIM User.
type slot struct {
	key  string
	ext  string // schema URN for extension attributes, "" for core
	attr string // attribute name
	sub  string // sub-attribute of a complex attribute, or of the typed element
	typ  string // element type of a multi-valued attribute (emails.work)
}

// path is the slot's RFC 7644 PATCH path.
func (s slot) path() string {
	p := s.attr
	if s.typ != "" {
		p = fmt.Sprintf("%s[type eq %q].%s", s.attr, s.typ, s.sub)
	} else if s.sub != "" {
		p += "." + s.sub
	}
	if s.ext != "" {
		p = s.ext + ":" + p
	}
	return p
}

// Keys computed by the sync itself, not configurable.
const (
	keyExternalID = "externalId"
	keyDN         = "ldapUserDN"
	keyActive     = "active"
)

var slots = func() map[string]slot {
	m := map[string]slot{
		keyExternalID: {key: keyExternalID, attr: "externalId"},
		keyActive:     {key: keyActive, attr: "active"},
		keyDN:         {key: keyDN, ext: scim.ScimsyncSchema, attr: "ldapUserDN"},
	}
	for _, a := range []string{"userName", "displayName", "nickName", "title", "userType", "preferredLanguage", "locale", "timezone", "profileUrl"} {
		m[a] = slot{key: a, attr: a}
	}
	for _, s := range []string{"givenName", "familyName", "middleName", "formatted", "honorificPrefix", "honorificSuffix"} {
		m["name."+s] = slot{key: "name." + s, attr: "name", sub: s}
	}
	for _, t := range []string{"work", "home", "other"} {
		m["emails."+t] = slot{key: "emails." + t, attr: "emails", sub: "value", typ: t}
	}
	for _, t := range []string{"work", "home", "mobile", "fax", "pager", "other"} {
		m["phoneNumbers."+t] = slot{key: "phoneNumbers." + t, attr: "phoneNumbers", sub: "value", typ: t}
	}
	for _, a := range []string{"employeeNumber", "costCenter", "organization", "division", "department"} {
		m["enterprise."+a] = slot{key: "enterprise." + a, ext: scim.EnterpriseSchema, attr: a}
	}
	m["enterprise.manager"] = slot{key: "enterprise.manager", ext: scim.EnterpriseSchema, attr: "manager", sub: "value"}
	m["description"] = slot{key: "description", ext: scim.ScimsyncSchema, attr: "description"}
	return m
}()

func mappableKeys() []string {
	var out []string
	for k := range slots {
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
	fields     []field
	required   map[string]bool
	rules      map[string]compiledRule
	disabledIf *ldap.Matcher
	suffix     bool
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
	m := &Mapping{profile: prof, required: map[string]bool{}, rules: map[string]compiledRule{}}
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
	_, ok := slots[k]
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
	if m.disabledIf != nil {
		for _, a := range m.disabledIf.Attributes() {
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
	ExternalID string
	DN         string
	Values     map[string]string // mapping key -> value; absent keys are absent on the target
	Active     bool              // false when the directory says the account is locked or disabled
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
	d := Desired{ExternalID: e.ID, DN: e.DN, Values: map[string]string{}, Active: m.disabledIf == nil || !m.disabledIf.Match(e)}
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

// readSlot reads a slot's value from a target user, as a string for comparison.
func readSlot(doc scim.Doc, s slot) string {
	obj := doc
	if s.ext != "" {
		e, _ := doc[s.ext].(map[string]any)
		obj = e
	}
	if obj == nil {
		return ""
	}
	v := obj[s.attr]
	if s.typ != "" {
		list, _ := v.([]any)
		for _, el := range list {
			if m, ok := el.(map[string]any); ok && fmt.Sprint(m["type"]) == s.typ {
				return scalar(m[s.sub])
			}
		}
		return ""
	}
	if s.sub != "" {
		m, _ := v.(map[string]any)
		return scalar(m[s.sub])
	}
	return scalar(v)
}

func scalar(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprint(v)
}

// Payload is what the sync sends, and to whom it may send which extensions.
type Payload struct {
	Extensions map[string]bool // declared by the target
}

func (p Payload) allowed(s slot) bool { return s.ext == "" || p.Extensions[s.ext] }

// values returns every slot value of a desired user that may be sent, including the computed
// externalId, ldapUserDN and active.
func (p Payload) values(d Desired) map[string]string {
	out := map[string]string{keyExternalID: d.ExternalID, keyActive: strconv.FormatBool(d.Active)}
	if p.Extensions[scim.ScimsyncSchema] {
		out[keyDN] = d.DN
	}
	for k, v := range d.Values {
		if p.allowed(slots[k]) {
			out[k] = v
		}
	}
	return out
}

// Document builds the full SCIM User for a create (or a PUT, merged over the target's copy).
func (p Payload) Document(d Desired, base scim.Doc) scim.Doc {
	doc := scim.Doc{}
	for k, v := range base {
		doc[k] = v
	}
	schemas := []any{scim.UserSchema}
	for _, ext := range []string{scim.EnterpriseSchema, scim.ScimsyncSchema} {
		if p.Extensions[ext] {
			schemas = append(schemas, ext)
		}
	}
	doc["schemas"] = schemas
	vals := p.values(d)
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		setSlot(doc, slots[k], vals[k])
	}
	if p.Extensions[scim.ScimsyncSchema] {
		ext, _ := doc[scim.ScimsyncSchema].(map[string]any)
		if ext["managementMode"] == nil {
			ext["managementMode"] = scim.ModeDefault
		}
	}
	return doc
}

func setSlot(doc scim.Doc, s slot, v string) {
	obj := doc
	if s.ext != "" {
		e, _ := doc[s.ext].(map[string]any)
		if e == nil {
			e = map[string]any{}
			doc[s.ext] = e
		}
		obj = e
	}
	var val any = v
	if s.key == keyActive {
		val = v == "true"
	}
	switch {
	case s.typ != "":
		list, _ := obj[s.attr].([]any)
		for _, el := range list {
			if m, ok := el.(map[string]any); ok && fmt.Sprint(m["type"]) == s.typ {
				m[s.sub] = val
				return
			}
		}
		el := map[string]any{"type": s.typ, s.sub: val}
		if len(list) == 0 {
			el["primary"] = true
		}
		obj[s.attr] = append(list, el)
	case s.sub != "":
		m, _ := obj[s.attr].(map[string]any)
		if m == nil {
			m = map[string]any{}
			obj[s.attr] = m
		}
		m[s.sub] = val
	default:
		obj[s.attr] = val
	}
}

// Diff is one attribute's change.
type Diff struct {
	Attribute string `json:"attribute"`
	Old       string `json:"old"`
	New       string `json:"new"`
}

// diff compares what should be sent with the target's copy, over the mapped slots only:
// attributes the mapping does not cover are never touched.
func (p Payload) diff(m *Mapping, d Desired, actual scim.Doc) []Diff {
	want := p.values(d)
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for _, f := range m.fields {
		if p.allowed(slots[f.key]) {
			keys[f.key] = true // mapped but now empty in the directory: remove on the target
		}
	}
	var out []Diff
	for k := range keys {
		old := readSlot(actual, slots[k])
		if k == keyActive && old == "" {
			old = "true" // SCIM: an absent active reads as active
		}
		if old != want[k] {
			out = append(out, Diff{Attribute: k, Old: old, New: want[k]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Attribute < out[j].Attribute })
	return out
}

// patchOps turns diffs into PATCH operations.
func patchOps(diffs []Diff) []scimclient.PatchOp {
	ops := make([]scimclient.PatchOp, 0, len(diffs))
	for _, d := range diffs {
		s := slots[d.Attribute]
		switch {
		case d.Attribute == keyActive:
			ops = append(ops, scimclient.PatchOp{Op: "replace", Path: s.path(), Value: d.New == "true"})
		case d.New == "":
			path := s.path()
			if s.typ != "" {
				path = fmt.Sprintf("%s[type eq %q]", s.attr, s.typ) // drop the whole typed element
			}
			ops = append(ops, scimclient.PatchOp{Op: "remove", Path: path})
		default:
			ops = append(ops, scimclient.PatchOp{Op: "replace", Path: s.path(), Value: d.New})
		}
	}
	return ops
}

// applyDiffs applies diffs to a copy of the target's user, for targets without PATCH (PUT).
func applyDiffs(actual scim.Doc, diffs []Diff) scim.Doc {
	doc := scim.CopyDoc(actual)
	for _, d := range diffs {
		s := slots[d.Attribute]
		if d.New == "" && d.Attribute != keyActive {
			clearSlot(doc, s)
			continue
		}
		setSlot(doc, s, d.New)
	}
	delete(doc, "meta")
	delete(doc, "groups")
	return doc
}

func clearSlot(doc scim.Doc, s slot) {
	obj := doc
	if s.ext != "" {
		obj, _ = doc[s.ext].(map[string]any)
		if obj == nil {
			return
		}
	}
	switch {
	case s.typ != "":
		list, _ := obj[s.attr].([]any)
		keep := list[:0:0]
		for _, el := range list {
			if m, ok := el.(map[string]any); ok && fmt.Sprint(m["type"]) == s.typ {
				continue
			}
			keep = append(keep, el)
		}
		obj[s.attr] = keep
	case s.sub != "":
		if m, ok := obj[s.attr].(map[string]any); ok {
			delete(m, s.sub)
		}
	default:
		delete(obj, s.attr)
	}
}
