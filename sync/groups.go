package sync

import (
	"fmt"
	"strings"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/state"
)

// Group nesting modes (groups.nesting).
const (
	NestingFlatten  = "flatten"  // each group carries its effective users, nested groups resolved
	NestingPreserve = "preserve" // groups are members of groups, as in the directory
	NestingNone     = "none"     // direct user members only
)

// GroupsConfig is the `groups:` section: present means groups are synced.
type GroupsConfig struct {
	BaseDN string `yaml:"base_dn"`
	Filter string `yaml:"filter"`
	Scope  string `yaml:"scope"` // sub | one | base
	// IDAttribute is the group's stable id; empty means ldap.id_attribute.
	IDAttribute string `yaml:"id_attribute"`
	// DisplayName is a mapping template for the group's displayName; empty: the profile's
	// ({cn} for most).
	DisplayName string `yaml:"display_name"`
	// MemberAttributes are read for members: member and uniqueMember hold DNs (uniqueMember
	// with an optional #'…'B suffix), memberUid holds user ids (posixGroup).
	MemberAttributes []string `yaml:"member_attributes"`
	// Nesting is flatten, preserve or none; empty: the profile's (flatten).
	Nesting string `yaml:"nesting"`
	// MaxDepth bounds how deep flatten follows nested groups.
	MaxDepth int `yaml:"max_depth"`
	// Batch is how many member changes one request carries.
	Batch int `yaml:"batch"`
	// Deprovision is what happens to a group the sync owns when it leaves the directory:
	// delete, or none.
	Deprovision string `yaml:"deprovision"`
	// Overrides make groups hands-off (or explicitly owned): by dn_subtree, by filter, or by
	// a glob over the displayName (user_name).
	Overrides []OverrideRule `yaml:"overrides"`
	// MaxDeprovision and MaxDeprovisionPercent limit group deletions in one run, as
	// sync.max_deprovision does for users (0: sync's values).
	MaxDeprovision        int     `yaml:"max_deprovision"`
	MaxDeprovisionPercent float64 `yaml:"max_deprovision_percent"`
}

// DefaultGroupsConfig is the section's defaults.
func DefaultGroupsConfig() GroupsConfig {
	return GroupsConfig{Filter: "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup)(objectClass=group))",
		Scope: "sub", MemberAttributes: []string{"member", "uniqueMember", "memberUid"},
		MaxDepth: 10, Batch: 100, Deprovision: DeprovisionDelete}
}

// Validate reports every problem in the section.
func (c GroupsConfig) Validate() config.Problems {
	var ps config.Problems
	if c.BaseDN == "" {
		ps.Add("base_dn", "required: where the groups to sync are (e.g. ou=groups,dc=example,dc=org)")
	} else if _, err := ldap.ParseDN(c.BaseDN); err != nil {
		ps.Add("base_dn", "not a DN: %v", err)
	}
	if _, err := ldap.CompileMatcher(c.Filter); err != nil {
		ps.Add("filter", "%v", err)
	}
	switch c.Scope {
	case "sub", "one", "base":
	default:
		ps.Add("scope", "must be sub, one or base, got %q", c.Scope)
	}
	if c.DisplayName != "" {
		if _, err := CompileTemplate(c.DisplayName); err != nil {
			ps.Add("display_name", "%v", err)
		}
	}
	if len(c.MemberAttributes) == 0 {
		ps.Add("member_attributes", "name at least one (member, uniqueMember, memberUid)")
	}
	for i, a := range c.MemberAttributes {
		if a == "" || strings.ContainsAny(a, " ()=,") {
			ps.Add(fmt.Sprintf("member_attributes[%d]", i), "not an attribute name: %q", a)
		}
	}
	switch c.Nesting {
	case "", NestingFlatten, NestingPreserve, NestingNone:
	default:
		ps.Add("nesting", "must be flatten, preserve or none, got %q", c.Nesting)
	}
	if c.MaxDepth < 1 || c.MaxDepth > 100 {
		ps.Add("max_depth", "must be between 1 and 100")
	}
	if c.Batch < 1 || c.Batch > 1000 {
		ps.Add("batch", "must be between 1 and 1000 member changes per request")
	}
	switch c.Deprovision {
	case DeprovisionDelete, DeprovisionNone:
	default:
		ps.Add("deprovision", "must be delete or none (a group cannot be disabled), got %q", c.Deprovision)
	}
	if c.MaxDeprovision < 0 {
		ps.Add("max_deprovision", "must be 0 or more")
	}
	if c.MaxDeprovisionPercent < 0 || c.MaxDeprovisionPercent > 100 {
		ps.Add("max_deprovision_percent", "must be between 0 and 100")
	}
	ps = append(ps, Config{Overrides: c.Overrides}.validateOverrides()...)
	return ps
}

// groupMapping is the compiled groups section.
type groupMapping struct {
	cfg         GroupsConfig
	displayName *Template
	rules       []rule
	memberAttrs []string // lower-cased
	uidMembers  bool     // memberUid is read: members named by uid, not DN
}

func compileGroups(c GroupsConfig, prof Profile) (*groupMapping, error) {
	if err := c.Validate().Err(); err != nil {
		return nil, err
	}
	if c.DisplayName == "" {
		c.DisplayName = prof.Groups.DisplayName
	}
	if c.Nesting == "" {
		c.Nesting = prof.Groups.Nesting
	}
	t, err := CompileTemplate(c.DisplayName)
	if err != nil {
		return nil, err
	}
	rules, err := compileRules(c.Overrides)
	if err != nil {
		return nil, err
	}
	g := &groupMapping{cfg: c, displayName: t, rules: rules}
	for _, a := range c.MemberAttributes {
		l := strings.ToLower(a)
		g.memberAttrs = append(g.memberAttrs, l)
		g.uidMembers = g.uidMembers || l == "memberuid"
	}
	return g, nil
}

// attributes are what a group read asks for.
func (g *groupMapping) attributes() []string {
	out := append([]string(nil), g.displayName.Attributes()...)
	return append(out, g.cfg.MemberAttributes...)
}

// handsOff applies the group override rules in order.
func (g *groupMapping) handsOff(name, dn string, entry *ldap.Entry) (bool, string) {
	for _, r := range g.rules {
		if r.match(dn, name, entry) {
			return r.mode == state.ModeCMS, fmt.Sprintf("managementMode %s from groups.overrides[%d]", r.mode, r.src)
		}
	}
	return false, ""
}

// groupEntry is one directory group as the planner needs it.
type groupEntry struct {
	ext, uuid, dn, dnKey, name string
	memberDNs                  []string // normalised DNs of member, uniqueMember
	memberUIDs                 []string // memberUid values
	attrs                      map[string][]string
}

// readGroup turns a directory entry into a group, or says why it cannot be one.
func (g *groupMapping) readGroup(e ldap.Entry) (groupEntry, string) {
	ge := groupEntry{ext: e.ID, uuid: e.UUID, dn: e.DN, dnKey: dnKey(e.DN), attrs: e.Attrs}
	if e.ID == "" {
		return ge, "no stable id attribute on the group entry"
	}
	name, ok, missing := g.displayName.Eval(e)
	if !ok || name == "" {
		return ge, fmt.Sprintf("displayName: %s missing", strings.Join(missing, ", "))
	}
	ge.name = name
	for _, a := range g.memberAttrs {
		for _, v := range e.Attrs[a] {
			switch a {
			case "memberuid":
				ge.memberUIDs = append(ge.memberUIDs, v)
			case "uniquemember":
				dn, _, err := ldap.SplitUniqueMember(v)
				if err == nil {
					ge.memberDNs = append(ge.memberDNs, dnKey(dn))
				}
			default:
				ge.memberDNs = append(ge.memberDNs, dnKey(v))
			}
		}
	}
	return ge, ""
}
