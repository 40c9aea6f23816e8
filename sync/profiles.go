package sync

import (
	"sort"

	"github.com/scimsync/scimsync/scim"
)

// Profile is a named preset for one kind of target: its default mapping and the rules its user
// model enforces, so an administrator does not learn them from 400s at 3 a.m.
type Profile struct {
	Name    string
	Summary string
	Mapping MappingConfig
	// ForceExtensions are sent even when the target's /ResourceTypes does not declare them.
	ForceExtensions []string
	// NoDirectDelete refuses deprovision: delete; the target must see a disable first.
	NoDirectDelete bool
	// Groups are the group defaults matching the profile's model (groups: section).
	Groups GroupDefaults
}

// GroupDefaults are a profile's defaults for groups.
type GroupDefaults struct {
	DisplayName string // template for displayName
	Nesting     string
}

// plainGroups suits targets whose groups hold users and take any name.
var plainGroups = GroupDefaults{DisplayName: "{cn}", Nesting: NestingFlatten}

// lockedAccount matches accounts the directory marks as disabled or locked: 389-DS/FreeIPA
// nsAccountLock, OpenLDAP ppolicy pwdAccountLockedTime, AD userAccountControl bit 2.
const lockedAccount = "(|(nsAccountLock=TRUE)(pwdAccountLockedTime=*)(userAccountControl:1.2.840.113556.1.4.803:=2))"

// adExclude matches Active Directory accounts no application should receive: computers
// (objectClass computer, or a sAMAccountName ending in $) and the built-in accounts the
// directory marks critical (Administrator, Guest, krbtgt).
const adExclude = "(|(objectClass=computer)(sAMAccountName=*$)(isCriticalSystemObject=TRUE))"

var emailRule = Rule{Email: true}

func profiles() map[string]Profile {
	return map[string]Profile{
		"generic": {Name: "generic", Summary: "any RFC 7643 target: inetOrgPerson / AD users, userName from uid",
			Mapping: MappingConfig{
				Attributes: map[string]string{
					"userName":                  "{uid ?? sAMAccountName}",
					"displayName":               "{displayName ?? cn}",
					"name.givenName":            "{givenName}",
					"name.familyName":           "{sn}",
					"emails.work":               "{mail}",
					"phoneNumbers.work":         "{telephoneNumber}",
					"phoneNumbers.mobile":       "{mobile}",
					"title":                     "{title}",
					"enterprise.employeeNumber": "{employeeNumber}",
					"enterprise.department":     "{departmentNumber ?? department}",
				},
				Required:   []string{"userName"},
				DisabledIf: lockedAccount,
			},
			Groups: plainGroups},
		"nuage-vsd": {Name: "nuage-vsd", Summary: "Nuage VSD: userName 1-32 of [A-Za-z0-9-], first/last name and email required, LDAPUserDN, externalID, managementMode",
			Mapping: MappingConfig{
				Attributes: map[string]string{
					"userName":            `{uid ?? sAMAccountName | ascii | replace("[^A-Za-z0-9-]", "-") | truncate(32)}`,
					"displayName":         "{displayName ?? cn}",
					"name.givenName":      "{givenName ?? cn | truncate(255)}",
					"name.familyName":     "{sn ?? cn | truncate(255)}",
					"emails.work":         "{mail}",
					"phoneNumbers.mobile": "{mobile}",
				},
				Required: []string{"userName", "name.givenName", "name.familyName", "emails.work"},
				Rules: map[string]Rule{
					"userName":        {MinLength: 1, MaxLength: 32, Pattern: "[A-Za-z0-9-]+"},
					"name.givenName":  {MinLength: 1, MaxLength: 255},
					"name.familyName": {MinLength: 1, MaxLength: 255},
					"emails.work":     emailRule,
				},
				DisabledIf:      lockedAccount,
				UniqueUserNames: "suffix",
			},
			ForceExtensions: []string{scim.ScimsyncSchema},
			// VSD groups hold users only (/groups/{id}/users): nested groups are flattened, and
			// names keep to what VSD's own objects accept
			Groups: GroupDefaults{DisplayName: `{cn | ascii | replace("[^A-Za-z0-9 ._-]", "-") | truncate(255)}`, Nesting: NestingFlatten}},
		"passbolt": {Name: "passbolt", Summary: "Passbolt: userName is the email address (lower-cased), first and last name required, disable before delete",
			Mapping: MappingConfig{
				Attributes: map[string]string{
					"userName":        "{mail | lower}",
					"displayName":     "{displayName ?? cn}",
					"name.givenName":  "{givenName}",
					"name.familyName": "{sn}",
					"emails.work":     "{mail | lower}",
				},
				Required:   []string{"userName", "name.givenName", "name.familyName", "emails.work"},
				Rules:      map[string]Rule{"userName": emailRule, "emails.work": emailRule},
				DisabledIf: lockedAccount,
			},
			NoDirectDelete: true,
			Groups:         plainGroups},
		"civis": {Name: "civis", Summary: "Civis: userName, displayName and email required; department, title and phone when present; deprovisioning deactivates",
			Mapping: MappingConfig{
				Attributes: map[string]string{
					"userName":              "{uid ?? sAMAccountName}",
					"displayName":           "{displayName ?? cn}",
					"name.givenName":        "{givenName}",
					"name.familyName":       "{sn}",
					"emails.work":           "{mail}",
					"enterprise.department": "{departmentNumber ?? department}",
					"title":                 "{title}",
					"phoneNumbers.work":     "{telephoneNumber}",
					"timezone":              "{timeZone}", // no standard LDAP attribute: sent when the directory has one
				},
				Required:   []string{"userName", "displayName", "emails.work"},
				Rules:      map[string]Rule{"emails.work": emailRule},
				DisabledIf: lockedAccount,
			},
			// Civis users carry their groups (User.groups), which hold users: flattened
			Groups: plainGroups},
		"cloudomation": {Name: "cloudomation", Summary: "Cloudomation: userName and email at most 128 characters, description from the directory; deprovisioning sets is_enabled=false",
			Mapping: MappingConfig{
				Attributes: map[string]string{
					"userName":        "{uid ?? sAMAccountName}",
					"displayName":     "{displayName ?? cn}",
					"name.givenName":  "{givenName}",
					"name.familyName": "{sn}",
					"emails.work":     "{mail}",
					"description":     "{description}",
				},
				Required: []string{"userName", "emails.work"},
				Rules: map[string]Rule{
					"userName":    {MaxLength: 128},
					"emails.work": {MaxLength: 128, Email: true},
				},
				DisabledIf: lockedAccount,
			},
			Groups: plainGroups},
	}
}

// ProfileByName returns a profile by name.
func ProfileByName(name string) (Profile, bool) {
	p, ok := profiles()[name]
	return p, ok
}

// ProfileNames lists the profiles, sorted.
func ProfileNames() []string {
	var out []string
	for n := range profiles() {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// extensions returns the extensions to send: those the target declares plus the profile's forced ones.
func (m *Mapping) extensions(declared map[string]bool) map[string]bool {
	out := map[string]bool{}
	for k, v := range declared {
		out[k] = v
	}
	for _, e := range m.profile.ForceExtensions {
		out[e] = true
	}
	return out
}

// Effective is the mapping a profile plus cfg produce, as config YAML keys.
func Effective(profile string, cfg MappingConfig) MappingConfig {
	p, _ := ProfileByName(profile)
	out := MappingConfig{Attributes: map[string]string{}, Rules: map[string]Rule{}, Required: p.Mapping.Required,
		DisabledIf: p.Mapping.DisabledIf, UniqueUserNames: p.Mapping.UniqueUserNames}
	for k, v := range p.Mapping.Attributes {
		out.Attributes[k] = v
	}
	for k, v := range cfg.Attributes {
		if v == "" {
			delete(out.Attributes, k)
			continue
		}
		out.Attributes[k] = v
	}
	for k, v := range p.Mapping.Rules {
		out.Rules[k] = v
	}
	for k, v := range cfg.Rules {
		out.Rules[k] = v
	}
	if len(cfg.Required) > 0 {
		out.Required = cfg.Required
	}
	if cfg.DisabledIf != "" {
		out.DisabledIf = cfg.DisabledIf
	}
	if cfg.UniqueUserNames != "" {
		out.UniqueUserNames = cfg.UniqueUserNames
	}
	out.Exclude = cfg.Exclude
	if out.UniqueUserNames == "" {
		out.UniqueUserNames = "invalid"
	}
	return out
}
