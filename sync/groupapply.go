package sync

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/state"
)

// group executes one group item. Member ids are looked up now: users created in this run were
// committed in the phase before. A member that has no target id (its user failed to be
// created) is left out and not recorded, so the next run adds it.
func (a *applier) group(ctx context.Context, it Item) outcome {
	switch it.Action {
	case ActionCreate:
		return a.createGroup(ctx, it)
	case ActionUpdate:
		return a.updateGroup(ctx, it)
	case ActionDelete:
		err := a.e.target.Delete(ctx, scimclient.Groups, it.TargetID, a.ifMatch(it.Version))
		if err != nil && a.retryable(err) {
			var r scimclient.Resource
			if r, err = a.e.target.Get(ctx, scimclient.Groups, it.TargetID); err == nil {
				err = a.e.target.Delete(ctx, scimclient.Groups, it.TargetID, r.ETag)
			}
			if scimclient.IsStatus(err, http.StatusNotFound) {
				err = nil
			}
		}
		if err != nil {
			return outcome{err: fmt.Errorf("delete group %q: %w", it.Name, err)}
		}
		return outcome{commits: []state.Commit{{Kind: state.LinkGroup, Link: state.Link{ExternalID: it.ExternalID}, Forget: true,
			Change: a.e.change(it, "delete")}}}
	}
	return outcome{}
}

// memberTargets resolves members to target ids; unresolved ones are returned apart.
func (a *applier) memberTargets(members []Member) (map[string]string, error) {
	ids := map[string]string{}
	err := a.e.store.View(func(v *state.View) error {
		for _, m := range members {
			kind := state.LinkUser
			if m.Group {
				kind = state.LinkGroup
			}
			l, ok, err := v.Link(kind, m.ExternalID)
			if err != nil {
				return err
			}
			if ok && l.TargetID != "" {
				ids[m.ExternalID] = l.TargetID
			}
		}
		return nil
	})
	return ids, err
}

func memberValues(members []Member, ids map[string]string) []any {
	out := make([]any, 0, len(members))
	for _, m := range members {
		if id, ok := ids[m.ExternalID]; ok {
			v := map[string]any{"value": id}
			if m.Group {
				v["type"] = "Group"
			}
			out = append(out, v)
		}
	}
	return out
}

func (a *applier) createGroup(ctx context.Context, it Item) outcome {
	var adds []Member
	if it.Members != nil {
		adds = it.Members.Add
	}
	ids, err := a.memberTargets(adds)
	if err != nil {
		return outcome{err: err}
	}
	batch := a.e.groups.cfg.Batch
	first := adds[:min(batch, len(adds))]
	body := scim.CopyDoc(it.Body)
	if vals := memberValues(first, ids); len(vals) > 0 {
		body["members"] = vals
	}
	r, err := a.e.target.Create(ctx, scimclient.Groups, body)
	if err != nil {
		return outcome{err: fmt.Errorf("create group %q: %w", it.Name, err)}
	}
	ext, _ := r.Doc["externalId"].(string)
	name, _ := r.Doc["displayName"].(string)
	switch {
	case r.ID() == "":
		return outcome{err: fmt.Errorf("create group %q: the target returned no id", it.Name)}
	case ext != "" && ext != it.ExternalID, ext == "" && !strings.EqualFold(name, it.Name):
		return outcome{err: fmt.Errorf("create group %q: the target answered with group %s, which is not ours; nothing was linked",
			it.Name, scimclient.Sanitize(r.ID()))}
	}
	it.TargetID, it.Version = r.ID(), r.ETag
	applied := appliedOf(first, ids)
	err = a.sendMembers(ctx, &it, adds[len(first):], nil, ids, applied)
	l := a.groupLink(it, state.OriginCreated, nil, applied)
	ch := a.e.change(it, "create")
	ch.TargetID = it.TargetID
	o := outcome{commits: []state.Commit{{Kind: state.LinkGroup, Link: l, Change: ch, Exclusive: true}}}
	if err != nil {
		o.err = fmt.Errorf("create group %q: created, but %w (the next run adds the rest)", it.Name, err)
	}
	return o
}

func (a *applier) updateGroup(ctx context.Context, it Item) outcome {
	var prior *state.Link
	origin := state.OriginAdopted
	err := a.e.store.View(func(v *state.View) error {
		l, ok, err := v.Link(state.LinkGroup, it.ExternalID)
		if ok {
			prior, origin = &l, l.Origin
		}
		return err
	})
	if err != nil {
		return outcome{err: err}
	}
	var adds, removes []Member
	if it.Members != nil {
		adds, removes = it.Members.Add, it.Members.Remove
	}
	ids, err := a.memberTargets(append(slices.Clone(adds), removes...))
	if err != nil {
		return outcome{err: err}
	}
	// what the target held before: the members the plan leaves in place, then this run's
	applied := map[string]bool{}
	for _, ext := range it.Want {
		applied[ext] = true
	}
	for _, m := range adds {
		delete(applied, m.ExternalID)
	}
	for _, m := range removes {
		applied[m.ExternalID] = true
	}
	if !a.plan.caps.Patch {
		err = a.replaceGroup(ctx, &it, ids, applied, adds, removes)
	} else {
		if len(it.Operations) > 0 {
			err = a.patchGroup(ctx, &it, it.Operations)
		}
		if err == nil {
			err = a.sendMembers(ctx, &it, adds, removes, ids, applied)
		}
	}
	action := "update"
	if it.Adopt {
		action = "adopt"
	}
	o := outcome{commits: []state.Commit{{Kind: state.LinkGroup, Link: a.groupLink(it, origin, prior, applied),
		Change: a.e.change(it, action), Exclusive: it.Adopt}}}
	if err != nil {
		o.err = fmt.Errorf("update group %q: %w (what was applied is recorded; the next run sends the rest)", it.Name, err)
	}
	return o
}

// patchGroup sends ops to group it, with If-Match when the target versions resources; a stale
// version (412, 428) is read again once and the ops sent with it. it.Version follows the
// target's answers.
func (a *applier) patchGroup(ctx context.Context, it *Item, ops []scim.PatchOp) error {
	r, err := a.e.target.Patch(ctx, scimclient.Groups, it.TargetID, ops, a.ifMatch(it.Version))
	if err != nil && a.retryable(err) {
		if r, err = a.e.target.Get(ctx, scimclient.Groups, it.TargetID); err == nil {
			r, err = a.e.target.Patch(ctx, scimclient.Groups, it.TargetID, ops, r.ETag)
		}
	}
	if err == nil && r.ETag != "" {
		it.Version = r.ETag
	}
	return err
}

// sendMembers sends member additions and removals in batches of groups.batch per request,
// recording in applied what the target confirmed.
func (a *applier) sendMembers(ctx context.Context, it *Item, adds, removes []Member, ids map[string]string, applied map[string]bool) error {
	batch := a.e.groups.cfg.Batch
	send := func(ops []scim.PatchOp) error { return a.patchGroup(ctx, it, ops) }
	for start := 0; start < len(adds); start += batch {
		chunk := adds[start:min(start+batch, len(adds))]
		vals := memberValues(chunk, ids)
		if len(vals) == 0 {
			continue
		}
		if err := send([]scim.PatchOp{{Op: scim.OpAdd, Path: "members", Value: vals}}); err != nil {
			return err
		}
		for _, m := range chunk {
			if _, ok := ids[m.ExternalID]; ok {
				applied[m.ExternalID] = true
			}
		}
	}
	for start := 0; start < len(removes); start += batch {
		chunk := removes[start:min(start+batch, len(removes))]
		var ops []scim.PatchOp
		for _, m := range chunk {
			if id, ok := ids[m.ExternalID]; ok {
				ops = append(ops, scim.PatchOp{Op: scim.OpRemove, Path: "members[value eq " + scim.FilterString(id) + "]"})
			}
		}
		if len(ops) > 0 {
			if err := send(ops); err != nil {
				return err
			}
		}
		for _, m := range chunk {
			delete(applied, m.ExternalID) // gone, or never on the target under an id we know
		}
	}
	return nil
}

// replaceGroup PUTs the whole group, for a target without PATCH.
func (a *applier) replaceGroup(ctx context.Context, it *Item, ids map[string]string, applied map[string]bool, adds, removes []Member) error {
	r, err := a.e.target.Get(ctx, scimclient.Groups, it.TargetID)
	if err != nil {
		return err
	}
	doc := putBody(r.Doc)
	doc["displayName"], doc["externalId"] = it.Name, it.ExternalID
	drop := map[string]bool{}
	for _, m := range removes {
		if id, ok := ids[m.ExternalID]; ok {
			drop[id] = true
		}
	}
	members := scim.WithoutMembers(doc["members"], drop)
	members = append(members, memberValues(adds, ids)...)
	doc["members"] = members
	if _, err := a.e.target.Replace(ctx, scimclient.Groups, it.TargetID, doc, r.ETag); err != nil {
		return err
	}
	for _, m := range adds {
		if _, ok := ids[m.ExternalID]; ok {
			applied[m.ExternalID] = true
		}
	}
	for _, m := range removes {
		delete(applied, m.ExternalID)
	}
	return nil
}

func appliedOf(members []Member, ids map[string]string) map[string]bool {
	out := map[string]bool{}
	for _, m := range members {
		if _, ok := ids[m.ExternalID]; ok {
			out[m.ExternalID] = true
		}
	}
	return out
}

func (a *applier) groupLink(it Item, origin state.Origin, prior *state.Link, applied map[string]bool) state.Link {
	now := a.e.now().UTC()
	l := state.Link{ExternalID: it.ExternalID, TargetID: it.TargetID, UserName: it.Name, DN: it.DN, DNKey: dnKey(it.DN),
		Hash: hashValues(it.Values), Origin: origin, Members: sortedSet(applied), Nested: it.Nested, CreatedAt: now, UpdatedAt: now}
	for _, ext := range it.Want {
		if !applied[ext] {
			l.Incomplete = true
			break
		}
	}
	if it.UUID != "" && it.UUID != it.ExternalID {
		l.SourceUUID = it.UUID
	}
	if prior != nil && !prior.CreatedAt.IsZero() {
		l.CreatedAt = prior.CreatedAt
	}
	return l
}
