package sync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/state"
)

// Source is the directory as the engine reads it: a full read or a delta from a cursor, and
// targeted lookups for one user.
type Source interface {
	Read(ctx context.Context, q ldap.Query, cur *ldap.Cursor, fn func(ldap.Change) error) (ldap.ReadResult, error)
	ByIDs(ctx context.Context, q ldap.Query, ids []string, fn func(ldap.Entry) error) error
	ByDN(ctx context.Context, q ldap.Query, dn string) (ldap.Entry, bool, error)
	Search(ctx context.Context, q ldap.Query, extraFilter string, fn func(ldap.Entry) error) error
	Discover(ctx context.Context) (ldap.ServerInfo, error)
	UserQuery(attrs []string) ldap.Query
}

var _ Source = (*ldap.Client)(nil)

// Target is the SCIM endpoint as the reconciler needs it. Its discovery documents are fetched
// apart from being read, so a delta run can read the ones kept in state instead, and Use tells
// the client the capabilities a run goes by.
type Target interface {
	FetchDiscovery(ctx context.Context) (scimclient.Discovery, error)
	Use(caps scimclient.Capabilities)
	ListWith(ctx context.Context, ep scimclient.Endpoint, opts scimclient.ListOptions, fn func(scimclient.Resource) error) error
	Find(ctx context.Context, ep scimclient.Endpoint, attr, value string) ([]scimclient.Resource, error)
	Get(ctx context.Context, ep scimclient.Endpoint, id string) (scimclient.Resource, error)
	Create(ctx context.Context, ep scimclient.Endpoint, doc scim.Doc) (scimclient.Resource, error)
	Patch(ctx context.Context, ep scimclient.Endpoint, id string, ops []scim.PatchOp, ifMatch string) (scimclient.Resource, error)
	Replace(ctx context.Context, ep scimclient.Endpoint, id string, doc scim.Doc, ifMatch string) (scimclient.Resource, error)
	Delete(ctx context.Context, ep scimclient.Endpoint, id, ifMatch string) error
}

var _ Target = (*scimclient.Client)(nil)

// Engine plans and applies syncs.
type Engine struct {
	cfg         Config
	mapping     *Mapping
	rules       []rule
	source      Source
	target      Target
	store       *state.Store
	log         *zap.Logger
	now         func() time.Time
	concurrency int
	redact      func(string) string
	fingerprint string
	groups      *groupMapping // nil: groups are not synced
}

// Options are optional Engine settings.
type Options struct {
	Concurrency int              // writes in flight (default 4)
	Now         func() time.Time // clock, for tests of grace periods
	// Redact removes secret values from text the engine stores (run errors); the identity when
	// nil.
	Redact func(string) string
	// Target names the target (its URL) in the configuration fingerprint: another target means
	// a full reconcile, never a delta against state kept for the old one.
	Target string
	// Groups, when set, syncs groups too (the groups: section).
	Groups *GroupsConfig
}

// New builds an engine; cfg is validated.
func New(cfg Config, mapping *Mapping, src Source, tgt Target, st *state.Store, log *zap.Logger, opts Options) (*Engine, error) {
	if err := cfg.Validate().Err(); err != nil {
		return nil, err
	}
	rules, err := compileRules(cfg.Overrides)
	if err != nil {
		return nil, err
	}
	if mapping.profile.NoDirectDelete && cfg.Deprovision == DeprovisionDelete {
		return nil, fmt.Errorf("sync: the %s profile needs a disable before any delete: use deprovision: disable with delete_after", mapping.profile.Name)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Concurrency < 1 {
		opts.Concurrency = 4
	}
	var groups *groupMapping
	if opts.Groups != nil {
		if groups, err = compileGroups(*opts.Groups, mapping.profile); err != nil {
			return nil, fmt.Errorf("sync: groups: %w", err)
		}
	}
	if opts.Redact == nil {
		opts.Redact = func(s string) string { return s }
	}
	return &Engine{cfg: cfg, mapping: mapping, rules: rules, source: src, target: tgt, store: st,
		log: log.Named("sync"), now: opts.Now, concurrency: opts.Concurrency, redact: opts.Redact,
		fingerprint: fingerprint(cfg, mapping, opts.Target, opts.Groups), groups: groups}, nil
}

// fingerprint hashes what decides a run's plan besides the directory and the target's data:
// the effective mapping, the override rules, deprovisioning and the target. A delta trusts
// state only while it is unchanged: otherwise users a removed override rule no longer holds
// back, or attributes a new mapping adds, would wait for their entries to change.
func fingerprint(cfg Config, m *Mapping, target string, groups *GroupsConfig) string {
	raw, _ := json.Marshal(struct {
		Profile     string
		Mapping     MappingConfig
		Overrides   []OverrideRule
		Deprovision string
		DeleteAfter time.Duration
		Target      string
		Groups      *GroupsConfig
	}{m.profile.Name, Effective(m.profile.Name, m.cfg), cfg.Overrides, cfg.Deprovision, cfg.DeleteAfter.D(), target, groups})
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}

// PlanOptions narrow or loosen one run.
type PlanOptions struct {
	OnlyUser         string // plan this one userName only (no deprovisioning)
	AllowDeprovision int    // allow up to this many disables/deletes/re-links beyond the limits
	AllowRecreate    int    // allow up to this many users missing on the target to be created again
	Full             bool   // read both sides in full and repair drift, whenever it is due or not
}

// handsOff applies design.md's order: administrator override, config rule, target attribute.
func (e *Engine) handsOff(userName, dn string, entry *ldap.Entry, targetCMS bool, overrides map[string]state.Override) (bool, string) {
	if o, ok := overrides[strings.ToLower(userName)]; ok {
		return o.Mode == state.ModeCMS, fmt.Sprintf("managementMode %s set by `scimsync override`", o.Mode)
	}
	for _, r := range e.rules {
		if r.match(dn, userName, entry) {
			return r.mode == state.ModeCMS, fmt.Sprintf("managementMode %s from sync.overrides[%d]", r.mode, r.src)
		}
	}
	if targetCMS {
		return true, "managementMode CMS on the target"
	}
	return false, ""
}

// limit is the larger of max_deprovision and max_deprovision_percent of known: the count keeps
// a small organisation's ordinary leaver from stopping every run (a blocked leaver keeps their
// access), the percentage scales the limit for large directories.
func (e *Engine) limit(known int) int {
	return max(e.cfg.MaxDeprovision, int(math.Floor(float64(known)*e.cfg.MaxDeprovisionPercent/100)))
}

// checkLimits is the deprovisioning circuit breaker: too many disables, deletes or re-links at
// once usually mean a broken filter or base DN, not a mass departure. Re-links count because a
// wrong base DN could otherwise re-link a whole directory silently.
func (e *Engine) checkLimits(plan *Plan, relinks int, allow int) {
	n := plan.Summary[ActionDisable] + plan.Summary[ActionDelete] + relinks
	limit := e.limit(plan.Known)
	if n == 0 || n <= allow || n <= limit {
		return
	}
	pct := 0.0
	if plan.Known > 0 {
		pct = float64(n) * 100 / float64(plan.Known)
	}
	plan.Blocked = &Block{Kind: blockDeprovision, Deprovisions: n, Known: plan.Known, Percent: pct,
		Message: fmt.Sprintf("this run would disable, delete or re-link %d of %d managed users (%.1f%%), over the limit of %d "+
			"(the larger of sync.max_deprovision %d and sync.max_deprovision_percent %g%%); no one was deprovisioned. "+
			"Check the directory filter, then rerun with --allow-deprovision %d to allow it once.",
			n, plan.Known, pct, limit, e.cfg.MaxDeprovision, e.cfg.MaxDeprovisionPercent, n)}
}

// checkMissing is the target-side guard: a target whose listing suddenly lacks many users the
// sync created (an outage answering an empty list, a tenant reset, a paging bug) must not make
// the sync create them all again, duplicating them on targets without userName uniqueness and
// leaving the originals active forever. Nothing is applied.
func (e *Engine) checkMissing(plan *Plan, missing, allow int) {
	limit := e.limit(plan.Known)
	if missing == 0 || missing <= allow || missing <= limit {
		return
	}
	pct := float64(missing) * 100 / float64(max(plan.Known, 1))
	plan.Blocked = &Block{Kind: blockMissing, Deprovisions: missing, Known: plan.Known, Percent: pct,
		Message: fmt.Sprintf("the target lacks %d of the %d users scimsync manages there (%.1f%%), over the limit of %d; "+
			"nothing was changed. Check the target (an outage, a reset, a paging fault), then rerun with --allow-recreate %d "+
			"to create them again.", missing, plan.Known, pct, limit, missing)}
}
