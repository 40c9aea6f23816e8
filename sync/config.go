// Package sync is the reconciler: it maps directory entries to SCIM users, plans what to
// create, update, disable, delete or skip, checks the plan against the safety rules, and
// applies it with bounded concurrency, committing state after every write.
package sync

import (
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/state"
)

// Deprovisioning policies.
const (
	DeprovisionDisable = "disable"
	DeprovisionDelete  = "delete"
	DeprovisionNone    = "none"
)

// Config is the `sync:` section.
type Config struct {
	Schedule              string          `yaml:"schedule"`     // read by `scimsync run`: 5-field cron or @every/@hourly…
	Timezone              string          `yaml:"timezone"`     // for the schedule; default: the machine's
	Jitter                config.Duration `yaml:"jitter"`       // random delay before each scheduled run
	RunOnStart            bool            `yaml:"run_on_start"` // sync once when the daemon starts
	Deprovision           string          `yaml:"deprovision"`
	DeleteAfter           config.Duration `yaml:"delete_after"` // 0 = never delete a disabled user
	MaxDeprovision        int             `yaml:"max_deprovision"`
	MaxDeprovisionPercent float64         `yaml:"max_deprovision_percent"`
	Overrides             []OverrideRule  `yaml:"overrides"`
	// FullReconcile is how often a run reads both sides in full and repairs drift; between
	// them a run reads only the directory's changes and trusts state for the target.
	FullReconcile config.Duration `yaml:"full_reconcile"`
	// MaxRunTime bounds one run: past it no new write starts, and the next run goes on where
	// this one stopped.
	MaxRunTime config.Duration `yaml:"max_run_time"`
}

// OverrideRule makes matching users hands-off (CMS) or explicitly owned (DEFAULT). Exactly one
// selector is set: a DN subtree, an LDAP filter, or a userName glob (case-insensitive).
type OverrideRule struct {
	DNSubtree string `yaml:"dn_subtree"`
	Filter    string `yaml:"filter"`
	UserName  string `yaml:"user_name"`
	Mode      string `yaml:"mode"` // CMS (default) or DEFAULT
}

// DefaultConfig is the section's defaults: disable, never delete, stop above 10 users or 5 %.
func DefaultConfig() Config {
	return Config{Schedule: "@every 15m", Deprovision: DeprovisionDisable, MaxDeprovision: 10, MaxDeprovisionPercent: 5,
		FullReconcile: config.Duration(24 * time.Hour), MaxRunTime: config.Duration(time.Hour)}
}

// Validate reports every problem in the section.
func (c Config) Validate() config.Problems {
	var ps config.Problems
	switch c.Deprovision {
	case DeprovisionDisable, DeprovisionDelete, DeprovisionNone:
	default:
		ps.Add("deprovision", "must be disable, delete or none, got %q", c.Deprovision)
	}
	if c.DeleteAfter.D() > 0 && c.Deprovision != DeprovisionDisable {
		ps.Add("delete_after", "only applies with deprovision: disable")
	}
	if c.MaxDeprovision < 0 {
		ps.Add("max_deprovision", "must be 0 or more")
	}
	if c.MaxDeprovisionPercent < 0 || c.MaxDeprovisionPercent > 100 {
		ps.Add("max_deprovision_percent", "must be between 0 and 100")
	}
	if c.FullReconcile.D() < 0 {
		ps.Add("full_reconcile", "must be 0 (every run) or positive")
	}
	if c.MaxRunTime.D() < time.Second {
		ps.Add("max_run_time", "must be at least 1s (an hour suits a daemon syncing every 15 minutes)")
	}
	ps = append(ps, c.validateOverrides()...)
	return ps
}

// validateOverrides reports every problem of the override rules.
func (c Config) validateOverrides() config.Problems {
	var ps config.Problems
	for i, r := range c.Overrides {
		p := fmt.Sprintf("overrides[%d]", i)
		n := 0
		for _, s := range []string{r.DNSubtree, r.Filter, r.UserName} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			ps.Add(p, "set exactly one of dn_subtree, filter, user_name")
		}
		if r.DNSubtree != "" {
			if _, err := ldap.ParseDN(r.DNSubtree); err != nil {
				ps.Add(p+".dn_subtree", "not a DN: %v", err)
			}
		}
		if r.Filter != "" {
			if _, err := ldap.CompileMatcher(r.Filter); err != nil {
				ps.Add(p+".filter", "%v", err)
			}
		}
		if r.UserName != "" {
			if _, err := path.Match(r.UserName, ""); err != nil {
				ps.Add(p+".user_name", "bad pattern: %v", err)
			}
		}
		if r.Mode != "" {
			if _, err := state.ParseMode(r.Mode); err != nil {
				ps.Add(p+".mode", "%v", err)
			}
		}
	}
	return ps
}

// rule is a compiled OverrideRule.
type rule struct {
	src     int
	subtree *ldap.DN
	filter  *ldap.Matcher
	glob    string
	mode    state.Mode
}

func compileRules(rs []OverrideRule) ([]rule, error) {
	out := make([]rule, 0, len(rs))
	for i, r := range rs {
		cr := rule{src: i, mode: state.ModeCMS, glob: strings.ToLower(r.UserName)}
		if r.Mode != "" {
			m, err := state.ParseMode(r.Mode)
			if err != nil {
				return nil, fmt.Errorf("sync: overrides[%d]: %w", i, err)
			}
			cr.mode = m
		}
		if r.DNSubtree != "" {
			dn, err := ldap.ParseDN(r.DNSubtree)
			if err != nil {
				return nil, fmt.Errorf("sync: overrides[%d].dn_subtree: %w", i, err)
			}
			cr.subtree = dn
		}
		if r.Filter != "" {
			m, err := ldap.CompileMatcher(r.Filter)
			if err != nil {
				return nil, fmt.Errorf("sync: overrides[%d].filter: %w", i, err)
			}
			cr.filter = &m
		}
		out = append(out, cr)
	}
	return out, nil
}

// match reports whether the rule selects a user. entry is nil for users no longer in the
// directory, for which only DN and userName rules can be judged.
func (r rule) match(dn, userName string, entry *ldap.Entry) bool {
	switch {
	case r.subtree != nil:
		d, err := ldap.ParseDN(dn)
		return err == nil && (r.subtree.EqualFold(d) || r.subtree.AncestorOfFold(d))
	case r.filter != nil:
		return entry != nil && r.filter.Match(*entry)
	case r.glob != "":
		ok, _ := path.Match(r.glob, strings.ToLower(userName))
		return ok
	}
	return false
}
