package sync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
)

// targetRec is what the planner keeps of one target user: enough to match it and to tell
// whether it holds what the directory wants, without keeping the document (100,000 of those
// would not fit the memory budget). Ids are compact keys; a full listing keeps no name (its
// index does) and no version (a write reads the user first).
type targetRec struct {
	id, ext idKey
	hash    uint64 // of the sent keys' values as the target holds them (hashKey)
	active  int8   // the raw active value: 0 absent, 1 true, -1 false
	cms     bool   // managementMode CMS: hands off
	takenBy idKey  // the directory entry that matched it
	etag    string
	name    string   // userName; kept by targeted lookups only
	doc     scim.Doc // kept only by targeted lookups, which fetch few
}

func (rec *targetRec) ID() string { return rec.id.String() }

// ExternalID is the user's externalId, or a digest of it when it is longer than maxKeyLen.
func (rec *targetRec) ExternalID() string { return rec.ext.String() }

// otherExternalID reports whether the user carries an externalId that is not ext.
func (rec *targetRec) otherExternalID(ext string) bool {
	return !rec.ext.empty() && rec.ext != keyOf(boundKey(ext))
}

// maxKeyLen bounds what the planner keeps of an externalId or userName a target lists: a
// longer one is kept as its digest, which matches exactly as well, so that a target listing
// megabyte-long names cannot make a full reconcile hold gigabytes. Directory ids and names are
// far shorter.
const maxKeyLen = 256

// maxTargetIDLen bounds a target's user ids: the id is the handle every write uses, so it
// cannot be replaced by a digest; a target with longer ids is refused, not indexed.
const maxTargetIDLen = 1024

// boundKey is s, or a digest of s when s is longer than maxKeyLen.
func boundKey(s string) string {
	if len(s) <= maxKeyLen {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "\x00sha256:" + hex.EncodeToString(sum[:])
}

// Active is the raw active value: "true", "false", or "" when absent.
func (rec *targetRec) Active() string {
	switch rec.active {
	case 1:
		return "true"
	case -1:
		return "false"
	}
	return ""
}

// take marks rec as matched by the entry with external id ext; false if another entry has it.
func (rec *targetRec) take(ext string) bool {
	k := keyOf(ext)
	if !rec.takenBy.empty() && rec.takenBy != k {
		return false
	}
	rec.takenBy = k
	return true
}

func recordOf(p payload, r scimclient.Resource) *targetRec {
	rec := &targetRec{id: keyOf(r.ID()), etag: r.ETag, hash: hashKey(hashValues(p.read(r.Doc)))}
	ext, _ := r.Doc["externalId"].(string)
	rec.ext = keyOf(boundKey(ext))
	rec.name, _ = r.Doc["userName"].(string)
	if v, ok := paths[keyActive].Read(r.Doc); ok {
		rec.active = 1
		if v == "false" {
			rec.active = -1
		}
	}
	if ext, ok := scim.GetFold(r.Doc, scim.ScimsyncSchema).(map[string]any); ok {
		mode, _ := scim.GetFold(ext, "managementMode").(string)
		rec.cms = strings.EqualFold(mode, scim.ModeCMS)
	}
	return rec
}

// targetLookup is how the planner's phases find target users: by id, by externalId, by
// userName. A full reconcile answers from an index of the target's listing; a delta run asks
// the target for the few users it needs.
type targetLookup interface {
	byID(ctx context.Context, id string) (*targetRec, error)
	byExternalID(ctx context.Context, ext string) (*targetRec, error)
	byName(ctx context.Context, name string) (*targetRec, error)
	// fetch returns the user's whole document at its current version, to compute operations.
	fetch(ctx context.Context, rec *targetRec) (scimclient.Resource, error)
}

// indexLookup is a full listing of the target's users: records in a slice and three sorted
// indexes over it, which cost a few bytes per user where maps would cost tens.
type indexLookup struct {
	tgt       Target
	ep        scimclient.Endpoint
	recs      []targetRec
	names     []string // lower(userName) of recs[i]
	idOrder   []int32
	extOrder  []int32 // only records with an externalId
	nameOrder []int32 // only records with a userName
}

// listTarget reads every target user into an index. Two users claiming one externalId (or one
// userName) keep the first: matching is by link first, so either way nothing is duplicated.
func listTarget(ctx context.Context, tgt Target, p payload, limit int) (*indexLookup, error) {
	ix := &indexLookup{tgt: tgt, ep: scimclient.Users}
	// a listing that goes on for ever is refused, not followed
	err := tgt.ListWith(ctx, scimclient.Users, scimclient.ListOptions{MaxResources: limit}, func(r scimclient.Resource) error {
		rec := recordOf(p, r)
		if rec.id.empty() {
			return fmt.Errorf("the target listed a user without an id")
		}
		if id := r.ID(); len(id) > maxTargetIDLen {
			return fmt.Errorf("the target listed a user id of %d bytes (%s); ids longer than %d bytes are refused",
				len(id), scimclient.SanitizeN(id, 40), maxTargetIDLen)
		}
		ix.names = append(ix.names, boundKey(strings.ToLower(rec.name)))
		rec.name, rec.etag = "", "" // the index holds the name; a write reads the user first
		ix.recs = append(ix.recs, *rec)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range ix.recs {
		ix.idOrder = append(ix.idOrder, int32(i))
		if !ix.recs[i].ext.empty() {
			ix.extOrder = append(ix.extOrder, int32(i))
		}
		if ix.names[i] != "" {
			ix.nameOrder = append(ix.nameOrder, int32(i))
		}
	}
	// stable sorts keep the first of equal keys first: the one a lookup finds
	slices.SortStableFunc(ix.idOrder, func(a, b int32) int { return compareKeys(ix.recs[a].id, ix.recs[b].id) })
	for i := 1; i < len(ix.idOrder); i++ {
		if ix.recs[ix.idOrder[i]].id == ix.recs[ix.idOrder[i-1]].id {
			return nil, fmt.Errorf("the target listed user id %s twice", ix.recs[ix.idOrder[i]].ID())
		}
	}
	slices.SortStableFunc(ix.extOrder, func(a, b int32) int { return compareKeys(ix.recs[a].ext, ix.recs[b].ext) })
	slices.SortStableFunc(ix.nameOrder, func(a, b int32) int { return strings.Compare(ix.names[a], ix.names[b]) })
	return ix, nil
}

func compareKeys(a, b idKey) int {
	if c := bytes.Compare(a.u[:], b.u[:]); c != 0 {
		return c
	}
	return strings.Compare(a.s, b.s)
}

func (ix *indexLookup) find(sorted []int32, cmp func(i int32) int) *targetRec {
	n, ok := slices.BinarySearchFunc(sorted, 0, func(i int32, _ int) int { return cmp(i) })
	if !ok {
		return nil
	}
	return &ix.recs[sorted[n]]
}

func (ix *indexLookup) byIDKey(k idKey) *targetRec {
	return ix.find(ix.idOrder, func(i int32) int { return compareKeys(ix.recs[i].id, k) })
}

func (ix *indexLookup) byID(_ context.Context, id string) (*targetRec, error) {
	return ix.byIDKey(keyOf(id)), nil
}

func (ix *indexLookup) byExternalID(_ context.Context, ext string) (*targetRec, error) {
	k := keyOf(boundKey(ext))
	return ix.find(ix.extOrder, func(i int32) int { return compareKeys(ix.recs[i].ext, k) }), nil
}

func (ix *indexLookup) byName(_ context.Context, name string) (*targetRec, error) {
	n := boundKey(strings.ToLower(name))
	return ix.find(ix.nameOrder, func(i int32) int { return strings.Compare(ix.names[i], n) }), nil
}

func (ix *indexLookup) fetch(ctx context.Context, rec *targetRec) (scimclient.Resource, error) {
	return ix.tgt.Get(ctx, ix.ep, rec.ID())
}

// size is how many users the target listed.
func (ix *indexLookup) size() int { return len(ix.recs) }

// remoteLookup asks the target for each user it needs (a delta touches few).
type remoteLookup struct {
	tgt   Target
	p     payload
	ep    scimclient.Endpoint
	cache map[string]*targetRec // by id
}

func newRemoteLookup(tgt Target, p payload) *remoteLookup {
	return &remoteLookup{tgt: tgt, p: p, ep: scimclient.Users, cache: map[string]*targetRec{}}
}

func (rl *remoteLookup) keep(r scimclient.Resource) *targetRec {
	rec := recordOf(rl.p, r)
	rec.doc = r.Doc
	rl.cache[rec.ID()] = rec
	return rec
}

func (rl *remoteLookup) byID(ctx context.Context, id string) (*targetRec, error) {
	if rec, ok := rl.cache[id]; ok {
		return rec, nil
	}
	r, err := rl.tgt.Get(ctx, rl.ep, id)
	if scimclient.IsStatus(err, http.StatusNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return rl.keep(r), nil
}

func (rl *remoteLookup) find(ctx context.Context, attr, value string, match func(*targetRec) bool) (*targetRec, error) {
	if value == "" {
		return nil, nil
	}
	found, err := rl.tgt.Find(ctx, rl.ep, attr, value)
	if err != nil {
		return nil, err
	}
	for _, r := range found {
		// a target that ignores the filter and answers with everybody must not make us match
		// a stranger: check the answer
		if rec := recordOf(rl.p, r); !rec.id.empty() && match(rec) {
			return rl.keep(r), nil
		}
	}
	return nil, nil
}

func (rl *remoteLookup) byExternalID(ctx context.Context, ext string) (*targetRec, error) {
	return rl.find(ctx, "externalId", ext, func(r *targetRec) bool { return !r.ext.empty() && !r.otherExternalID(ext) })
}

func (rl *remoteLookup) byName(ctx context.Context, name string) (*targetRec, error) {
	return rl.find(ctx, "userName", name, func(r *targetRec) bool { return strings.EqualFold(r.name, name) })
}

func (rl *remoteLookup) fetch(ctx context.Context, rec *targetRec) (scimclient.Resource, error) {
	if rec.doc != nil {
		return scimclient.Resource{Doc: rec.doc, ETag: rec.etag}, nil
	}
	return rl.tgt.Get(ctx, rl.ep, rec.ID())
}
