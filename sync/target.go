package sync

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
)

// targetRec is what the planner keeps of one target user: enough to match it and to tell
// whether it holds what the directory wants, without keeping the document (100,000 of those
// would not fit the memory budget).
type targetRec struct {
	ID, ExternalID, Name string
	Hash                 string // of the sent keys' values as the target holds them
	Active               string // the raw active value: "true", "false", or "" when absent
	CMS                  bool   // managementMode CMS: hands off
	ETag                 string
	doc                  scim.Doc // kept only by targeted lookups, which fetch few
}

func recordOf(p payload, r scimclient.Resource) *targetRec {
	rec := &targetRec{ID: r.ID(), ETag: r.ETag, Hash: hashValues(p.read(r.Doc))}
	rec.ExternalID, _ = r.Doc["externalId"].(string)
	rec.Name, _ = r.Doc["userName"].(string)
	if v, ok := paths[keyActive].Read(r.Doc); ok {
		rec.Active = v
	}
	if ext, ok := scim.GetFold(r.Doc, scim.ScimsyncSchema).(map[string]any); ok {
		mode, _ := scim.GetFold(ext, "managementMode").(string)
		rec.CMS = strings.EqualFold(mode, scim.ModeCMS)
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
	// take marks rec as matched by one directory entry; false if another entry has it.
	take(rec *targetRec, ext string) bool
}

// indexLookup is a full listing of the target's users, compactly indexed.
type indexLookup struct {
	tgt     Target
	ep      scimclient.Endpoint
	byIDs   map[string]*targetRec
	byExts  map[string]*targetRec
	byNames map[string]*targetRec
	taken   map[*targetRec]string
}

// listTarget reads every target user into an index. Two users claiming one externalId (or one
// userName) keep the first: matching is by link first, so either way nothing is duplicated.
func listTarget(ctx context.Context, tgt Target, p payload, limit int) (*indexLookup, error) {
	ix := &indexLookup{tgt: tgt, ep: scimclient.Users, byIDs: map[string]*targetRec{}, byExts: map[string]*targetRec{},
		byNames: map[string]*targetRec{}, taken: map[*targetRec]string{}}
	// a listing that goes on for ever is refused, not followed
	err := tgt.ListWith(ctx, scimclient.Users, scimclient.ListOptions{MaxResources: limit}, func(r scimclient.Resource) error {
		rec := recordOf(p, r)
		if rec.ID == "" {
			return fmt.Errorf("the target listed a user without an id")
		}
		if _, dup := ix.byIDs[rec.ID]; dup {
			return fmt.Errorf("the target listed user id %s twice", rec.ID)
		}
		ix.byIDs[rec.ID] = rec
		if rec.ExternalID != "" && ix.byExts[rec.ExternalID] == nil {
			ix.byExts[rec.ExternalID] = rec
		}
		if n := strings.ToLower(rec.Name); n != "" && ix.byNames[n] == nil {
			ix.byNames[n] = rec
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ix, nil
}

func (ix *indexLookup) byID(_ context.Context, id string) (*targetRec, error) {
	return ix.byIDs[id], nil
}
func (ix *indexLookup) byExternalID(_ context.Context, ext string) (*targetRec, error) {
	return ix.byExts[ext], nil
}
func (ix *indexLookup) byName(_ context.Context, name string) (*targetRec, error) {
	return ix.byNames[strings.ToLower(name)], nil
}
func (ix *indexLookup) fetch(ctx context.Context, rec *targetRec) (scimclient.Resource, error) {
	return ix.tgt.Get(ctx, ix.ep, rec.ID)
}
func (ix *indexLookup) take(rec *targetRec, ext string) bool {
	if other, ok := ix.taken[rec]; ok && other != ext {
		return false
	}
	ix.taken[rec] = ext
	return true
}

// remoteLookup asks the target for each user it needs (a delta touches few).
type remoteLookup struct {
	tgt   Target
	p     payload
	ep    scimclient.Endpoint
	cache map[string]*targetRec // by id
	taken map[string]string
}

func newRemoteLookup(tgt Target, p payload) *remoteLookup {
	return &remoteLookup{tgt: tgt, p: p, ep: scimclient.Users, cache: map[string]*targetRec{}, taken: map[string]string{}}
}

func (rl *remoteLookup) keep(r scimclient.Resource) *targetRec {
	rec := recordOf(rl.p, r)
	rec.doc = r.Doc
	rl.cache[rec.ID] = rec
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
		if rec := recordOf(rl.p, r); rec.ID != "" && match(rec) {
			return rl.keep(r), nil
		}
	}
	return nil, nil
}

func (rl *remoteLookup) byExternalID(ctx context.Context, ext string) (*targetRec, error) {
	return rl.find(ctx, "externalId", ext, func(r *targetRec) bool { return r.ExternalID == ext })
}

func (rl *remoteLookup) byName(ctx context.Context, name string) (*targetRec, error) {
	return rl.find(ctx, "userName", name, func(r *targetRec) bool { return strings.EqualFold(r.Name, name) })
}

func (rl *remoteLookup) fetch(ctx context.Context, rec *targetRec) (scimclient.Resource, error) {
	if rec.doc != nil {
		return scimclient.Resource{Doc: rec.doc, ETag: rec.ETag}, nil
	}
	return rl.tgt.Get(ctx, rl.ep, rec.ID)
}

func (rl *remoteLookup) take(rec *targetRec, ext string) bool {
	if other, ok := rl.taken[rec.ID]; ok && other != ext {
		return false
	}
	rl.taken[rec.ID] = ext
	return true
}
