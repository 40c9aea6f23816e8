package sync

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/state"
)

// MemberChanges are a group's member operations: who joins, who leaves, and who the directory
// lists but the sync leaves out (users it does not sync: out of scope, hands-off, invalid).
type MemberChanges struct {
	Add    []Member `json:"add,omitempty"`
	Remove []Member `json:"remove,omitempty"`
	// Outside counts members the directory lists that are not synced users: never created
	// for a group, never sent.
	Outside int `json:"outside,omitempty"`
	// Unmanaged counts members on the target the sync does not manage: left as they are.
	Unmanaged int `json:"unmanaged,omitempty"`
	// Total is how many members the group has once the changes are applied.
	Total int `json:"total"`
}

// Member is one member of a group, by the external id the sync links it under; its target id is
// looked up when the operation is sent (a user created in the same run has one only then).
type Member struct {
	ExternalID string `json:"externalId"`
	Name       string `json:"name,omitempty"`
	Group      bool   `json:"group,omitempty"` // a nested group (groups.nesting: preserve)
}

// groupPlanner plans the groups of one run, after the users.
type groupPlanner struct {
	*planner
	g          *groupMapping
	q          ldap.Query
	byDN       map[string]*groupEntry // dnKey -> group read (this run, or looked up)
	lookedUp   map[string]*groupEntry // dnKey -> a group looked up by DN (nil: not a group)
	changed    []*groupEntry          // groups to plan
	deletes    []ldap.Entry
	full       bool                  // every group in scope was read
	target     *groupTargets         // the target's groups, when reconciling
	userDN     map[string]string     // dnKey -> user external id, looked up this run
	userUID    map[string]string     // lower(uid) -> user external id, looked up this run
	seenGroups map[string]bool       // external ids of the groups planned
	nesting    string                // groups.nesting, or flatten when the target takes no groups as members
	recovered  map[string]state.Link // links of group creates recovered from intents, by external id
}

// planGroups is the groups' phases: read, resolve members, nest, match, diff, gone, limits.
func (p *planner) planGroups() error {
	g := p.e.groups
	if g == nil {
		return nil
	}
	if p.plan.caps.Groups == nil {
		p.plan.Warnings = append(p.plan.Warnings, "the target declares no Group resource type (/ResourceTypes): groups are not synced")
		return nil
	}
	gp := &groupPlanner{planner: p, g: g, byDN: map[string]*groupEntry{}, lookedUp: map[string]*groupEntry{},
		userDN: map[string]string{}, userUID: map[string]string{}, seenGroups: map[string]bool{}, nesting: g.cfg.Nesting}
	if gp.nesting == NestingPreserve && !p.plan.caps.GroupMembersMayBeGroups() {
		gp.nesting = NestingFlatten
		p.plan.Notices = append(p.plan.Notices, "groups.nesting is preserve, but the target's Group schema takes only users as members (members.type or members.$ref in /Schemas): nested groups are flattened")
	}
	idAttr := g.cfg.IDAttribute
	if idAttr == "" {
		idAttr = p.e.source.UserQuery(nil).IDAttribute
	}
	gp.q = ldap.Query{BaseDN: g.cfg.BaseDN, Scope: g.cfg.Scope, Filter: g.cfg.Filter, Attributes: g.attributes(), IDAttribute: idAttr}
	cur, hasCursor, err := p.v.Cursor(state.LinkGroup)
	if err != nil {
		return err
	}
	// the nesting in effect (preserve can turn into flatten with the target's schema) decides
	// what was sent: when it changes, the groups are read in full and planned again
	gconf := p.fp + "|nesting=" + gp.nesting
	gfull := p.reconcile || (hasCursor && cur.Config != gconf)
	var ldapCur *ldap.Cursor
	if !gfull && hasCursor && len(cur.Data) > 0 {
		if c, err := ldap.DecodeCursor(cur.Data); err == nil {
			ldapCur = &c
		}
	}
	p.plan.groupsKnown = p.v.CountLinks(state.LinkGroup)
	if err := gp.recoverIntents(); err != nil {
		return err
	}
	if p.reconcile {
		t, err := listTargetGroups(p.ctx, p.e.target, p.v)
		if err != nil {
			return fmt.Errorf("sync: %w: list groups: %w", ErrTargetFailed, err)
		}
		gp.target = t
	}
	res, err := p.e.source.Read(p.ctx, gp.q, ldapCur, func(ch ldap.Change) error {
		switch ch.Kind {
		case ldap.ChangeDelete:
			gp.deletes = append(gp.deletes, ch.Entry)
		case ldap.ChangeUpsert:
			ge, why := g.readGroup(ch.Entry)
			if why != "" {
				return p.add(Item{Kind: KindGroup, Action: ActionInvalid, DN: ch.Entry.DN, ExternalID: ch.Entry.ID,
					Name: ch.Entry.First("cn"), Attribute: "displayName", Rule: "required", Reason: why})
			}
			gp.byDN[ge.dnKey] = &ge
			gp.changed = append(gp.changed, &ge)
		}
		return nil
	})
	if err != nil {
		return unwrapRead(fmt.Errorf("sync: %w: groups: %w", ErrSourceFailed, err))
	}
	gp.full = res.Full
	p.plan.GroupRead = &ReadInfo{Mechanism: res.Mechanism, Full: res.Full, Fallback: res.Fallback, CursorRefused: res.CursorRefused,
		Warning: res.Warning, Entries: len(gp.changed)}
	if res.CursorRefused {
		p.e.log.Warn("the stored directory cursor could not be used: groups read in full", zap.String("reason", res.Fallback))
	}
	if res.Cursor.Mechanism != "" || gfull {
		p.plan.groupCursor = &cursorUpdate{kind: state.LinkGroup, cursor: res.Cursor, full: gfull, prior: cur, listed: -1, config: gconf}
	}
	if err := gp.incomplete(); err != nil {
		return err
	}
	if err := gp.carryUp(); err != nil {
		return err
	}
	sort.Slice(gp.changed, func(i, j int) bool { return gp.changed[i].dnKey < gp.changed[j].dnKey })
	for _, ge := range gp.changed {
		if err := gp.planGroup(ge); err != nil {
			return err
		}
	}
	if err := gp.gone(); err != nil {
		return err
	}
	gp.checkLimits()
	return nil
}

// recoverIntents resolves group writes a killed run may have sent without recording them: a
// created group found on the target is linked (its members are added by this plan), anything
// else is planned again from what the target holds.
func (gp *groupPlanner) recoverIntents() error {
	intents, err := gp.v.Intents(state.LinkGroup)
	if err != nil {
		return err
	}
	for _, in := range intents {
		it := Item{Kind: KindGroup, Action: ActionRefresh, Name: in.Name, ExternalID: in.ExternalID, DN: in.DN,
			Reason: "nothing to record: planned again"}
		if _, linked, err := gp.v.Link(state.LinkGroup, in.ExternalID); err != nil {
			return err
		} else if in.Action == string(ActionCreate) && !linked {
			found, err := gp.e.target.Find(gp.ctx, scimclient.Groups, "externalId", in.ExternalID)
			if err != nil {
				return gp.targetErr(err)
			}
			for _, r := range found {
				if t := targetGroupOf(r); t.ext == in.ExternalID {
					now := gp.e.now().UTC()
					l := state.Link{ExternalID: in.ExternalID, TargetID: t.id, UserName: in.Name, DN: in.DN, DNKey: dnKey(in.DN),
						Origin: state.OriginCreated, CreatedAt: in.At, UpdatedAt: now}
					it.Link, it.TargetID = &l, t.id
					it.Reason = fmt.Sprintf("created by run %d, which stopped before recording it: linked", in.RunID)
					// the refresh item is applied before the groups: the group's own item (its
					// members) then updates a group the sync created, not one it adopts
					if gp.recovered == nil {
						gp.recovered = map[string]state.Link{}
					}
					gp.recovered[in.ExternalID] = l
					break
				}
			}
		}
		if err := gp.plan.add(it); err != nil {
			return err
		}
	}
	return nil
}

// incomplete adds to the groups to plan those whose last apply left members out (their user
// or nested group did not exist yet), which a delta that does not touch them would never retry.
func (gp *groupPlanner) incomplete() error {
	if gp.full {
		return nil
	}
	var dns []string
	err := gp.v.ForEachLink(state.LinkGroup, func(l state.Link) error {
		if l.Incomplete {
			dns = append(dns, l.DNKey)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, dnk := range dns {
		if _, ok := gp.byDN[dnk]; ok {
			continue
		}
		ge, err := gp.group(dnk)
		if err != nil {
			return err
		}
		if ge != nil {
			gp.changed = append(gp.changed, ge)
		}
	}
	return nil
}

// carryUp adds to the groups to plan those whose effective members a changed group alters: its
// parents, up the chain (flatten only; the directory's parents are recorded in the links).
func (gp *groupPlanner) carryUp() error {
	if gp.nesting != NestingFlatten || gp.full || len(gp.changed)+len(gp.deletes) == 0 {
		return nil
	}
	parents := map[string][]state.Link{} // child external id -> parent links
	err := gp.v.ForEachLink(state.LinkGroup, func(l state.Link) error {
		for _, child := range l.Nested {
			parents[child] = append(parents[child], l)
		}
		return nil
	})
	if err != nil || len(parents) == 0 {
		return err
	}
	queue := make([]string, 0, len(gp.changed)+len(gp.deletes))
	for _, ge := range gp.changed {
		queue = append(queue, ge.ext)
	}
	for _, d := range gp.deletes {
		queue = append(queue, firstOf(d.ID, d.UUID))
	}
	done := map[string]bool{}
	for len(queue) > 0 {
		ext := queue[0]
		queue = queue[1:]
		if done[ext] {
			continue
		}
		done[ext] = true
		for _, pl := range parents[ext] {
			if _, ok := gp.byDN[pl.DNKey]; !ok {
				ge, err := gp.group(pl.DNKey)
				if err != nil {
					return err
				}
				if ge != nil {
					gp.changed = append(gp.changed, ge)
				}
			}
			queue = append(queue, pl.ExternalID)
		}
	}
	return nil
}

// group returns the group with normalised DN dnk: read in this run, or looked up (nil: not a
// group in scope).
func (gp *groupPlanner) group(dnk string) (*groupEntry, error) {
	if ge, ok := gp.byDN[dnk]; ok {
		return ge, nil
	}
	if ge, ok := gp.lookedUp[dnk]; ok || gp.full {
		return ge, nil
	}
	en, found, err := gp.e.source.ByDN(gp.ctx, gp.q, dnk)
	if err != nil {
		return nil, fmt.Errorf("sync: %w: look up group %s: %w", ErrSourceFailed, dnk, err)
	}
	var ge *groupEntry
	if found {
		if g, why := gp.g.readGroup(en); why == "" {
			ge = &g
			gp.byDN[g.dnKey] = ge
		}
	}
	gp.lookedUp[dnk] = ge
	return ge, nil
}

// isGroup reports whether a member DN names a group: one read or known to state, or found by
// a lookup under the groups' base.
func (gp *groupPlanner) isGroup(dnk string) (*groupEntry, error) {
	if ge, ok := gp.byDN[dnk]; ok {
		return ge, nil
	}
	if gp.full {
		return nil, nil
	}
	if _, ok, err := gp.v.LinkByDN(state.LinkGroup, dnk); err != nil || !ok {
		return nil, err
	}
	return gp.group(dnk)
}

// user resolves a member DN to the external id of a user the sync syncs, or "".
func (gp *groupPlanner) user(dnk string) (string, error) {
	if ext, ok := gp.readUsers[digestDN(dnk)]; ok {
		return ext.String(), nil
	}
	if gp.readFull {
		return "", nil // a full read saw every user in scope
	}
	if ext, ok := gp.userDN[dnk]; ok {
		return ext, nil
	}
	ext := ""
	if l, ok, err := gp.v.LinkByDN(state.LinkUser, dnk); err != nil {
		return "", err
	} else if ok {
		ext = l.ExternalID
	} else {
		// a link written before links recorded their DN key, or a user out of scope
		en, found, err := gp.e.source.ByDN(gp.ctx, gp.e.source.UserQuery(nil), dnk)
		if err != nil {
			return "", fmt.Errorf("sync: %w: look up member %s: %w", ErrSourceFailed, dnk, err)
		}
		if found {
			ext = en.ID
		}
	}
	gp.userDN[dnk] = ext
	return ext, nil
}

// userByUID resolves a memberUid value to a synced user's external id, or "".
func (gp *groupPlanner) userByUID(uid string) (string, error) {
	key := strings.ToLower(uid)
	if ext, ok := gp.readUIDs[key]; ok {
		return ext.String(), nil
	}
	if gp.readFull {
		return "", nil
	}
	if ext, ok := gp.userUID[key]; ok {
		return ext, nil
	}
	ext := ""
	err := gp.e.source.Search(gp.ctx, gp.e.source.UserQuery([]string{"uid"}), "(uid="+ldap.EscapeFilter(uid)+")", func(en ldap.Entry) error {
		ext = en.ID
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("sync: %w: look up memberUid %s: %w", ErrSourceFailed, uid, err)
	}
	gp.userUID[key] = ext
	return ext, nil
}

// synced reports whether the user with external id ext is on the target after this run, and
// its name: linked (and not held back), or created or adopted by this plan.
func (gp *groupPlanner) synced(ext string) (string, bool, error) {
	k := keyOf(ext)
	if _, out := gp.outside[k]; out {
		return "", false, nil
	}
	if name, ok := gp.created[k]; ok {
		return name, true, nil
	}
	l, ok, err := gp.v.Link(state.LinkUser, ext)
	if err != nil || !ok {
		return "", false, err
	}
	if off, _ := gp.e.handsOff(l.UserName, l.DN, nil, false, gp.overrides); off {
		return "", false, nil
	}
	return l.UserName, true, nil
}

// members computes a group's members as they should be on the target: users (and, preserving
// nesting, groups), plus how many directory members are not synced.
func (gp *groupPlanner) members(ge *groupEntry) (map[string]Member, []string, int, error) {
	want := map[string]Member{}
	var nested []string
	outside := 0
	visiting := map[string]bool{}
	var walk func(g *groupEntry, depth int) error
	walk = func(g *groupEntry, depth int) error {
		visiting[g.dnKey] = true
		defer delete(visiting, g.dnKey)
		addUser := func(ext string) error {
			if ext == "" {
				outside++
				return nil
			}
			name, ok, err := gp.synced(ext)
			if err != nil {
				return err
			}
			if !ok {
				outside++
				return nil
			}
			want[ext] = Member{ExternalID: ext, Name: name}
			return nil
		}
		for _, dnk := range g.memberDNs {
			sub, err := gp.isGroup(dnk)
			if err != nil {
				return err
			}
			if sub != nil {
				if depth == 0 {
					nested = append(nested, sub.ext)
				}
				switch gp.nesting {
				case NestingNone:
					outside++
				case NestingPreserve:
					if depth == 0 {
						want[sub.ext] = Member{ExternalID: sub.ext, Name: sub.name, Group: true}
					}
				case NestingFlatten:
					switch {
					case visiting[sub.dnKey]:
						gp.notes = append(gp.notes, fmt.Sprintf("group %q is its own member through %q (a cycle): followed once", ge.name, sub.name))
					case depth+1 >= gp.g.cfg.MaxDepth:
						gp.notes = append(gp.notes, fmt.Sprintf("group %q nests deeper than groups.max_depth (%d) below %q: the rest is left out", ge.name, gp.g.cfg.MaxDepth, sub.name))
					default:
						if err := walk(sub, depth+1); err != nil {
							return err
						}
					}
				}
				continue
			}
			ext, err := gp.user(dnk)
			if err != nil {
				return err
			}
			if err := addUser(ext); err != nil {
				return err
			}
		}
		for _, uid := range g.memberUIDs {
			ext, err := gp.userByUID(uid)
			if err != nil {
				return err
			}
			if err := addUser(ext); err != nil {
				return err
			}
		}
		return nil
	}
	err := walk(ge, 0)
	return want, nested, outside, err
}

// handsOff says whether a group is hands-off: the administrator's override (scimsync override
// --group) first, as for users, then the groups.overrides rules.
func (gp *groupPlanner) handsOff(name, dn string, entry *ldap.Entry) (bool, string) {
	if o, ok := gp.overrides[state.GroupOverrideKey(name)]; ok {
		return o.Mode == state.ModeCMS, fmt.Sprintf("managementMode %s set by `scimsync override --group`", o.Mode)
	}
	return gp.g.handsOff(name, dn, entry)
}

// planGroup plans one group: match, hands-off, name and member changes.
func (gp *groupPlanner) planGroup(ge *groupEntry) error {
	gp.seenGroups[ge.ext] = true
	it := Item{Kind: KindGroup, Name: ge.name, ExternalID: ge.ext, DN: ge.dn, UUID: ge.uuid}
	if off, why := gp.handsOff(ge.name, ge.dn, &ldap.Entry{DN: ge.dn, ID: ge.ext, Attrs: ge.attrs}); off {
		it.Action, it.Reason = ActionSkip, why
		return gp.plan.add(it)
	}
	want, nested, outside, err := gp.members(ge)
	if err != nil {
		return err
	}
	link, linked, err := gp.v.Link(state.LinkGroup, ge.ext)
	if err != nil {
		return err
	}
	tg, matchedBy, err := gp.match(ge, link, linked)
	if err != nil {
		return err
	}
	it.MatchedBy = matchedBy
	vals := map[string]string{"displayName": ge.name, keyExternalID: ge.ext}
	it.Values = vals
	changes := &MemberChanges{Outside: outside}
	if tg == nil {
		it.Action = ActionCreate
		if linked {
			it.Reason = "was created before but is missing on the target"
		}
		for _, ext := range sortedKeys(want) {
			changes.Add = append(changes.Add, want[ext])
		}
		changes.Total = len(want)
		it.Members = changes
		it.Want = sortedKeys(want)
		it.Body = scim.Doc{"schemas": []any{scim.GroupSchema}, "displayName": ge.name, "externalId": ge.ext}
		return gp.addGroup(it, nested)
	}
	it.TargetID, it.Version = tg.id, tg.etag
	if tg.ext != "" && tg.ext != ge.ext && matchedBy == "displayName" {
		it.Action, it.Reason = ActionSkip, fmt.Sprintf("displayName %q is taken on the target by another group (externalId %s)", ge.name, scimclient.Sanitize(tg.ext))
		return gp.plan.add(it)
	}
	it.Adopt = !linked || link.TargetID != tg.id
	if l, ok := gp.recovered[ge.ext]; ok && l.TargetID == tg.id {
		it.Adopt = false // this run's refresh item links it as created, before this item applies
	}
	// what the target holds: its members when it was listed, else what was last applied
	have := map[string]bool{}
	if tg.members != nil {
		for _, ext := range tg.members {
			have[ext] = true
		}
		changes.Unmanaged = tg.unmanaged
	} else if linked {
		for _, ext := range link.Members {
			have[ext] = true
		}
	}
	for _, ext := range sortedKeys(want) {
		if !have[ext] {
			changes.Add = append(changes.Add, want[ext])
		}
	}
	for _, ext := range sortedSet(have) {
		if _, keep := want[ext]; !keep {
			m := Member{ExternalID: ext}
			if l, ok, _ := gp.v.Link(state.LinkUser, ext); ok {
				m.Name = l.UserName
			} else if l, ok, _ := gp.v.Link(state.LinkGroup, ext); ok {
				m.Name, m.Group = l.UserName, true
			}
			changes.Remove = append(changes.Remove, m)
		}
	}
	changes.Total = len(want)
	if tg.name != ge.name {
		it.Changes = append(it.Changes, Diff{Attribute: "displayName", Old: tg.name, New: ge.name})
		it.Operations = append(it.Operations, scim.PatchOp{Op: scim.OpReplace, Path: "displayName", Value: ge.name})
	}
	if tg.ext != ge.ext {
		op := scim.OpReplace
		if tg.ext == "" {
			op = scim.OpAdd
		}
		it.Changes = append(it.Changes, Diff{Attribute: keyExternalID, Old: tg.ext, New: ge.ext})
		it.Operations = append(it.Operations, scim.PatchOp{Op: op, Path: "externalId", Value: ge.ext})
	}
	if len(changes.Add)+len(changes.Remove) > 0 {
		it.Members = changes
	}
	if it.Members == nil && len(it.Operations) == 0 && !it.Adopt {
		gp.plan.GroupsUnchanged++
		if link.DN != ge.dn || link.UserName != ge.name || !slices.Equal(link.Nested, nested) || link.Incomplete ||
			(tg.members != nil && !sameSet(link.Members, want)) {
			l := link
			l.DN, l.DNKey, l.UserName, l.Nested, l.UpdatedAt = ge.dn, ge.dnKey, ge.name, nested, gp.e.now().UTC()
			l.Members, l.Incomplete = sortedKeys(want), false
			return gp.plan.add(Item{Kind: KindGroup, Action: ActionRefresh, Name: ge.name, ExternalID: ge.ext, DN: ge.dn,
				TargetID: l.TargetID, Link: &l, Reason: "state only: the target already holds this"})
		}
		return nil
	}
	it.Action = ActionUpdate
	if it.Adopt {
		it.Reason = "exists on the target (matched by " + matchedBy + "): adopting"
	}
	it.Want = sortedKeys(want)
	return gp.addGroup(it, nested)
}

// addGroup adds a create or update, recording the directory's nesting for the link.
func (gp *groupPlanner) addGroup(it Item, nested []string) error {
	if len(nested) > 0 {
		it.Nested = nested
	}
	return gp.plan.add(it)
}

// match finds the target group: by link, externalId, displayName.
func (gp *groupPlanner) match(ge *groupEntry, link state.Link, linked bool) (*targetGroup, string, error) {
	if gp.target != nil {
		if linked {
			if t := gp.target.byID[link.TargetID]; t != nil {
				return t, "link", nil
			}
		}
		if t := gp.target.byExt[ge.ext]; t != nil {
			return t, "externalId", nil
		}
		if t := gp.target.byName[strings.ToLower(ge.name)]; t != nil {
			return t, "displayName", nil
		}
		return nil, "", nil
	}
	if linked {
		// trust state: the group is where it was, with the members last applied
		return &targetGroup{id: link.TargetID, ext: ge.ext, name: link.UserName}, "link", nil
	}
	for _, f := range []struct{ attr, value, by string }{{"externalId", ge.ext, "externalId"}, {"displayName", ge.name, "displayName"}} {
		found, err := gp.e.target.Find(gp.ctx, scimclient.Groups, f.attr, f.value)
		if err != nil {
			return nil, "", gp.targetErr(err)
		}
		for _, r := range found {
			t := targetGroupOf(r)
			if (f.attr == "externalId" && t.ext == ge.ext) || (f.attr == "displayName" && strings.EqualFold(t.name, ge.name)) {
				return t, f.by, nil
			}
		}
	}
	return nil, "", nil
}

// gone plans the groups the sync owns whose entries left the directory.
func (gp *groupPlanner) gone() error {
	var stale []state.Link
	if gp.full {
		err := gp.v.ForEachLink(state.LinkGroup, func(l state.Link) error {
			if !gp.seenGroups[l.ExternalID] {
				stale = append(stale, l)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, d := range gp.deletes {
		l, ok, err := gp.v.LinkByUUID(state.LinkGroup, firstOf(d.UUID, d.ID))
		if err == nil && !ok && d.ID != "" {
			l, ok, err = gp.v.Link(state.LinkGroup, d.ID)
		}
		if err != nil {
			return err
		}
		if ok && !gp.seenGroups[l.ExternalID] {
			stale = append(stale, l)
		}
	}
	for _, l := range stale {
		it := Item{Kind: KindGroup, Name: l.UserName, ExternalID: l.ExternalID, DN: l.DN, TargetID: l.TargetID}
		switch {
		case gp.target != nil && gp.target.byID[l.TargetID] == nil:
			it.Action, it.Reason, it.Forget = ActionSkip, "gone from the directory and already gone from the target; forgetting it", true
		case gp.g.cfg.Deprovision == DeprovisionNone:
			it.Action, it.Reason = ActionSkip, "gone from the directory; groups.deprovision is none"
		default:
			if off, why := gp.handsOff(l.UserName, l.DN, nil); off {
				it.Action, it.Reason = ActionSkip, why+"; not deleted"
			} else {
				it.Action, it.Reason = ActionDelete, "gone from the directory"
			}
		}
		if err := gp.plan.add(it); err != nil {
			return err
		}
	}
	return nil
}

// checkLimits holds back group deletions over the limit, counted apart from users.
func (gp *groupPlanner) checkLimits() {
	n := gp.plan.Kinds[KindGroup][ActionDelete]
	known := gp.plan.groupsKnown
	count, pct := gp.g.cfg.MaxDeprovision, gp.g.cfg.MaxDeprovisionPercent
	if count == 0 && pct == 0 {
		count, pct = gp.e.cfg.MaxDeprovision, gp.e.cfg.MaxDeprovisionPercent
	}
	limit := max(count, int(float64(known)*pct/100))
	if n == 0 || n <= gp.opts.AllowDeprovision || n <= limit {
		return
	}
	gp.plan.GroupsBlocked = &Block{Kind: blockDeprovision, Deprovisions: n, Known: known, Percent: float64(n) * 100 / float64(max(known, 1)),
		Message: fmt.Sprintf("this run would delete %d of %d managed groups, over the limit of %d (groups.max_deprovision, "+
			"groups.max_deprovision_percent, or sync's); no group was deleted. Check groups.base_dn and groups.filter, then rerun "+
			"with --allow-deprovision %d to allow it once.", n, known, limit, n)}
}

// targetGroup is what the planner keeps of one target group.
type targetGroup struct {
	id, ext, name, etag string
	members             []string // external ids of the members the sync manages (nil: not read)
	unmanaged           int      // members the sync does not manage
}

func targetGroupOf(r scimclient.Resource) *targetGroup {
	t := &targetGroup{id: r.ID(), etag: r.ETag}
	t.ext, _ = r.Doc["externalId"].(string)
	t.name, _ = r.Doc["displayName"].(string)
	return t
}

// groupTargets is a full listing of the target's groups, members included.
type groupTargets struct {
	byID, byExt, byName map[string]*targetGroup
}

func listTargetGroups(ctx context.Context, tgt Target, v *state.View) (*groupTargets, error) {
	gt := &groupTargets{byID: map[string]*targetGroup{}, byExt: map[string]*targetGroup{}, byName: map[string]*targetGroup{}}
	err := tgt.ListWith(ctx, scimclient.Groups, scimclient.ListOptions{}, func(r scimclient.Resource) error {
		t := targetGroupOf(r)
		t.members = []string{}
		for _, id := range scim.MemberIDs(r.Doc["members"]) {
			if l, ok, err := v.LinkByTarget(state.LinkUser, id); err == nil && ok {
				t.members = append(t.members, l.ExternalID)
			} else if l, ok, err := v.LinkByTarget(state.LinkGroup, id); err == nil && ok {
				t.members = append(t.members, l.ExternalID)
			} else {
				t.unmanaged++
			}
		}
		gt.byID[t.id] = t
		if t.ext != "" && gt.byExt[t.ext] == nil {
			gt.byExt[t.ext] = t
		}
		if n := strings.ToLower(t.name); n != "" && gt.byName[n] == nil {
			gt.byName[n] = t
		}
		return nil
	})
	return gt, err
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedSet(m map[string]bool) []string { return sortedKeys(m) }

func sameSet(a []string, b map[string]Member) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if _, ok := b[x]; !ok {
			return false
		}
	}
	return true
}
