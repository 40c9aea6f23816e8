package sync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/state"
)

// Action is what the plan does with one user.
type Action string

// The plan's actions (design.md).
const (
	ActionCreate  Action = "create"
	ActionUpdate  Action = "update"
	ActionDisable Action = "disable"
	ActionDelete  Action = "delete"
	ActionSkip    Action = "skip"
	ActionInvalid Action = "invalid"
)

var actionOrder = map[Action]int{ActionCreate: 0, ActionUpdate: 1, ActionDisable: 2, ActionDelete: 3, ActionSkip: 4, ActionInvalid: 5}

// Sentinel errors the CLI maps to exit codes.
var (
	// ErrSourceFailed: the directory read failed or was partial; nothing was changed.
	ErrSourceFailed = errors.New("the directory read failed; nothing was changed")
	// ErrEmptySource: the directory returned no users while state knows some.
	ErrEmptySource = errors.New("the directory returned no users while scimsync manages some; nothing was changed (check ldap.base_dn and ldap.user_filter)")
	// ErrSafetyLimit: the plan deprovisions more users than the limits allow.
	ErrSafetyLimit = errors.New("deprovisioning limit exceeded")
	// ErrUserNotFound: --user named nobody in the directory.
	ErrUserNotFound = errors.New("no such user in the directory")
	// ErrApplyFailed: some writes failed; the rest were applied and state matches the target.
	ErrApplyFailed = errors.New("some changes failed")
)

// FormatVersion of the JSON plan.
const FormatVersion = 1

// Item is one user's line in the plan.
type Item struct {
	Action     Action `json:"action"`
	UserName   string `json:"userName"`
	ExternalID string `json:"externalId"`
	DN         string `json:"dn,omitempty"`
	TargetID   string `json:"targetId,omitempty"`
	Adopt      bool   `json:"adopt,omitempty"`
	MatchedBy  string `json:"matchedBy,omitempty"` // link, externalId or userName
	Reason     string `json:"reason,omitempty"`
	Attribute  string `json:"attribute,omitempty"` // invalid: the attribute …
	Rule       string `json:"rule,omitempty"`      // … and the rule it breaks
	Blocked    bool   `json:"blocked,omitempty"`   // held back by the safety limit
	Changes    []Diff `json:"changes,omitempty"`

	desired *Desired
	actual  scim.Doc
	link    *state.Link
	forget  bool // the link is stale (user gone from the target): drop it
}

// Block describes a safety stop.
type Block struct {
	Deprovisions int     `json:"deprovisions"`
	Known        int     `json:"known"`
	Percent      float64 `json:"percent"`
	Message      string  `json:"message"`
}

// Plan is the value the dry run prints and apply executes.
type Plan struct {
	FormatVersion int            `json:"format_version"`
	Items         []Item         `json:"items"`
	Unchanged     int            `json:"unchanged"`
	Summary       map[Action]int `json:"summary"`
	Blocked       *Block         `json:"blocked,omitempty"`
	Warnings      []string       `json:"warnings,omitempty"`
	Source        int            `json:"source_users"`
	Target        int            `json:"target_users"`
	Known         int            `json:"known_users"`

	refresh []state.Link // links to update in state only (no target write)
	caps    scimclient.Capabilities
}

// Pending reports whether applying the plan would change anything on the target.
func (p *Plan) Pending() bool {
	for _, it := range p.Items {
		switch it.Action {
		case ActionCreate, ActionUpdate, ActionDisable, ActionDelete:
			if !it.Blocked {
				return true
			}
		}
	}
	return false
}

// Target is the SCIM endpoint as the reconciler needs it.
type Target interface {
	Discover(ctx context.Context) (scimclient.Capabilities, error)
	ListUsers(ctx context.Context, fn func(scim.Doc) error) error
	FindUser(ctx context.Context, externalID, userName string) (scim.Doc, error)
	CreateUser(ctx context.Context, doc scim.Doc) (scim.Doc, error)
	PatchUser(ctx context.Context, id string, ops []scimclient.PatchOp) error
	ReplaceUser(ctx context.Context, id string, doc scim.Doc) error
	DeleteUser(ctx context.Context, id string) error
}

var _ Target = (*scimclient.Client)(nil)

// Engine plans and applies syncs.
type Engine struct {
	cfg         Config
	mapping     *Mapping
	rules       []rule
	source      ldap.Source
	target      Target
	store       *state.Store
	log         *zap.Logger
	now         func() time.Time
	concurrency int
}

// Options are optional Engine settings.
type Options struct {
	Concurrency int              // writes in flight (default 4)
	Now         func() time.Time // clock, for tests of grace periods
}

// New builds an engine; cfg is validated.
func New(cfg Config, mapping *Mapping, src ldap.Source, tgt Target, st *state.Store, log *zap.Logger, opts Options) (*Engine, error) {
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
	return &Engine{cfg: cfg, mapping: mapping, rules: rules, source: src, target: tgt, store: st,
		log: log.Named("sync"), now: opts.Now, concurrency: opts.Concurrency}, nil
}

// PlanOptions narrow or loosen one run.
type PlanOptions struct {
	OnlyUser         string // plan this one userName only (no deprovisioning)
	AllowDeprovision int    // allow up to this many disables/deletes beyond the limits
}

type candidate struct {
	d     Desired
	entry ldap.Entry
}

// Plan reads directory, state and target and decides. It writes nothing anywhere.
func (e *Engine) Plan(ctx context.Context, opts PlanOptions) (*Plan, error) {
	links, err := e.store.Links()
	if err != nil {
		return nil, err
	}
	overrides, err := e.store.Overrides()
	if err != nil {
		return nil, err
	}
	plan := &Plan{FormatVersion: FormatVersion, Summary: map[Action]int{}, Known: len(links)}

	// 1. the directory
	var cands []candidate
	var invalid []Item
	err = e.source.Users(ctx, e.mapping.Attributes(), func(en ldap.Entry) error {
		d, merr := e.mapping.Map(en)
		if merr != nil {
			// a hands-off user is someone else's business even when it cannot be mapped
			if off, why := e.handsOff(en.First("uid"), en.DN, &en, nil, overrides); off {
				invalid = append(invalid, Item{Action: ActionSkip, DN: en.DN, ExternalID: en.ID, UserName: en.First("uid"), Reason: why})
				return nil
			}
			invalid = append(invalid, Item{Action: ActionInvalid, DN: en.DN, ExternalID: en.ID,
				UserName: en.First("uid"), Attribute: merr.Attribute, Rule: merr.Rule, Reason: strings.Join(merr.Problems, "; ")})
			return nil
		}
		cands = append(cands, candidate{d: d, entry: en})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sync: %w: %w", ErrSourceFailed, err)
	}
	plan.Source = len(cands) + len(invalid)
	if len(cands) == 0 && len(links) > 0 && opts.OnlyUser == "" {
		return nil, fmt.Errorf("sync: %w", ErrEmptySource)
	}
	cands, dupes := dedupe(cands, links, e.mapping)
	invalid = append(invalid, dupes...)

	// 2. the target
	caps, err := e.target.Discover(ctx)
	if err != nil {
		return nil, fmt.Errorf("sync: discover target: %w", err)
	}
	caps.Extensions = e.mapping.extensions(caps.Extensions)
	plan.caps = caps
	payload := Payload{Extensions: caps.Extensions}
	for _, f := range e.mapping.fields {
		if s := slots[f.key]; !payload.allowed(s) {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("mapping %s is not sent: the target does not declare %s", f.key, s.ext))
		}
	}
	byID, byExt, byName := map[string]scim.Doc{}, map[string]scim.Doc{}, map[string]scim.Doc{}
	err = e.target.ListUsers(ctx, func(d scim.Doc) error {
		id, _ := d["id"].(string)
		byID[id] = d
		if x, ok := d["externalId"].(string); ok && x != "" {
			byExt[x] = d
		}
		if n, ok := d["userName"].(string); ok {
			byName[strings.ToLower(n)] = d
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sync: list target users: %w", err)
	}
	plan.Target = len(byID)

	// 3. every directory user
	seen := map[string]bool{}
	found := false
	for _, c := range cands {
		if opts.OnlyUser != "" && !strings.EqualFold(c.d.UserName(), opts.OnlyUser) {
			continue
		}
		found = true
		seen[c.d.ExternalID] = true
		it := e.planUser(c, links, overrides, byID, byExt, byName, payload, plan)
		if it != nil {
			plan.Items = append(plan.Items, *it)
		}
	}
	if opts.OnlyUser != "" {
		for _, it := range invalid {
			if strings.EqualFold(it.UserName, opts.OnlyUser) {
				plan.Items = append(plan.Items, it)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("sync: %q: %w", opts.OnlyUser, ErrUserNotFound)
		}
		plan.finish()
		return plan, nil
	}
	plan.Items = append(plan.Items, invalid...)
	for _, it := range invalid {
		seen[it.ExternalID] = true // an unmappable entry still exists: never deprovision it
	}

	// 4. users the sync owns that the directory no longer has
	for ext, l := range links {
		if seen[ext] {
			continue
		}
		if it := e.planGone(l, overrides, byID); it != nil {
			plan.Items = append(plan.Items, *it)
		}
	}
	e.checkLimits(plan, opts.AllowDeprovision)
	plan.finish()
	return plan, nil
}

// dedupe keeps one directory user per externalId and per userName. The one already linked
// wins, then the smaller DN, so the choice is stable across runs. A userName collision makes the
// later user invalid, or, with unique_user_names: suffix, gives it name-2, name-3 …; the name a
// user was given is recorded in its link, so it keeps it on every later run.
func dedupe(cands []candidate, links map[string]state.Link, m *Mapping) ([]candidate, []Item) {
	sort.SliceStable(cands, func(i, j int) bool {
		_, li := links[cands[i].d.ExternalID]
		_, lj := links[cands[j].d.ExternalID]
		if li != lj {
			return li
		}
		return strings.ToLower(cands[i].d.DN) < strings.ToLower(cands[j].d.DN)
	})
	byExt, byName := map[string]string{}, map[string]string{}
	var keep []candidate
	var invalid []Item
	var pending []candidate // suffix mode: collided, named in a second pass
	if m.suffix {
		// first, every linked user keeps the name it was given if it still derives from its base
		for i, c := range cands {
			l, linked := links[c.d.ExternalID]
			if linked && l.UserName != c.d.UserName() && isSuffixOf(l.UserName, c.d.UserName(), m.maxUserName()) &&
				byName[strings.ToLower(l.UserName)] == "" {
				cands[i].d.Values["userName"] = l.UserName
			}
		}
	}
	for _, c := range cands {
		name := strings.ToLower(c.d.UserName())
		if other, dup := byExt[c.d.ExternalID]; dup {
			invalid = append(invalid, Item{Action: ActionInvalid, DN: c.d.DN, UserName: c.d.UserName(), ExternalID: c.d.ExternalID,
				Attribute: keyExternalID, Rule: "unique", Reason: "the same stable id is also on " + other})
			continue
		}
		if other, dup := byName[name]; dup {
			if m.suffix {
				pending = append(pending, c)
				byExt[c.d.ExternalID] = c.d.DN
				continue
			}
			invalid = append(invalid, Item{Action: ActionInvalid, DN: c.d.DN, UserName: c.d.UserName(), ExternalID: c.d.ExternalID,
				Attribute: "userName", Rule: "unique", Reason: fmt.Sprintf("userName %q is also produced by %s", c.d.UserName(), other)})
			continue
		}
		byExt[c.d.ExternalID], byName[name] = c.d.DN, c.d.DN
		keep = append(keep, c)
	}
	for _, c := range pending {
		base := c.d.UserName()
		for n := 2; ; n++ {
			cand := withSuffix(base, n, m.maxUserName())
			if byName[strings.ToLower(cand)] == "" {
				c.d.Values["userName"] = cand
				byName[strings.ToLower(cand)] = c.d.DN
				keep = append(keep, c)
				break
			}
		}
	}
	return keep, invalid
}

// maxUserName is the userName length rule, or 0 for none.
func (m *Mapping) maxUserName() int { return m.rules["userName"].MaxLength }

// withSuffix appends -n, shortening base so the result stays within limit characters.
func withSuffix(base string, n, limit int) string {
	suffix := fmt.Sprintf("-%d", n)
	if limit > 0 {
		base = truncateRunes(base, max(limit-len(suffix), 1))
	}
	return base + suffix
}

// isSuffixOf reports whether name is base itself or a suffixed form withSuffix would produce.
func isSuffixOf(name, base string, limit int) bool {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return false
	}
	var n int
	if _, err := fmt.Sscanf(name[i+1:], "%d", &n); err != nil || n < 2 || fmt.Sprint(n) != name[i+1:] {
		return false
	}
	return withSuffix(base, n, limit) == name
}

// handsOff applies design.md's order: administrator override, config rule, target attribute.
func (e *Engine) handsOff(userName, dn string, entry *ldap.Entry, actual scim.Doc, overrides map[string]state.Override) (bool, string) {
	if o, ok := overrides[strings.ToLower(userName)]; ok {
		return o.Mode == state.ModeCMS, fmt.Sprintf("managementMode %s set by `scimsync override`", o.Mode)
	}
	for _, r := range e.rules {
		if r.match(dn, userName, entry) {
			return r.mode == state.ModeCMS, fmt.Sprintf("managementMode %s from sync.overrides[%d]", r.mode, r.src)
		}
	}
	if ext, ok := actual[scim.ScimsyncSchema].(map[string]any); ok && ext["managementMode"] == scim.ModeCMS {
		return true, "managementMode CMS on the target"
	}
	return false, ""
}

func (e *Engine) planUser(c candidate, links map[string]state.Link, overrides map[string]state.Override,
	byID, byExt, byName map[string]scim.Doc, payload Payload, plan *Plan) *Item {
	d := c.d
	it := &Item{UserName: d.UserName(), ExternalID: d.ExternalID, DN: d.DN, desired: &d}
	var actual scim.Doc
	link, linked := links[d.ExternalID]
	switch {
	case linked && byID[link.TargetID] != nil:
		actual, it.MatchedBy = byID[link.TargetID], "link"
	case byExt[d.ExternalID] != nil:
		actual, it.MatchedBy = byExt[d.ExternalID], "externalId"
	case byName[strings.ToLower(d.UserName())] != nil:
		actual, it.MatchedBy = byName[strings.ToLower(d.UserName())], "userName"
	}
	if linked {
		it.link = &link
	}
	if off, why := e.handsOff(d.UserName(), d.DN, &c.entry, actual, overrides); off {
		it.Action, it.Reason = ActionSkip, why
		if actual != nil {
			it.TargetID, _ = actual["id"].(string)
		}
		return it
	}
	if actual == nil {
		it.Action = ActionCreate
		if linked {
			it.Reason = "was created before but is missing on the target"
		}
		if err := scim.ValidateUser(payload.Document(d, nil)); err != nil {
			it.Action, it.Attribute, it.Rule, it.Reason = ActionInvalid, err.Attribute, err.Rule, err.Error()
		}
		return it
	}
	it.TargetID, _ = actual["id"].(string)
	it.actual = actual
	if other, ok := actual["externalId"].(string); ok && other != "" && other != d.ExternalID && it.MatchedBy == "userName" {
		it.Action, it.Reason = ActionSkip, fmt.Sprintf("userName %q is taken on the target by another user (externalId %s)", d.UserName(), other)
		return it
	}
	it.Changes = payload.diff(e.mapping, d, actual)
	if len(it.Changes) > 0 {
		if err := scim.ValidateUser(applyDiffs(actual, it.Changes)); err != nil {
			it.Action, it.Attribute, it.Rule, it.Reason = ActionInvalid, err.Attribute, err.Rule, err.Error()
			return it
		}
	}
	if !linked || link.TargetID != it.TargetID {
		it.Action, it.Adopt = ActionUpdate, !linked
		if it.Adopt {
			it.Reason = "exists on the target (matched by " + it.MatchedBy + "): adopting"
		}
		return it
	}
	if len(it.Changes) > 0 {
		it.Action = ActionUpdate
		return it
	}
	if link.DN != d.DN || link.UserName != d.UserName() || !link.DisabledAt.IsZero() {
		l := link
		l.DN, l.UserName, l.DisabledAt, l.UpdatedAt = d.DN, d.UserName(), time.Time{}, e.now().UTC()
		plan.refresh = append(plan.refresh, l)
	}
	plan.Unchanged++
	return nil
}

func (e *Engine) planGone(l state.Link, overrides map[string]state.Override, byID map[string]scim.Doc) *Item {
	it := &Item{UserName: l.UserName, ExternalID: l.ExternalID, DN: l.DN, TargetID: l.TargetID, link: &l}
	actual := byID[l.TargetID]
	if actual == nil {
		it.Action, it.Reason, it.forget = ActionSkip, "gone from the directory and already gone from the target; forgetting it", true
		return it
	}
	it.actual = actual
	if off, why := e.handsOff(l.UserName, l.DN, nil, actual, overrides); off {
		it.Action, it.Reason = ActionSkip, why+"; not deprovisioned"
		return it
	}
	active := readSlot(actual, slots[keyActive]) != "false"
	switch e.cfg.Deprovision {
	case DeprovisionNone:
		it.Action, it.Reason = ActionSkip, "gone from the directory; sync.deprovision is none"
		return it
	case DeprovisionDelete:
		it.Action, it.Reason = ActionDelete, "gone from the directory"
		return it
	}
	if active {
		it.Action, it.Reason = ActionDisable, "gone from the directory"
		it.Changes = []Diff{{Attribute: keyActive, Old: "true", New: "false"}}
		return it
	}
	since := l.DisabledAt
	if since.IsZero() {
		return nil // disabled by someone else; the clock starts when the sync disables it
	}
	if grace := e.cfg.DeleteAfter.D(); grace > 0 && e.now().Sub(since) >= grace {
		it.Action, it.Reason = ActionDelete, fmt.Sprintf("disabled since %s, past delete_after (%s)", since.Format(time.RFC3339), grace)
		return it
	}
	return nil
}

// checkLimits is the deprovisioning circuit breaker: too many disables/deletes at once usually
// means a broken filter or base DN, not a mass departure. The limit is the larger of
// max_deprovision users and max_deprovision_percent of the managed users: the count keeps a
// small organisation's ordinary leaver from stopping every run (a blocked leaver keeps their
// access), the percentage scales the limit for large directories.
func (e *Engine) checkLimits(plan *Plan, allow int) {
	n := 0
	for _, it := range plan.Items {
		if it.Action == ActionDisable || it.Action == ActionDelete {
			n++
		}
	}
	limit := max(e.cfg.MaxDeprovision, int(math.Floor(float64(plan.Known)*e.cfg.MaxDeprovisionPercent/100)))
	if n == 0 || n <= allow || n <= limit {
		return
	}
	pct := 0.0
	if plan.Known > 0 {
		pct = float64(n) * 100 / float64(plan.Known)
	}
	plan.Blocked = &Block{Deprovisions: n, Known: plan.Known, Percent: pct,
		Message: fmt.Sprintf("this run would disable or delete %d of %d managed users (%.1f%%), over the limit of %d "+
			"(the larger of sync.max_deprovision %d and sync.max_deprovision_percent %g%%); no one was deprovisioned. "+
			"Check the directory filter, then rerun with --allow-deprovision %d to allow it once.",
			n, plan.Known, pct, limit, e.cfg.MaxDeprovision, e.cfg.MaxDeprovisionPercent, n)}
	for i := range plan.Items {
		if a := plan.Items[i].Action; a == ActionDisable || a == ActionDelete {
			plan.Items[i].Blocked = true
		}
	}
}

func (p *Plan) finish() {
	sort.SliceStable(p.Items, func(i, j int) bool {
		a, b := p.Items[i], p.Items[j]
		if actionOrder[a.Action] != actionOrder[b.Action] {
			return actionOrder[a.Action] < actionOrder[b.Action]
		}
		return strings.ToLower(a.UserName) < strings.ToLower(b.UserName)
	})
	for _, it := range p.Items {
		p.Summary[it.Action]++
	}
}

// hash fingerprints what was pushed for a user, recorded in its link.
func hash(values map[string]string) string {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\x00", k, values[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
