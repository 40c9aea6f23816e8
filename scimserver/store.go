package scimserver

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	scimerr "github.com/elimity-com/scim/errors"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

// resource is one stored User or Group. Published resources are never mutated: a write builds
// a new value and swaps the pointer, so readers need no lock once they hold one.
type resource struct {
	ID       string         `json:"id"`
	Seq      uint64         `json:"seq"` // creation order: lists are stable across pages
	Created  time.Time      `json:"created"`
	Modified time.Time      `json:"modified"`
	Version  int            `json:"version"`
	Attrs    map[string]any `json:"attrs"` // canonical names; no id, meta, schemas or groups
}

func (r *resource) etag() string { return `W/"` + strconv.Itoa(r.Version) + `"` }

// meta is what filters may ask of r besides its attributes.
func (r *resource) meta() *scim.Meta {
	return &scim.Meta{ID: r.ID, Created: r.Created, Modified: r.Modified, Version: r.etag()}
}

// collection is one resource type's resources in creation order.
type collection struct {
	byID  map[string]*resource
	order []*resource
}

func (c *collection) put(r *resource) {
	if old, ok := c.byID[r.ID]; ok {
		for i, o := range c.order {
			if o == old {
				c.order[i] = r
				break
			}
		}
	} else {
		c.order = append(c.order, r)
	}
	c.byID[r.ID] = r
}

func (c *collection) remove(id string) {
	old, ok := c.byID[id]
	if !ok {
		return
	}
	delete(c.byID, id)
	for i, o := range c.order {
		if o == old {
			c.order = append(c.order[:i:i], c.order[i+1:]...)
			break
		}
	}
}

// store keeps every resource in memory, written through to bbolt before a write is
// acknowledged. Writes are serialised by mu; reads share it.
type store struct {
	mu       gosync.RWMutex
	st       *state.Store
	now      func() time.Time
	seq      uint64
	users    collection
	groups   collection
	byName   map[string]string              // lower(userName) -> user id
	byExtID  map[string]string              // externalId -> user id
	memberOf map[string]map[string]struct{} // user id -> group ids
}

func newStore(st *state.Store, now func() time.Time) (*store, error) {
	s := &store{
		st: st, now: now,
		users:    collection{byID: map[string]*resource{}},
		groups:   collection{byID: map[string]*resource{}},
		byName:   map[string]string{},
		byExtID:  map[string]string{},
		memberOf: map[string]map[string]struct{}{},
	}
	var loaded []*resource
	for _, kind := range []state.Kind{state.KindUser, state.KindGroup} {
		err := st.ForEachResource(kind, func(id string, data []byte) error {
			r, err := decodeResource(data)
			if err != nil {
				return fmt.Errorf("%s %s: %w", kind, id, err)
			}
			if kind == state.KindUser {
				s.indexUser(nil, r)
				s.users.byID[r.ID] = r
			} else {
				s.indexGroup(nil, r)
				s.groups.byID[r.ID] = r
			}
			loaded = append(loaded, r)
			s.seq = max(s.seq, r.Seq)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("scim: load store: %w", err)
		}
	}
	sortBySeq(loaded)
	for _, r := range loaded {
		if _, ok := s.users.byID[r.ID]; ok {
			s.users.order = append(s.users.order, r)
		} else {
			s.groups.order = append(s.groups.order, r)
		}
	}
	return s, nil
}

// sortBySeq restores creation order (bbolt returns resources in id order, which is random).
func sortBySeq(rs []*resource) {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Seq < rs[j].Seq })
}

func decodeResource(data []byte) (*resource, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // elimity's integer validation wants json.Number, not float64
	var r resource
	if err := dec.Decode(&r); err != nil {
		return nil, err
	}
	if r.Attrs == nil {
		r.Attrs = map[string]any{}
	}
	return &r, nil
}

func (s *store) coll(kind state.Kind) *collection {
	if kind == state.KindUser {
		return &s.users
	}
	return &s.groups
}

func (s *store) get(kind state.Kind, id string) (*resource, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.coll(kind).byID[id]
	return r, ok
}

// snapshot returns the resources of kind in creation order.
func (s *store) snapshot(kind state.Kind) []*resource {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]*resource(nil), s.coll(kind).order...)
}

func (s *store) userIDByName(name string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.byName[strings.ToLower(name)]
	return id, ok
}

func (s *store) userIDByExternalID(ext string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.byExtID[ext]
	return id, ok
}

// groupsOf returns the groups user id is a direct member of, in creation order.
func (s *store) groupsOf(id string) []*resource {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*resource
	for gid := range s.memberOf[id] {
		if g, ok := s.groups.byID[gid]; ok {
			out = append(out, g)
		}
	}
	sortBySeq(out)
	return out
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (s *store) create(kind state.Kind, attrs map[string]any) (*resource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UTC()
	r := &resource{ID: newID(), Seq: s.seq + 1, Created: now, Modified: now, Version: 1, Attrs: attrs}
	if err := s.checkUnique(kind, r); err != nil {
		return nil, err
	}
	if err := s.persist(kind, r); err != nil {
		return nil, err
	}
	s.seq++
	s.publish(kind, r)
	return r, nil
}

// update replaces resource id with what change returns; change sees the current resource and
// may refuse (a stale If-Match, a bad PATCH). An unchanged result keeps its version.
func (s *store) update(kind state.Kind, id string, change func(cur *resource) (map[string]any, error)) (*resource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.coll(kind).byID[id]
	if !ok {
		return nil, scimerr.ScimErrorResourceNotFound(id)
	}
	attrs, err := change(cur)
	if err != nil {
		return nil, err
	}
	if scim.JSONEqual(attrs, cur.Attrs) {
		return cur, nil
	}
	next := &resource{ID: id, Seq: cur.Seq, Created: cur.Created, Modified: s.now().UTC(), Version: cur.Version + 1, Attrs: attrs}
	if err := s.checkUnique(kind, next); err != nil {
		return nil, err
	}
	if err := s.persist(kind, next); err != nil {
		return nil, err
	}
	s.publish(kind, next)
	return next, nil
}

// remove deletes resource id; deleting a user also drops it from every group, atomically.
func (s *store) remove(kind state.Kind, id string, check func(cur *resource) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.coll(kind).byID[id]
	if !ok {
		return scimerr.ScimErrorResourceNotFound(id)
	}
	if err := check(cur); err != nil {
		return err
	}
	writes := []state.ResourceWrite{{Kind: kind, ID: id}}
	var changedGroups []*resource
	if kind == state.KindUser {
		for gid := range s.memberOf[id] {
			g := s.groups.byID[gid]
			attrs := maps.Clone(g.Attrs)
			attrs["members"] = scim.WithoutMembers(g.Attrs["members"], map[string]bool{id: true})
			ng := &resource{ID: gid, Seq: g.Seq, Created: g.Created, Modified: s.now().UTC(), Version: g.Version + 1, Attrs: attrs}
			raw, err := json.Marshal(ng)
			if err != nil {
				return err
			}
			writes = append(writes, state.ResourceWrite{Kind: state.KindGroup, ID: gid, Data: raw})
			changedGroups = append(changedGroups, ng)
		}
	}
	if err := s.st.WriteResources(writes...); err != nil {
		return fmt.Errorf("scim: delete %s: %w", id, err)
	}
	if kind == state.KindUser {
		s.indexUser(cur, nil)
		delete(s.memberOf, id)
	} else {
		s.indexGroup(cur, nil)
	}
	s.coll(kind).remove(id)
	for _, g := range changedGroups {
		s.publish(state.KindGroup, g)
	}
	return nil
}

func (s *store) persist(kind state.Kind, r *resource) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("scim: encode %s: %w", r.ID, err)
	}
	if err := s.st.WriteResources(state.ResourceWrite{Kind: kind, ID: r.ID, Data: raw}); err != nil {
		return fmt.Errorf("scim: store %s: %w", r.ID, err)
	}
	return nil
}

func (s *store) publish(kind state.Kind, r *resource) {
	c := s.coll(kind)
	old := c.byID[r.ID]
	if kind == state.KindUser {
		s.indexUser(old, r)
	} else {
		s.indexGroup(old, r)
	}
	c.put(r)
}

func (s *store) checkUnique(kind state.Kind, r *resource) error {
	if kind != state.KindUser {
		return nil
	}
	name, _ := r.Attrs["userName"].(string)
	if id, ok := s.byName[strings.ToLower(name)]; ok && id != r.ID {
		return scimerr.ScimError{ScimType: scimerr.ScimTypeUniqueness, Status: 409,
			Detail: fmt.Sprintf("userName %q is already taken", name)}
	}
	return nil
}

func (s *store) indexUser(old, cur *resource) {
	if old != nil {
		if n, ok := old.Attrs["userName"].(string); ok && s.byName[strings.ToLower(n)] == old.ID {
			delete(s.byName, strings.ToLower(n))
		}
		if e, ok := old.Attrs["externalId"].(string); ok && s.byExtID[e] == old.ID {
			delete(s.byExtID, e)
		}
	}
	if cur != nil {
		if n, ok := cur.Attrs["userName"].(string); ok {
			s.byName[strings.ToLower(n)] = cur.ID
		}
		if e, ok := cur.Attrs["externalId"].(string); ok && e != "" {
			if _, taken := s.byExtID[e]; !taken {
				s.byExtID[e] = cur.ID
			}
		}
	}
}

func (s *store) indexGroup(old, cur *resource) {
	if old != nil {
		for _, uid := range scim.MemberIDs(old.Attrs["members"]) {
			delete(s.memberOf[uid], old.ID)
		}
	}
	if cur != nil {
		for _, uid := range scim.MemberIDs(cur.Attrs["members"]) {
			if s.memberOf[uid] == nil {
				s.memberOf[uid] = map[string]struct{}{}
			}
			s.memberOf[uid][cur.ID] = struct{}{}
		}
	}
}
