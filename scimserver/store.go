package scimserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	scimerr "github.com/elimity-com/scim/errors"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

// member is one element of a Group's members, kept apart from the group's other attributes in
// a slice sorted by value: membership tests are binary searches and a PATCH of k members into
// a group of n costs O(n + k log k), not O(n·k).
type member struct {
	value   string
	display string
	typ     string
}

// record is one stored User or Group. A published record is never mutated: a write builds a
// new one and swaps the pointer, so a reader holding one needs no lock. The attributes are kept
// as their canonical JSON (pointer-free, so the garbage collector never scans them), plus the
// few values filters and indexes read on every request, already folded for comparison.
type record struct {
	id       string
	owner    string // token name that created it; "" for resources older than that bookkeeping
	seq      uint64 // creation order: lists are stable across pages
	created  time.Time
	modified time.Time
	version  int
	attrs    []byte   // JSON object: canonical names; no id, meta, schemas, groups, members, password
	members  []member // groups only, sorted by value
	pwHash   string   // argon2id PHC string when server.password is hash
	hot      hot
}

// hot holds what the common filters compare, precomputed: userName/displayName/name/emails
// are folded (they compare case-insensitively), externalId is exact.
type hot struct {
	name    string // users: FoldKey(userName); groups: FoldKey(displayName)
	extID   string
	display string // users: FoldKey(displayName)
	given   string
	family  string
	emails  []hotEmail
	active  int8 // -1 absent, 0 false, 1 true
}

type hotEmail struct{ value, typ string }

func (r *record) etag() string { return `W/"` + strconv.Itoa(r.version) + `"` }

// meta is what filters may ask of r besides its attributes.
func (r *record) meta() *scim.Meta {
	return &scim.Meta{ID: r.id, Created: r.created, Modified: r.modified, Version: r.etag()}
}

// storedRecord is a record's encoding in the state file (JSON, as schema version 1 wrote it;
// members inline in attrs, owner and pwhash are optional fields added later).
type storedRecord struct {
	ID       string          `json:"id"`
	Seq      uint64          `json:"seq"`
	Created  time.Time       `json:"created"`
	Modified time.Time       `json:"modified"`
	Version  int             `json:"version"`
	Owner    string          `json:"owner,omitempty"`
	PwHash   string          `json:"pwhash,omitempty"`
	Attrs    json.RawMessage `json:"attrs"`
}

type memberJSON struct {
	Value   string `json:"value"`
	Display string `json:"display,omitempty"`
	Type    string `json:"type,omitempty"`
}

// encode is the record's state-file value.
func (r *record) encode() ([]byte, error) {
	attrs := r.attrs
	if r.members != nil {
		ms := make([]memberJSON, len(r.members))
		for i, m := range r.members {
			ms[i] = memberJSON{m.value, m.display, m.typ}
		}
		raw, err := json.Marshal(ms)
		if err != nil {
			return nil, err
		}
		attrs = spliceKey(r.attrs, "members", raw)
	}
	return json.Marshal(storedRecord{ID: r.id, Seq: r.seq, Created: r.created, Modified: r.modified,
		Version: r.version, Owner: r.owner, PwHash: r.pwHash, Attrs: attrs})
}

// spliceKey appends "key": raw to a JSON object.
func spliceKey(obj []byte, key string, raw []byte) []byte {
	out := make([]byte, 0, len(obj)+len(key)+len(raw)+4)
	inner := bytes.TrimSpace(obj)
	inner = inner[:len(inner)-1] // drop "}"
	out = append(out, inner...)
	if len(bytes.TrimSpace(inner)) > 1 {
		out = append(out, ',')
	}
	out = strconv.AppendQuote(out, key)
	out = append(out, ':')
	out = append(out, raw...)
	return append(out, '}')
}

// decodeRecord reads a state-file value; kind decides whether members are split out.
func decodeRecord(kind state.Kind, data []byte) (*record, error) {
	if kind == state.KindUser {
		if r, ok := scanStored(data); ok {
			if err := r.computeHot(kind); err != nil {
				return nil, err
			}
			return r, nil
		}
	}
	var sr storedRecord
	if err := json.Unmarshal(data, &sr); err != nil {
		return nil, err
	}
	r := &record{id: sr.ID, owner: sr.Owner, seq: sr.Seq, created: sr.Created.UTC(), modified: sr.Modified.UTC(),
		version: sr.Version, pwHash: sr.PwHash, attrs: []byte(sr.Attrs)}
	if len(bytes.TrimSpace(r.attrs)) == 0 || string(bytes.TrimSpace(r.attrs)) == "null" {
		r.attrs = []byte("{}")
	}
	if kind == state.KindGroup {
		var parts map[string]json.RawMessage
		if err := json.Unmarshal(r.attrs, &parts); err != nil {
			return nil, err
		}
		for k, raw := range parts {
			if strings.EqualFold(k, "members") {
				var ms []memberJSON
				if err := json.Unmarshal(raw, &ms); err != nil {
					return nil, fmt.Errorf("members: %w", err)
				}
				r.members = make([]member, 0, len(ms))
				for _, m := range ms {
					r.members = append(r.members, member{m.Value, m.Display, m.Type})
				}
				r.members = sortMembers(r.members)
				delete(parts, k)
				out, err := json.Marshal(parts)
				if err != nil {
					return nil, err
				}
				r.attrs = out
			}
		}
		if r.members == nil {
			r.members = []member{}
		}
	}
	if err := r.computeHot(kind); err != nil {
		return nil, err
	}
	return r, nil
}

// hotJSON reads only the hot attributes out of a stored attrs object.
type hotJSON struct {
	UserName    string `json:"userName"`
	ExternalID  string `json:"externalId"`
	DisplayName string `json:"displayName"`
	Name        struct {
		GivenName  string `json:"givenName"`
		FamilyName string `json:"familyName"`
	} `json:"name"`
	Emails []struct {
		Value string `json:"value"`
		Type  string `json:"type"`
	} `json:"emails"`
	Active *bool `json:"active"`
}

func (r *record) computeHot(kind state.Kind) error {
	h, fast := hotJSON{}, false
	if kind == state.KindUser {
		h, fast = scanHot(r.attrs)
	}
	if fast {
		// read by scanHot
	} else if err := json.Unmarshal(r.attrs, &h); err != nil {
		// a stored value of an unexpected type (e.g. a number userName) is still served; only
		// the fast filter path cannot use it
		h = hotJSON{}
		var loose map[string]any
		if json.Unmarshal(r.attrs, &loose) != nil {
			return err
		}
	}
	r.hot = hot{extID: h.ExternalID, active: -1}
	if kind == state.KindGroup {
		r.hot.name = scim.FoldKey(h.DisplayName)
		return nil
	}
	r.hot.name = scim.FoldKey(h.UserName)
	r.hot.display = scim.FoldKey(h.DisplayName)
	r.hot.given = scim.FoldKey(h.Name.GivenName)
	r.hot.family = scim.FoldKey(h.Name.FamilyName)
	if len(h.Emails) > 0 {
		r.hot.emails = make([]hotEmail, len(h.Emails))
		for i, e := range h.Emails {
			r.hot.emails[i] = hotEmail{scim.FoldKey(e.Value), scim.FoldKey(e.Type)}
		}
	}
	if h.Active != nil {
		r.hot.active = 0
		if *h.Active {
			r.hot.active = 1
		}
	}
	return nil
}

func sortMembers(ms []member) []member {
	// stable, so that of a duplicate value (one membership) the first one given is kept
	slices.SortStableFunc(ms, func(a, b member) int { return strings.Compare(a.value, b.value) })
	return slices.CompactFunc(ms, func(a, b member) bool { return a.value == b.value })
}

func hasMember(ms []member, value string) bool {
	_, found := slices.BinarySearchFunc(ms, value, func(m member, v string) int { return strings.Compare(m.value, v) })
	return found
}

// diffMembers returns the values in next but not in prev, and in prev but not in next; both
// inputs are sorted, so this is one linear merge.
func diffMembers(prev, next []member) (added, removed []string) {
	i, j := 0, 0
	for i < len(prev) || j < len(next) {
		switch {
		case i == len(prev):
			added = append(added, next[j].value)
			j++
		case j == len(next):
			removed = append(removed, prev[i].value)
			i++
		case prev[i].value == next[j].value:
			i++
			j++
		case prev[i].value < next[j].value:
			removed = append(removed, prev[i].value)
			i++
		default:
			added = append(added, next[j].value)
			j++
		}
	}
	return added, removed
}

// storeLimits are the store-wide bounds from the config.
type storeLimits struct {
	maxResources, maxPerToken, maxGroupMembers int
}

// store keeps every resource in memory, written through to the state file before a write is
// acknowledged. mu guards only the maps: it is held for lookups and for publishing a committed
// write, never while a request decodes, patches, validates, encodes or waits for the disk. A
// write to one resource holds that resource's slot for its duration, so writers of different
// resources run in parallel and share fsyncs (state.CommitResources).
type store struct {
	st     *state.Store
	now    func() time.Time
	limits storeLimits

	mu           gosync.RWMutex
	seq          uint64
	users        map[string]*record
	groups       map[string]*record
	userOrder    []*record // by seq
	groupOrder   []*record
	byName       map[string]*record   // FoldKey(userName) -> user
	byExtID      map[string][]*record // externalId -> users, by seq (externalId is not unique)
	memberOf     map[string][]string  // user or group id -> ids of the groups it is a direct member of
	owners       map[string]int       // token name -> resources created, including writes in flight
	total        int                  // resources, including creates in flight
	pendingNames map[string]string    // userName keys claimed by writes in flight -> id
	slots        map[string]chan struct{}

	// pinMu guards deleting and pinned, apart from mu so that pinning the members of a large
	// group write never blocks readers; lock order is mu before pinMu, never the reverse
	pinMu    gosync.Mutex
	deleting map[string]bool
	pinned   map[string]int // members being added by group writes in flight
	unpinned *gosync.Cond   // on pinMu: a pin was released
}

func newStore(st *state.Store, now func() time.Time, lim storeLimits) (*store, error) {
	s := &store{
		st: st, now: now, limits: lim,
		users: map[string]*record{}, groups: map[string]*record{},
		byName: map[string]*record{}, byExtID: map[string][]*record{},
		memberOf: map[string][]string{}, owners: map[string]int{},
		pendingNames: map[string]string{}, slots: map[string]chan struct{}{}, deleting: map[string]bool{},
		pinned: map[string]int{},
	}
	s.unpinned = gosync.NewCond(&s.pinMu)
	for _, kind := range []state.Kind{state.KindUser, state.KindGroup} {
		err := st.ScanResources(kind, loadChunk, func(values [][]byte) error {
			recs, err := decodeParallel(kind, values)
			if err != nil {
				return err
			}
			for _, r := range recs {
				s.load(kind, r)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("scim: load store: %w", err)
		}
	}
	for _, g := range s.groups {
		for _, m := range g.members {
			s.memberOf[m.value] = append(s.memberOf[m.value], g.id)
		}
	}
	// bbolt returns resources in id order, which is random; lists go in creation order
	sort.Slice(s.userOrder, func(i, j int) bool { return s.userOrder[i].seq < s.userOrder[j].seq })
	sort.Slice(s.groupOrder, func(i, j int) bool { return s.groupOrder[i].seq < s.groupOrder[j].seq })
	for _, r := range s.userOrder {
		if r.hot.extID != "" {
			s.byExtID[r.hot.extID] = append(s.byExtID[r.hot.extID], r)
		}
	}
	return s, nil
}

// loadChunk is how many stored resources start-up decodes at once, in parallel: enough to keep
// every core busy, few enough that the raw copies stay small.
const loadChunk = 4096

// decodeParallel decodes a chunk of stored resources on every core; raws may alias the state
// file's memory, so decodeRecord copies what it keeps.
func decodeParallel(kind state.Kind, raws [][]byte) ([]*record, error) {
	out := make([]*record, len(raws))
	errs := make([]error, len(raws))
	workers := min(runtime.GOMAXPROCS(0), len(raws))
	var wg gosync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(raws); i += workers {
				out[i], errs[i] = decodeRecord(kind, raws[i])
			}
		}(w)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			var id struct{ ID string }
			_ = json.Unmarshal(raws[i], &id)
			return nil, fmt.Errorf("%s %q: %w", kind, id.ID, err)
		}
	}
	return out, nil
}

// load indexes one stored resource at start-up.
func (s *store) load(kind state.Kind, r *record) {
	r.owner = s.intern(r.owner)
	if kind == state.KindUser {
		s.users[r.id] = r
		s.userOrder = append(s.userOrder, r)
		if _, taken := s.byName[r.hot.name]; !taken {
			s.byName[r.hot.name] = r
		}
	} else {
		s.groups[r.id] = r
		s.groupOrder = append(s.groupOrder, r)
	}
	s.seq = max(s.seq, r.seq)
	s.total++
	if r.owner != "" {
		s.owners[r.owner]++
	}
}

// intern shares the few distinct owner names among all records.
func (s *store) intern(owner string) string {
	for k := range s.owners {
		if k == owner {
			return k
		}
	}
	return owner
}

func (s *store) coll(kind state.Kind) map[string]*record {
	if kind == state.KindUser {
		return s.users
	}
	return s.groups
}

func (s *store) order(kind state.Kind) *[]*record {
	if kind == state.KindUser {
		return &s.userOrder
	}
	return &s.groupOrder
}

func (s *store) get(kind state.Kind, id string) *record {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.coll(kind)[id]
}

// snapshot appends the resources of kind, in creation order, to buf.
func (s *store) snapshot(kind state.Kind, buf []*record) []*record {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append(buf, *s.order(kind)...)
}

func (s *store) count(kind state.Kind) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.coll(kind))
}

func (s *store) userByName(key string) *record {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byName[key]
}

func (s *store) usersByExternalID(ext string) []*record {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.byExtID[ext])
}

// groupRefs is what a user's groups[] is rendered from.
type groupRef struct{ id, display string }

func (s *store) groupsOf(id string) []groupRef {
	s.mu.RLock()
	defer s.mu.RUnlock()
	gids := s.memberOf[id]
	if len(gids) == 0 {
		return nil
	}
	out := make([]groupRef, 0, len(gids))
	for _, gid := range gids {
		if g := s.groups[gid]; g != nil {
			out = append(out, groupRef{g.id, displayNameOf(g)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// displayNameOf reads a group's displayName as stored (the hot copy is folded).
func displayNameOf(g *record) string {
	var v struct {
		DisplayName string `json:"displayName"`
	}
	_ = json.Unmarshal(g.attrs, &v)
	return v.DisplayName
}

// acquire takes id's write slot: one write per resource at a time. Readers never wait for it.
func (s *store) acquire(ctx context.Context, id string) (func(), error) {
	for {
		s.mu.Lock()
		ch, busy := s.slots[id]
		if !busy {
			mine := make(chan struct{})
			s.slots[id] = mine
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				delete(s.slots, id)
				s.mu.Unlock()
				close(mine)
			}, nil
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// newID returns a UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. Ids are
// the state file's keys, so time-ordered ids put a batch of new resources on the same few
// B-tree pages instead of one random page each, and a group commit writes and syncs less.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	ms := uint64(time.Now().UnixMilli())
	for i := 0; i < 6; i++ {
		b[i] = byte(ms >> (40 - 8*i))
	}
	b[6] = b[6]&0x0f | 0x70
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func uniquenessError(name string) error {
	return scimerr.ScimError{ScimType: scimerr.ScimTypeUniqueness, Status: http.StatusConflict,
		Detail: fmt.Sprintf("userName %q is already taken (compared case-insensitively, after Unicode normalisation)", name)}
}

// claimName checks r's userName against committed users and writes in flight, and claims it;
// the caller holds mu.
func (s *store) claimName(r *record, display string) error {
	if other := s.byName[r.hot.name]; other != nil && other.id != r.id {
		return uniquenessError(display)
	}
	if other, ok := s.pendingNames[r.hot.name]; ok && other != r.id {
		return uniquenessError(display)
	}
	s.pendingNames[r.hot.name] = r.id
	return nil
}

// pinMembers refuses members that are not stored users or groups (or are being deleted), and
// pins the others until unpinMembers: a delete of a pinned resource waits for the pin, so it
// sees the group this write adds it to. The caller holds neither mu nor pinMu.
func (s *store) pinMembers(groupID string, added []string) error {
	for _, v := range added {
		if v == groupID {
			return scim.InvalidValue("members: a group cannot be a member of itself")
		}
	}
	s.pinMu.Lock()
	for _, v := range added {
		if s.deleting[v] {
			s.pinMu.Unlock()
			return scim.InvalidValue("members: no User or Group with id %q", v)
		}
	}
	for _, v := range added {
		s.pinned[v]++
	}
	s.pinMu.Unlock()
	// pinned first, then checked: a delete that finished before the pin is seen here, one
	// that starts after it waits for the pin
	s.mu.RLock()
	missing := ""
	for _, v := range added {
		if s.users[v] == nil && s.groups[v] == nil {
			missing = v
			break
		}
	}
	s.mu.RUnlock()
	if missing != "" {
		s.unpinMembers(added)
		return scim.InvalidValue("members: no User or Group with id %q", missing)
	}
	return nil
}

// unpinMembers releases pinMembers' pins; the caller holds neither mu nor pinMu.
func (s *store) unpinMembers(added []string) {
	if len(added) == 0 {
		return
	}
	s.pinMu.Lock()
	for _, v := range added {
		if s.pinned[v]--; s.pinned[v] <= 0 {
			delete(s.pinned, v)
		}
	}
	s.pinMu.Unlock()
	s.unpinned.Broadcast()
}

// create stores a new resource. It fills in id, seq and times.
func (s *store) create(ctx context.Context, kind state.Kind, r *record, userName string) (*record, error) {
	now := s.now().UTC()
	r.created, r.modified, r.version = now, now, 1
	var pins []string
	if kind == state.KindGroup {
		pins = memberValues(r.members)
		if err := s.pinMembers("", pins); err != nil {
			return nil, err
		}
		defer s.unpinMembers(pins) // deferred first, so it runs after mu is released
	}
	s.mu.Lock()
	if s.total >= s.limits.maxResources {
		s.mu.Unlock()
		return nil, overLimit("max_resources", http.StatusBadRequest, "the server stores %d users and groups, its limit", s.limits.maxResources)
	}
	if r.owner != "" && s.owners[r.owner] >= s.limits.maxPerToken {
		s.mu.Unlock()
		return nil, overLimit("max_resources_per_token", http.StatusBadRequest, "token %q has created %d users and groups, its limit", r.owner, s.limits.maxPerToken)
	}
	r.id = newID()
	for s.users[r.id] != nil || s.groups[r.id] != nil {
		r.id = newID()
	}
	if kind == state.KindUser {
		if err := s.claimName(r, userName); err != nil {
			s.mu.Unlock()
			return nil, err
		}
	}
	s.seq++
	r.seq = s.seq
	s.total++
	s.owners[r.owner]++
	s.mu.Unlock()

	err := s.persist(ctx, kind, r)

	s.mu.Lock()
	defer s.mu.Unlock()
	if kind == state.KindUser {
		delete(s.pendingNames, r.hot.name)
	}
	if err != nil {
		s.total--
		s.owners[r.owner]--
		return nil, err
	}
	if kind == state.KindGroup {
		for _, m := range r.members {
			s.memberOf[m.value] = append(s.memberOf[m.value], r.id)
		}
	}
	s.publish(kind, nil, r)
	return r, nil
}

func memberValues(ms []member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.value
	}
	return out
}

// update replaces cur (which the caller holds the slot of) with next. An unchanged result keeps
// its version and is not written.
func (s *store) update(ctx context.Context, kind state.Kind, cur, next *record, userName string) (*record, error) {
	if bytes.Equal(cur.attrs, next.attrs) && slices.Equal(cur.members, next.members) && cur.pwHash == next.pwHash {
		return cur, nil
	}
	next.id, next.seq, next.created, next.owner = cur.id, cur.seq, cur.created, cur.owner
	next.version = cur.version + 1
	next.modified = s.now().UTC()
	var added, removed []string
	if kind == state.KindGroup {
		if len(next.members) > s.limits.maxGroupMembers {
			return nil, overLimit("max_group_members", http.StatusBadRequest, "the group would have %d members, over %d", len(next.members), s.limits.maxGroupMembers)
		}
		added, removed = diffMembers(cur.members, next.members)
		if err := s.pinMembers(cur.id, added); err != nil {
			return nil, err
		}
		defer s.unpinMembers(added) // deferred first, so it runs after mu is released
	}
	s.mu.Lock()
	if s.coll(kind)[cur.id] != cur {
		s.mu.Unlock()
		return nil, scimerr.ScimErrorResourceNotFound(cur.id)
	}
	if kind == state.KindUser {
		if err := s.claimName(next, userName); err != nil {
			s.mu.Unlock()
			return nil, err
		}
	}
	s.mu.Unlock()

	err := s.persist(ctx, kind, next)

	s.mu.Lock()
	defer s.mu.Unlock()
	if kind == state.KindUser && s.pendingNames[next.hot.name] == next.id {
		delete(s.pendingNames, next.hot.name)
	}
	if err != nil {
		return nil, err
	}
	for _, v := range added {
		s.memberOf[v] = append(s.memberOf[v], cur.id)
	}
	for _, v := range removed {
		s.memberOf[v] = removeString(s.memberOf[v], cur.id)
		if len(s.memberOf[v]) == 0 {
			delete(s.memberOf, v)
		}
	}
	s.publish(kind, cur, next)
	return next, nil
}

func removeString(ss []string, x string) []string {
	for i, s := range ss {
		if s == x {
			return append(ss[:i:i], ss[i+1:]...)
		}
	}
	return ss
}

// remove deletes a resource and, in the same transaction, its membership in every group.
func (s *store) remove(ctx context.Context, kind state.Kind, id string, check func(cur *record) error) error {
	if s.get(kind, id) == nil {
		return scimerr.ScimErrorResourceNotFound(id)
	}
	// From here on no write may add id to a group; once the writes in flight that add it are
	// published, the groups it is in are all there is.
	s.pinMu.Lock()
	s.deleting[id] = true
	for s.pinned[id] > 0 {
		s.unpinned.Wait()
	}
	s.pinMu.Unlock()
	defer func() {
		s.pinMu.Lock()
		delete(s.deleting, id)
		s.pinMu.Unlock()
	}()
	s.mu.RLock()
	ids := append([]string{id}, s.memberOf[id]...)
	s.mu.RUnlock()
	// slots in one global order, so two deletes never wait on each other in a cycle
	sort.Strings(ids)
	ids = slices.Compact(ids)
	for _, x := range ids {
		release, err := s.acquire(ctx, x)
		if err != nil {
			return err
		}
		defer release()
	}
	cur := s.get(kind, id)
	if cur == nil {
		return scimerr.ScimErrorResourceNotFound(id)
	}
	if err := check(cur); err != nil {
		return err
	}
	writes := []state.ResourceWrite{{Kind: kind, ID: id}}
	type change struct{ cur, next *record }
	var changed []change
	now := s.now().UTC()
	for _, gid := range ids {
		g := s.get(state.KindGroup, gid)
		if gid == id || g == nil || !hasMember(g.members, id) {
			continue
		}
		ng := *g
		ng.members = slices.DeleteFunc(slices.Clone(g.members), func(m member) bool { return m.value == id })
		ng.version, ng.modified = g.version+1, now
		raw, err := ng.encode()
		if err != nil {
			return fmt.Errorf("scim: encode group %s: %w", gid, err)
		}
		writes = append(writes, state.ResourceWrite{Kind: state.KindGroup, ID: gid, Data: raw})
		changed = append(changed, change{g, &ng})
	}
	if err := s.st.CommitResources(ctx, writes...); err != nil {
		return fmt.Errorf("scim: delete %s: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range changed {
		s.publish(state.KindGroup, c.cur, c.next)
	}
	delete(s.memberOf, id)
	if kind == state.KindGroup {
		for _, m := range cur.members {
			s.memberOf[m.value] = removeString(s.memberOf[m.value], id)
			if len(s.memberOf[m.value]) == 0 {
				delete(s.memberOf, m.value)
			}
		}
	}
	s.publish(kind, cur, nil)
	s.total--
	if cur.owner != "" {
		s.owners[cur.owner]--
	}
	return nil
}

func (s *store) persist(ctx context.Context, kind state.Kind, r *record) error {
	raw, err := r.encode()
	if err != nil {
		return fmt.Errorf("scim: encode %s: %w", r.id, err)
	}
	if err := s.st.CommitResources(ctx, state.ResourceWrite{Kind: kind, ID: r.id, Data: raw}); err != nil {
		return fmt.Errorf("scim: store %s: %w", r.id, err)
	}
	return nil
}

// publish makes a committed change visible; the caller holds mu. old nil is a create, next nil
// a delete.
func (s *store) publish(kind state.Kind, old, next *record) {
	coll, order := s.coll(kind), s.order(kind)
	if kind == state.KindUser {
		if old != nil {
			if s.byName[old.hot.name] == old {
				delete(s.byName, old.hot.name)
			}
			if old.hot.extID != "" {
				rs := slices.DeleteFunc(slices.Clone(s.byExtID[old.hot.extID]), func(x *record) bool { return x == old })
				if len(rs) == 0 {
					delete(s.byExtID, old.hot.extID)
				} else {
					s.byExtID[old.hot.extID] = rs
				}
			}
		}
		if next != nil {
			s.byName[next.hot.name] = next
			if next.hot.extID != "" {
				rs := s.byExtID[next.hot.extID]
				i := len(rs)
				for i > 0 && rs[i-1].seq > next.seq {
					i--
				}
				s.byExtID[next.hot.extID] = slices.Insert(slices.Clone(rs), i, next)
			}
		}
	}
	switch {
	case next == nil:
		delete(coll, old.id)
		i := s.position(*order, old)
		*order = slices.Delete(*order, i, i+1)
	case old == nil:
		coll[next.id] = next
		// usually the newest; a create that committed out of order goes to its seq's place
		i := len(*order)
		for i > 0 && (*order)[i-1].seq > next.seq {
			i--
		}
		*order = slices.Insert(*order, i, next)
	default:
		coll[next.id] = next
		(*order)[s.position(*order, old)] = next
	}
}

// position finds r in a seq-ordered slice by binary search.
func (s *store) position(order []*record, r *record) int {
	i, _ := slices.BinarySearchFunc(order, r.seq, func(x *record, seq uint64) int {
		switch {
		case x.seq < seq:
			return -1
		case x.seq > seq:
			return 1
		}
		return 0
	})
	return i
}
