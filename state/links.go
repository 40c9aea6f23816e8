package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Origin says how the sync came to own a target resource.
type Origin string

const (
	// OriginCreated: the sync created the resource on the target.
	OriginCreated Origin = "created"
	// OriginAdopted: the resource existed on the target and the sync took it over.
	OriginAdopted Origin = "adopted"
)

// LinkKind is the kind of resource a link ties: users and groups are kept apart.
type LinkKind string

// The kinds of links.
const (
	LinkUser  LinkKind = "user"
	LinkGroup LinkKind = "group"
)

// Link ties a directory entry (by its stable id) to the target resource the sync owns.
type Link struct {
	ExternalID string `json:"externalId"`
	TargetID   string `json:"targetId"`
	UserName   string `json:"userName"` // the resource's name: userName, or a group's displayName
	DN         string `json:"dn"`
	// SourceUUID is the entry's UUID as the directory's delta mechanism names it (syncrepl's
	// entryUUID), when it differs from ExternalID; deletes arrive by it.
	SourceUUID string `json:"sourceUUID,omitempty"`
	Hash       string `json:"hash"` // of the values last applied to the target
	Origin     Origin `json:"origin"`
	// DNKey is the entry's DN normalised (ldap.NormalizeDN): group members name users by DN,
	// in whatever escaping and case the directory chose.
	DNKey string `json:"dnKey,omitempty"`
	// Members are the external ids of a group's members as last applied (groups only): users,
	// and groups when nesting is preserved.
	Members []string `json:"members,omitempty"`
	// Nested are the external ids of the groups that are direct members of a group in the
	// directory (groups only), so a change below can be carried up without a full read.
	Nested []string `json:"nested,omitempty"`
	// Incomplete says some members the directory lists could not be applied yet (a user whose
	// create failed, a nested group created in the same run): the next run plans it again.
	Incomplete bool      `json:"incomplete,omitempty"`
	DisabledAt time.Time `json:"disabledAt,omitzero"` // set while deprovisioned-but-not-deleted
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// linkBuckets names the buckets of one kind's links and their indexes.
type linkBuckets struct{ links, names, targets, uuids, dns []byte }

var linkSets = map[LinkKind]linkBuckets{
	LinkUser:  {[]byte("links"), []byte("link_names"), []byte("link_targets"), []byte("link_uuids"), []byte("link_dns")},
	LinkGroup: {[]byte("group_links"), []byte("group_link_names"), []byte("group_link_targets"), []byte("group_link_uuids"), []byte("group_link_dns")},
}

func nameKey(name string) []byte { return []byte(strings.ToLower(name)) }

// Mode is a user's managementMode.
type Mode string

const (
	// ModeDefault: the sync owns the user.
	ModeDefault Mode = "DEFAULT"
	// ModeCMS: hands off; someone else manages the user.
	ModeCMS Mode = "CMS"
)

// ParseMode accepts DEFAULT or CMS in any case.
func ParseMode(s string) (Mode, error) {
	switch Mode(strings.ToUpper(s)) {
	case ModeDefault:
		return ModeDefault, nil
	case ModeCMS:
		return ModeCMS, nil
	}
	return "", fmt.Errorf("managementMode %q: want DEFAULT or CMS", s)
}

// Override is an administrator's managementMode decision for one userName.
type Override struct {
	UserName string    `json:"userName"` // the user's userName, or the group's displayName
	Mode     Mode      `json:"mode"`
	SetAt    time.Time `json:"setAt"`
	Group    bool      `json:"group,omitempty"` // an override of a group, not a user
}

// GroupOverrideKey is the key of group name's override in the map Overrides returns. It cannot
// collide with a user's (lower-cased userName) key: a userName holds no control characters.
func GroupOverrideKey(name string) string { return "\x00group\x00" + strings.ToLower(name) }

// SetGroupOverride records an administrator's managementMode for the group with displayName name.
func (s *Store) SetGroupOverride(name string, mode Mode, at time.Time) error {
	err := s.update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketOverrides), []byte(GroupOverrideKey(name)),
			Override{UserName: name, Mode: mode, SetAt: at.UTC(), Group: true})
	})
	if err != nil {
		return fmt.Errorf("state: set group override %q: %w", name, err)
	}
	return nil
}

// ClearGroupOverride removes the group's override; clearing a missing one is not an error.
func (s *Store) ClearGroupOverride(name string) error {
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOverrides).Delete([]byte(GroupOverrideKey(name)))
	})
	if err != nil {
		return fmt.Errorf("state: clear group override %q: %w", name, err)
	}
	return nil
}

// View answers lookups from one consistent snapshot of the state file.
type View struct {
	tx *bolt.Tx // nil: a read-only view of a missing file, where everything is empty
	s  *Store
}

// View runs fn over a read-only snapshot. Lookups are cheap (no copy of the whole file); what
// they return is copied out of the snapshot.
func (s *Store) View(fn func(v *View) error) error {
	if s.db == nil {
		return fn(&View{})
	}
	return s.db.View(func(tx *bolt.Tx) error { return fn(&View{tx: tx, s: s}) })
}

func (v *View) bucket(name []byte) *bolt.Bucket {
	if v.tx == nil {
		return nil
	}
	if v.s.touched(1) {
		v.Release()
	}
	return v.tx.Bucket(name)
}

// Link returns the link of externalID.
func (v *View) Link(kind LinkKind, externalID string) (Link, bool, error) {
	b := v.bucket(linkSets[kind].links)
	if b == nil {
		return Link{}, false, nil
	}
	raw := b.Get([]byte(externalID))
	if raw == nil {
		return Link{}, false, nil
	}
	var l Link
	if err := json.Unmarshal(raw, &l); err != nil {
		return Link{}, false, fmt.Errorf("state: %s link %q: %w", kind, externalID, err)
	}
	return l, true, nil
}

func (v *View) byIndex(kind LinkKind, index []byte, key []byte) (Link, bool, error) {
	b := v.bucket(index)
	if b == nil {
		return Link{}, false, nil
	}
	ext := b.Get(key)
	if ext == nil {
		return Link{}, false, nil
	}
	return v.Link(kind, string(ext))
}

// LinkByName returns the link whose name (userName, group displayName) is name, ignoring case.
func (v *View) LinkByName(kind LinkKind, name string) (Link, bool, error) {
	return v.byIndex(kind, linkSets[kind].names, nameKey(name))
}

// LinkByDN returns the link whose entry has the normalised DN dnKey.
func (v *View) LinkByDN(kind LinkKind, dnKey string) (Link, bool, error) {
	return v.byIndex(kind, linkSets[kind].dns, []byte(dnKey))
}

// LinkByTarget returns the link to target resource id.
func (v *View) LinkByTarget(kind LinkKind, id string) (Link, bool, error) {
	return v.byIndex(kind, linkSets[kind].targets, []byte(id))
}

// LinkByUUID returns the link whose source entry has the given UUID.
func (v *View) LinkByUUID(kind LinkKind, uuid string) (Link, bool, error) {
	if l, ok, err := v.byIndex(kind, linkSets[kind].uuids, []byte(uuid)); ok || err != nil {
		return l, ok, err
	}
	return v.Link(kind, uuid) // the common case: the UUID is the external id
}

// ForEachLink calls fn with every link of kind, in externalId order.
func (v *View) ForEachLink(kind LinkKind, fn func(Link) error) error {
	b := v.bucket(linkSets[kind].links)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, raw []byte) error {
		var l Link
		if err := json.Unmarshal(raw, &l); err != nil {
			return fmt.Errorf("state: %s link %q: %w", kind, k, err)
		}
		return fn(l)
	})
}

// CountLinks is how many links of kind exist: a counter kept in the bucket's sequence by every
// commit, since counting keys would read (and map into memory) the whole bucket.
func (v *View) CountLinks(kind LinkKind) int {
	b := v.bucket(linkSets[kind].links)
	if b == nil {
		return 0
	}
	return int(b.Sequence())
}

// Release drops the state file's pages this view has read from the process's resident set: a
// scan over 100,000 links would otherwise leave the whole file counted in the process's RSS
// for the rest of the run (bbolt reads through a shared memory map; the kernel's page cache
// keeps the pages, so reading them again costs no disk access).
func (v *View) Release() {
	if v.tx != nil {
		releaseMapped(v.tx.DB().Info().Data, uintptr(v.tx.Size()))
	}
}

// Links returns every user link by externalId. It holds them all in memory: for status and
// tests, not for runs over large directories (use View).
func (s *Store) Links() (map[string]Link, error) {
	out := map[string]Link{}
	err := s.View(func(v *View) error {
		return v.ForEachLink(LinkUser, func(l Link) error { out[l.ExternalID] = l; return nil })
	})
	if err != nil {
		return nil, fmt.Errorf("state: read links: %w", err)
	}
	return out, nil
}

// SetOverride records mode for userName (case-insensitive).
func (s *Store) SetOverride(userName string, mode Mode, at time.Time) error {
	err := s.update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketOverrides), []byte(strings.ToLower(userName)),
			Override{UserName: userName, Mode: mode, SetAt: at.UTC()})
	})
	if err != nil {
		return fmt.Errorf("state: set override %q: %w", userName, err)
	}
	return nil
}

// ClearOverride removes userName's override; clearing a missing one is not an error.
func (s *Store) ClearOverride(userName string) error {
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOverrides).Delete([]byte(strings.ToLower(userName)))
	})
	if err != nil {
		return fmt.Errorf("state: clear override %q: %w", userName, err)
	}
	return nil
}

// Overrides returns every override keyed by lower-cased userName (a group's by GroupOverrideKey).
func (s *Store) Overrides() (map[string]Override, error) {
	out := map[string]Override{}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOverrides).ForEach(func(k, v []byte) error {
			var o Override
			if err := json.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("override %q: %w", k, err)
			}
			out[string(k)] = o
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("state: read overrides: %w", err)
	}
	return out, nil
}

// Change is one entry of a run's change log.
type Change struct {
	At         time.Time         `json:"at"`
	Kind       LinkKind          `json:"kind,omitempty"` // empty in version-1 files: a user
	Action     string            `json:"action"`
	ExternalID string            `json:"externalId"`
	UserName   string            `json:"userName"`
	TargetID   string            `json:"targetId,omitempty"`
	By         string            `json:"by"` // who made the change: "sync" or an admin command
	Old        map[string]string `json:"old,omitempty"`
	New        map[string]string `json:"new,omitempty"`
	// Error is set when the write was tried and failed (RecordFailures); empty means done.
	Error string `json:"error,omitempty"`
}

// Commit is one target write's record: the link as it now stands (or its removal), the
// change-log entry, and the end of the write's intent.
type Commit struct {
	Kind   LinkKind
	Link   Link
	Forget bool    // the resource is gone (or no longer ours): drop the link
	Change *Change // nil: nothing for the change log (a state-only refresh)
	// Exclusive refuses the commit when another link already holds the link's target id: a
	// target that answered a create with a user the sync manages for someone else. The check
	// and the write share the transaction, so two creates answered alike cannot both link.
	Exclusive bool
	// RefusedBy is set by CommitBatch when an exclusive commit was refused: the external id
	// of the link that holds the target id. Nothing of the commit was written.
	RefusedBy string
}

// CommitBatch records several target writes in one transaction (one fsync): each link with its
// indexes, each change-log entry under runID (0: none), and the removal of each write's intent.
func (s *Store) CommitBatch(runID uint64, commits []Commit) error {
	if len(commits) == 0 {
		return nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		for i := range commits {
			commits[i].RefusedBy = ""
			if err := commitOne(tx, runID, &commits[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: commit %d writes: %w", len(commits), err)
	}
	return nil
}

// Commit records one target write (a batch of one).
func (s *Store) Commit(runID uint64, link Link, forget bool, ch Change) error {
	return s.CommitBatch(runID, []Commit{{Kind: LinkUser, Link: link, Forget: forget, Change: &ch}})
}

func commitOne(tx *bolt.Tx, runID uint64, c *Commit) error {
	kind := c.Kind
	if kind == "" {
		kind = LinkUser
	}
	set := linkSets[kind]
	if c.Exclusive && c.Link.TargetID != "" {
		if owner := tx.Bucket(set.targets).Get([]byte(c.Link.TargetID)); owner != nil && string(owner) != c.Link.ExternalID {
			c.RefusedBy = string(owner)
			return nil
		}
	}
	links := tx.Bucket(set.links)
	key := []byte(c.Link.ExternalID)
	raw := links.Get(key)
	if raw != nil {
		var old Link
		if err := json.Unmarshal(raw, &old); err != nil {
			return fmt.Errorf("%s link %q: %w", kind, c.Link.ExternalID, err)
		}
		if err := unindex(tx, set, old); err != nil {
			return err
		}
	}
	switch {
	case c.Forget && raw != nil:
		if err := links.SetSequence(links.Sequence() - 1); err != nil {
			return err
		}
	case !c.Forget && raw == nil:
		if err := links.SetSequence(links.Sequence() + 1); err != nil {
			return err
		}
	}
	if c.Forget {
		if err := links.Delete(key); err != nil {
			return err
		}
	} else {
		if err := putJSON(links, key, c.Link); err != nil {
			return err
		}
		if err := index(tx, set, c.Link); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketIntents).Delete(intentKey(kind, c.Link.ExternalID)); err != nil {
		return err
	}
	if runID == 0 || c.Change == nil {
		return nil
	}
	ch := *c.Change
	ch.Kind = kind
	return putChange(tx, runID, ch)
}

// index adds l to its kind's indexes. A name or target id another link holds is taken over:
// the newest commit is what the target holds now.
func index(tx *bolt.Tx, set linkBuckets, l Link) error {
	ext := []byte(l.ExternalID)
	if l.UserName != "" {
		if err := tx.Bucket(set.names).Put(nameKey(l.UserName), ext); err != nil {
			return err
		}
	}
	if l.TargetID != "" {
		if err := tx.Bucket(set.targets).Put([]byte(l.TargetID), ext); err != nil {
			return err
		}
	}
	if l.SourceUUID != "" && l.SourceUUID != l.ExternalID {
		if err := tx.Bucket(set.uuids).Put([]byte(l.SourceUUID), ext); err != nil {
			return err
		}
	}
	if l.DNKey != "" {
		if err := tx.Bucket(set.dns).Put([]byte(l.DNKey), ext); err != nil {
			return err
		}
	}
	return nil
}

// unindex removes l's index entries that still point at it.
func unindex(tx *bolt.Tx, set linkBuckets, l Link) error {
	ext := []byte(l.ExternalID)
	for _, e := range []struct {
		bucket []byte
		key    []byte
	}{{set.names, nameKey(l.UserName)}, {set.targets, []byte(l.TargetID)}, {set.uuids, []byte(l.SourceUUID)}, {set.dns, []byte(l.DNKey)}} {
		if len(e.key) == 0 {
			continue
		}
		b := tx.Bucket(e.bucket)
		if bytes.Equal(b.Get(e.key), ext) {
			if err := b.Delete(e.key); err != nil {
				return err
			}
		}
	}
	return nil
}

// migrateLinkIndexes is migration 1 -> 2: the new buckets, and indexes of the existing links.
func migrateLinkIndexes(tx *bolt.Tx) error {
	for _, set := range linkSets {
		for _, b := range [][]byte{set.links, set.names, set.targets, set.uuids, set.dns} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
	}
	for _, b := range [][]byte{bucketIntents, bucketCursors} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	set := linkSets[LinkUser]
	links := tx.Bucket(set.links)
	n := uint64(0)
	err := links.ForEach(func(k, raw []byte) error {
		var l Link
		if err := json.Unmarshal(raw, &l); err != nil {
			return fmt.Errorf("link %q: %w", k, err)
		}
		n++
		return index(tx, set, l)
	})
	if err != nil {
		return err
	}
	return links.SetSequence(n) // the link count CountLinks reads
}

// Changes returns the change log of one run, in order.
func (s *Store) Changes(runID uint64) ([]Change, error) {
	var out []Change
	prefix := be64(runID)
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketChanges).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var ch Change
			if err := json.Unmarshal(v, &ch); err != nil {
				return err
			}
			out = append(out, ch)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: read changes of run %d: %w", runID, err)
	}
	return out, nil
}
