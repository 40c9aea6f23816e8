package sync

import (
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/state"
)

// Kind is the kind of resource a plan item is about.
type Kind string

// The resource kinds the sync manages.
const (
	KindUser  Kind = "User"
	KindGroup Kind = "Group"
)

func (k Kind) link() state.LinkKind {
	if k == KindGroup {
		return state.LinkGroup
	}
	return state.LinkUser
}

// Action is what the plan does with one resource.
type Action string

// The plan's actions (design.md), plus refresh: a record in state only, no request.
const (
	ActionCreate  Action = "create"
	ActionUpdate  Action = "update"
	ActionDisable Action = "disable"
	ActionDelete  Action = "delete"
	ActionSkip    Action = "skip"
	ActionInvalid Action = "invalid"
	ActionRefresh Action = "refresh"
)

// viewOrder is the order in which a plan lists its items.
var viewOrder = []Action{ActionCreate, ActionUpdate, ActionDisable, ActionDelete, ActionSkip, ActionInvalid, ActionRefresh}

// Sentinel errors the CLI maps to exit codes.
var (
	// ErrSourceFailed: the directory read failed or was partial; nothing was changed.
	ErrSourceFailed = errors.New("the directory read failed; nothing was changed")
	// ErrEmptySource: the directory returned no users while state knows some.
	ErrEmptySource = errors.New("the directory returned no users while scimsync manages some; nothing was changed (check ldap.base_dn and ldap.user_filter)")
	// ErrTargetFailed: the target could not be read (or its listing could not be trusted);
	// nothing was changed.
	ErrTargetFailed = errors.New("the target could not be read; nothing was changed")
	// ErrSafetyLimit: the plan deprovisions (or re-creates) more than the limits allow.
	ErrSafetyLimit = errors.New("safety limit exceeded")
	// ErrUserNotFound: --user named nobody in the directory.
	ErrUserNotFound = errors.New("no such user in the directory")
	// ErrApplyFailed: some writes failed; the rest were applied and state matches the target.
	ErrApplyFailed = errors.New("some changes failed")
)

// FormatVersion of the JSON plan. 2: items carry their kind, name, the exact operations and
// body they send, and the plan says how the directory was read.
const FormatVersion = 2

// Item is one resource's line in the plan: what will be sent, exactly.
type Item struct {
	Kind       Kind    `json:"kind"`
	Action     Action  `json:"action"`
	Name       string  `json:"name"` // userName, or a group's displayName
	ExternalID string  `json:"externalId"`
	DN         string  `json:"dn,omitempty"`
	UUID       string  `json:"uuid,omitempty"` // the entry's UUID as the directory's deltas name it
	TargetID   string  `json:"targetId,omitempty"`
	Version    string  `json:"version,omitempty"` // the target version the operations were computed against
	MatchedBy  string  `json:"matchedBy,omitempty"`
	Adopt      bool    `json:"adopt,omitempty"`
	Relink     *Relink `json:"relink,omitempty"`
	Drift      bool    `json:"drift,omitempty"` // the target no longer holds what was last applied
	Reason     string  `json:"reason,omitempty"`
	Attribute  string  `json:"attribute,omitempty"` // invalid: the attribute …
	Rule       string  `json:"rule,omitempty"`      // … and the rule it breaks
	Blocked    bool    `json:"blocked,omitempty"`   // held back by a safety limit
	Changes    []Diff  `json:"changes,omitempty"`   // what a person reads: attribute old → new
	// Values is every value sent for the resource (mapping key -> value): the link's hash, the
	// change log, and the re-plan after a 412 come from it.
	Values map[string]string `json:"values,omitempty"`
	// Operations is the PATCH body's operations, exactly as sent.
	Operations []scim.PatchOp `json:"operations,omitempty"`
	// Body is the document a create POSTs, or a PUT sends to a target without PATCH.
	Body scim.Doc `json:"body,omitempty"`
	// Forget drops the link: the resource is gone from both sides.
	Forget bool `json:"forget,omitempty"`
	// Link is what a refresh records in state.
	Link *state.Link `json:"link,omitempty"`
	// Members are a group's member changes (groups only).
	Members *MemberChanges `json:"members,omitempty"`
	// Want is every member a group has once applied, by external id (groups only).
	Want []string `json:"want,omitempty"`
	// Nested are the directory groups that are direct members of this group (groups only).
	Nested []string `json:"nested,omitempty"`
}

// Relink is a managed user whose directory entry was replaced (a restore gives every entry a new
// id): the new entry takes over the target user the old one owned.
type Relink struct {
	From string `json:"from"` // the old externalId
	To   string `json:"to"`
}

// Diff is one attribute's change.
type Diff struct {
	Attribute string `json:"attribute"`
	Old       string `json:"old"`
	New       string `json:"new"`
}

// Block describes a safety stop.
type Block struct {
	// Kind is "deprovision" (disables, deletes and re-links over the limit: those are held,
	// the rest applies) or "missing" (the target lost users the sync created: nothing applies).
	Kind         string  `json:"kind"`
	Deprovisions int     `json:"deprovisions"`
	Known        int     `json:"known"`
	Percent      float64 `json:"percent"`
	Message      string  `json:"message"`
}

// ReadInfo says how the directory was read.
type ReadInfo struct {
	Mechanism string `json:"mechanism"`          // full, syncrepl, dirsync, usn, timestamp, ldif, user
	Full      bool   `json:"full"`               // every entry in scope was seen
	Fallback  string `json:"fallback,omitempty"` // why a delta was not possible
	// CursorRefused: a stored cursor could not be used and the directory was read in full
	// (ldap.ReadResult.CursorRefused); counted by the daemon.
	CursorRefused bool   `json:"cursor_refused,omitempty"`
	Warning       string `json:"warning,omitempty"`
	Entries       int    `json:"entries"` // changes read
}

// DiscoveryInfo says where a run's target capabilities came from.
type DiscoveryInfo struct {
	FetchedAt time.Time `json:"fetched_at"`     // when the target served its discovery documents
	Kept      bool      `json:"kept,omitempty"` // read from state: this run did not ask the target
}

// Plan is the value the dry run prints and apply executes. Its items live in a spool (in
// memory, on disk when large) so a plan of 100,000 creates does not sit in the heap; Close it.
type Plan struct {
	FormatVersion int                     `json:"format_version"`
	Mode          string                  `json:"mode"` // full, delta or user
	Read          ReadInfo                `json:"read"`
	Notices       []string                `json:"notices,omitempty"` // defaults applied for this directory
	Warnings      []string                `json:"warnings,omitempty"`
	Blocked       *Block                  `json:"blocked,omitempty"`
	GroupsBlocked *Block                  `json:"groups_blocked,omitempty"` // group deletions over the limit
	GroupRead     *ReadInfo               `json:"group_read,omitempty"`
	Discovery     *DiscoveryInfo          `json:"discovery,omitempty"` // the target's capabilities
	Summary       map[Action]int          `json:"summary"`
	Kinds         map[Kind]map[Action]int `json:"kinds"`
	Unchanged     int                     `json:"unchanged"` // users
	// GroupsUnchanged counts groups that need nothing (their other counts are in Kinds).
	GroupsUnchanged int `json:"groups_unchanged,omitempty"`
	Excluded        int `json:"excluded"`     // entries mapping.exclude leaves out
	Source          int `json:"source_users"` // entries read (a delta: changed entries)
	Target          int `json:"target_users"` // -1: not listed (a delta)
	Known           int `json:"known_users"`

	items *spool
	// what Apply needs besides the items: the target's capabilities, the payload they allow,
	// and the cursor to store once everything is applied
	caps        scimclient.Capabilities
	payload     payload
	fetched     *state.Discovery // the discovery this run asked for, to keep once applied
	cursor      *cursorUpdate
	groupCursor *cursorUpdate
	groupsKnown int
	deadline    time.Time  // sync.max_run_time from when planning started: apply stops there too
	onAdd       func(Item) // told of every item (the group planner learns which users are synced)
}

type cursorUpdate struct {
	kind   state.LinkKind
	cursor ldap.Cursor
	full   bool // the read was full: record the time of the last full reconcile
	prior  state.Cursor
	listed int    // users the target listed (a full reconcile), -1 when not listed
	config string // what a full read records as the configuration it was made with
}

func newPlan(mode string) *Plan {
	return &Plan{FormatVersion: FormatVersion, Mode: mode, Summary: map[Action]int{},
		Kinds: map[Kind]map[Action]int{}, items: newSpool()}
}

// add records an item.
func (p *Plan) add(it Item) error {
	if it.Kind == "" {
		it.Kind = KindUser
	}
	if p.Kinds[it.Kind] == nil {
		p.Kinds[it.Kind] = map[Action]int{}
	}
	if p.onAdd != nil {
		p.onAdd(it)
	}
	p.Kinds[it.Kind][it.Action]++
	if it.Kind == KindUser {
		p.Summary[it.Action]++
	}
	return p.items.add(it)
}

// Each calls fn with every item in the plan's order: by kind, then by action, then by name
// (for plans small enough to sort in memory) or in reading order.
func (p *Plan) Each(fn func(Item) error) error {
	for _, k := range []Kind{KindUser, KindGroup} {
		for _, a := range viewOrder {
			err := p.items.each(segKey{k, a}, func(it Item) error {
				it.Blocked = p.blocks(it)
				return fn(it)
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// eachOf calls fn with the items of some actions only, in the plan's order: the other
// segments are not read (a 100,000-create plan is not decoded to find its refreshes).
func (p *Plan) eachOf(actions []Action, fn func(Item) error) error {
	for _, k := range []Kind{KindUser, KindGroup} {
		if err := p.eachOfKind(k, actions, fn); err != nil {
			return err
		}
	}
	return nil
}

// eachRaw is Each with the items as JSON, for a plan no safety stop holds back.
func (p *Plan) eachRaw(fn func([]byte) error) error {
	for _, k := range []Kind{KindUser, KindGroup} {
		for _, a := range viewOrder {
			if err := p.items.eachRaw(segKey{k, a}, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// eachOfKind is eachOf for one kind.
func (p *Plan) eachOfKind(kind Kind, actions []Action, fn func(Item) error) error {
	for _, a := range viewOrder {
		if !slices.Contains(actions, a) {
			continue
		}
		err := p.items.each(segKey{kind, a}, func(it Item) error {
			it.Blocked = p.blocks(it)
			return fn(it)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// writes counts the items Apply sends: every create, update, disable and delete the plan's
// safety stop does not hold back.
func (p *Plan) writes() int {
	n := 0
	for kind, counts := range p.Kinds {
		for _, a := range []Action{ActionCreate, ActionUpdate, ActionDisable, ActionDelete} {
			switch {
			case p.Blocked != nil && p.Blocked.Kind == blockMissing:
			case p.Blocked != nil && kind == KindUser && (a == ActionDisable || a == ActionDelete):
			case p.GroupsBlocked != nil && kind == KindGroup && a == ActionDelete:
			default:
				n += counts[a]
			}
		}
	}
	return n
}

// Items returns every item: for small plans (tests, one user, the CLI's step view).
func (p *Plan) Items() []Item {
	var out []Item
	_ = p.Each(func(it Item) error { out = append(out, it); return nil })
	return out
}

// Close releases the plan's spool.
func (p *Plan) Close() error {
	if p == nil || p.items == nil {
		return nil
	}
	return p.items.close()
}

// blocks reports whether the plan's safety stop holds it back.
func (p *Plan) blocks(it Item) bool {
	if it.Kind == KindGroup && p.GroupsBlocked != nil && it.Action == ActionDelete {
		return true
	}
	if p.Blocked == nil {
		return false
	}
	switch it.Action {
	case ActionCreate, ActionUpdate, ActionDisable, ActionDelete:
	default:
		return false
	}
	if p.Blocked.Kind == blockMissing {
		return true
	}
	return it.Action == ActionDisable || it.Action == ActionDelete || it.Relink != nil
}

// Pending reports whether applying the plan would change anything on the target.
func (p *Plan) Pending() bool { return p.writes() > 0 }

// UnmarshalJSON reads a plan as WriteJSON printed it (the CLI shows a plan the daemon made).
func (p *Plan) UnmarshalJSON(data []byte) error {
	type header Plan // the plan's exported fields, without this method
	var in struct {
		header
		Items []Item `json:"items"`
	}
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	*p = Plan(in.header)
	p.items = newSpool()
	for _, it := range in.Items {
		if err := p.items.add(it); err != nil {
			return err
		}
	}
	return nil
}

const (
	blockDeprovision = "deprovision"
	blockMissing     = "missing"
)
