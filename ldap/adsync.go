package ldap

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	goldap "github.com/go-ldap/ldap/v3"
)

// Active Directory deltas. DirSync reads the whole naming context and returns, for each object
// whose requested attributes changed, only those attributes and the objectGUID; uSNChanged is a
// per-DC counter. Both are meaningful only on the DC that issued them (Cursor.Server pins it).
// Either way the changed objects are read again in full, by objectGUID, within the query's base,
// scope and filter: those found are upserts, the others (deleted, moved out of the base, no
// longer matching the filter) are deletes.

// dirsyncFlags asks for no optional behaviour: without LDAP_DIRSYNC_OBJECT_SECURITY the bind
// account needs "Replicating Directory Changes" on the naming context, and in exchange sees
// deletions whatever the ACLs on the objects say.
const dirsyncFlags = 0

// maxDirSyncRounds bounds the DirSync loop: each round returns a batch and says whether more
// follow; a DC that keeps saying "more" must not keep us reading forever.
const maxDirSyncRounds = 1 << 20

// neverMatches selects nothing: the nil GUID is never assigned. DirSync with it walks the naming
// context on the DC and returns only a cookie, which is how a full read gets its starting point
// without transferring every object twice.
const neverMatches = `(objectGUID=\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00)`

func (r *reader) dirsync(ctx context.Context, cur *Cursor) (ReadResult, error) {
	server := r.serverID(ctx, true)
	nc := r.info.namingContextOf(r.q.BaseDN)
	if nc == "" {
		return ReadResult{}, fmt.Errorf("ldap: DirSync: no naming context of the server holds %q", r.q.BaseDN)
	}
	why := r.unusable(cur, DeltaDirSync, server)
	if r.auto && cur != nil && cur.Mechanism == DeltaUSN && r.unusable(cur, DeltaUSN, server) == "" {
		// DirSync was not permitted when this cursor was made: go on with uSNChanged rather than
		// probe DirSync (and read everything) on every run; a full read tries DirSync again
		return r.usn(ctx, cur, "")
	}
	if why == "" {
		res, err := r.dirsyncDelta(ctx, nc, cur.Cookie)
		switch {
		case err == nil:
			res.Cursor.Server, res.Cursor.Fingerprint = server, r.fp
			// Samba returns deleted objects through DirSync only to accounts that may list
			// CN=Deleted Objects, even when they hold Replicating Directory Changes
			visible, err := r.tombstonesVisible(ctx, nc)
			if err != nil {
				return ReadResult{}, err
			}
			if !visible {
				res.Deletes, res.Warning = false, deletedObjectsWarning
			}
			return res, nil
		case notPermitted(err):
			return r.dirsyncDenied(ctx, cur, err)
		}
		reason := rejectedCookie(err)
		if reason == "" {
			return ReadResult{}, err
		}
		why = reason
	}
	cookie, err := r.dirsyncCookie(ctx, nc)
	if notPermitted(err) {
		res, err := r.dirsyncDenied(ctx, nil, err)
		if err == nil && why != FallbackNoCursor {
			res.Fallback = why + "; " + res.Fallback
		}
		return res, err
	}
	if err != nil {
		return ReadResult{}, err
	}
	res, err := r.full(ctx, nil, nil)
	if err != nil {
		return ReadResult{}, err
	}
	res.Fallback = why
	res.Cursor = Cursor{Mechanism: DeltaDirSync, Server: server, Fingerprint: r.fp, Cookie: cookie}
	return res, nil
}

// dirsyncDenied handles a DC that refuses DirSync to the bind account: with ldap.delta auto the
// read goes on with uSNChanged, otherwise it is an error that says what to grant.
func (r *reader) dirsyncDenied(ctx context.Context, cur *Cursor, err error) (ReadResult, error) {
	why := "DirSync not permitted: the bind account needs \"Replicating Directory Changes\" on the naming context (" + err.Error() + ")"
	if !r.auto {
		return ReadResult{}, fmt.Errorf("ldap: ldap.delta is dirsync, but %s", why)
	}
	return r.usn(ctx, cur, why+"; using uSNChanged")
}

func notPermitted(err error) bool {
	var ce callerError
	return !errors.As(err, &ce) && goldap.IsErrorWithCode(err, goldap.LDAPResultInsufficientAccessRights)
}

// rejectedCookie says why a DirSync error means "the DC will not continue from this cookie",
// "" when it does not. Samba answers a cookie it cannot parse with unavailableCriticalExtension.
func rejectedCookie(err error) string {
	var le *goldap.Error
	var ce callerError
	if errors.As(err, &ce) || !errors.As(err, &le) {
		return ""
	}
	switch le.ResultCode {
	case goldap.LDAPResultUnavailableCriticalExtension, goldap.LDAPResultProtocolError, goldap.LDAPResultUnwillingToPerform,
		goldap.LDAPResultOperationsError, goldap.LDAPResultOther:
		return "the DC rejected the DirSync cookie: " + le.Error()
	}
	return ""
}

// dirsyncRound is one DirSync request: fn sees every returned entry; the answer is the next
// cookie and whether the DC has more.
func (r *reader) dirsyncRound(ctx context.Context, nc, filter string, attrs []string, cookie []byte,
	fn func(*goldap.Entry) error) (next []byte, more bool, err error) {
	conn := r.s.conn
	// a fresh request every round: go-ldap's DirSync ignores the cookie of a reused request, and
	// DirSyncAsync appends its control to the request it is given
	req := goldap.NewSearchRequest(nc, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil)
	got := false
	err = r.s.each(ctx, conn, func(c context.Context) goldap.Response {
		return conn.DirSyncAsync(c, req, 64, dirsyncFlags, 0, cookie)
	}, func(res goldap.Response) error {
		if e := res.Entry(); e != nil {
			return fn(e)
		}
		if d, ok := goldap.FindControl(res.Controls(), goldap.ControlTypeDirSync).(*goldap.ControlDirSync); ok {
			next, more, got = d.Cookie, d.Flags != 0, true
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if !got || len(next) == 0 {
		return nil, false, fmt.Errorf("ldap: DirSync of %s: %w: the answer carried no cookie", nc, ErrPartial)
	}
	return next, more, nil
}

// dirsyncCookie gets a cookie for "now" without reading any object.
func (r *reader) dirsyncCookie(ctx context.Context, nc string) ([]byte, error) {
	var cookie []byte
	for range maxDirSyncRounds {
		next, more, err := r.dirsyncRound(ctx, nc, neverMatches, []string{"name"}, cookie, func(*goldap.Entry) error { return nil })
		if err != nil {
			return nil, failed("DirSync of "+nc, err)
		}
		cookie = next
		if !more {
			return cookie, nil
		}
	}
	return nil, fmt.Errorf("ldap: DirSync of %s: %w: more than %d rounds", nc, ErrPartial, maxDirSyncRounds)
}

// dirsyncAttrs are the attributes whose changes make DirSync report an object: what the mapping
// reads, what the filter tests (an object may enter or leave it), name (renames and moves) and
// isDeleted (deletions).
func (r *reader) dirsyncAttrs() ([]string, error) {
	m, err := CompileMatcher(r.q.Filter)
	if err != nil {
		return nil, err
	}
	q := Query{Attributes: append(append(append([]string(nil), r.q.Attributes...), m.Attributes()...), r.q.IDAttribute, "name", "isDeleted", "objectGUID")}
	var out []string
	for _, a := range q.request() {
		if !strings.EqualFold(a, "entryUUID") && !strings.EqualFold(a, "nsUniqueId") {
			out = append(out, a)
		}
	}
	return out, nil
}

type changed struct {
	guid    string
	dn      string
	deleted bool
}

// dirsyncDelta continues from cookie. Each round's objects are re-read in full before the next
// round, so memory holds one round, not the whole delta.
func (r *reader) dirsyncDelta(ctx context.Context, nc string, cookie []byte) (ReadResult, error) {
	attrs, err := r.dirsyncAttrs()
	if err != nil {
		return ReadResult{}, err
	}
	for round := 0; round < maxDirSyncRounds; round++ {
		var batch []changed
		next, more, err := r.dirsyncRound(ctx, nc, "(objectClass=*)", attrs, cookie, func(e *goldap.Entry) error {
			raw := e.GetEqualFoldRawAttributeValue("objectGUID")
			if len(raw) != 16 {
				return nil // not an object (AD adds pseudo-entries for other naming contexts)
			}
			batch = append(batch, changed{guid: GUIDString(raw), dn: e.DN,
				deleted: strings.EqualFold(e.GetEqualFoldAttributeValue("isDeleted"), "TRUE")})
			return nil
		})
		if err != nil {
			if round > 0 {
				return ReadResult{}, failed("DirSync of "+nc, err) // changes were delivered: no fallback now
			}
			return ReadResult{}, err
		}
		if err := r.resolve(ctx, batch); err != nil {
			return ReadResult{}, err
		}
		cookie = next
		if !more {
			return ReadResult{Mechanism: DeltaDirSync, Deletes: true, Cursor: Cursor{Mechanism: DeltaDirSync, Cookie: cookie}}, nil
		}
	}
	return ReadResult{}, fmt.Errorf("ldap: DirSync of %s: %w: more than %d rounds", nc, ErrPartial, maxDirSyncRounds)
}

// resolve re-reads changed objects in full within the query's scope and filter: found ones are
// upserts, the rest deletes (with the DN the object has now, unless it is a tombstone).
func (r *reader) resolve(ctx context.Context, batch []changed) error {
	if len(batch) == 0 {
		return nil
	}
	found := make(map[string]bool, len(batch))
	ids := make([]string, 0, len(batch))
	for _, c := range batch {
		if !found[c.guid] {
			found[c.guid] = false
			ids = append(ids, c.guid)
		}
	}
	err := r.s.byIDs(ctx, r.q, "objectGUID", ids, nil, func(e Entry) error {
		found[e.UUID] = true
		return r.emit(ChangeUpsert, e)
	})
	if err != nil {
		return err
	}
	guidIsID := strings.EqualFold(r.q.IDAttribute, "objectGUID")
	for _, c := range batch {
		if found[c.guid] {
			continue
		}
		found[c.guid] = true // once per object
		e := Entry{UUID: c.guid}
		if !c.deleted {
			e.DN = c.dn
		}
		if guidIsID {
			e.ID = c.guid
		}
		if err := r.emit(ChangeDelete, e); err != nil {
			return err
		}
	}
	return nil
}

// usn reads with uSNChanged: the DC's highestCommittedUSN is taken (by Read's root DSE read)
// before anything else, the objects in scope changed since the cursor are upserts, and every
// other object of the naming context changed since (found with the show-deleted control, so
// tombstones too) is a delete. prior is why DirSync was not used, if it was meant to be.
func (r *reader) usn(ctx context.Context, cur *Cursor, prior string) (ReadResult, error) {
	server := r.serverID(ctx, true)
	high := r.info.HighestCommittedUSN
	nc := r.info.namingContextOf(r.q.BaseDN)
	if nc == "" {
		return ReadResult{}, fmt.Errorf("ldap: uSNChanged: no naming context of the server holds %q", r.q.BaseDN)
	}
	why := r.unusable(cur, DeltaUSN, server)
	cursor := Cursor{Mechanism: DeltaUSN, Server: server, Fingerprint: r.fp, USN: high}
	if why != "" {
		res, err := r.full(ctx, nil, nil)
		if err != nil {
			return ReadResult{}, err
		}
		res.Cursor, res.Fallback = cursor, joinReasons(prior, why)
		return res, nil
	}
	visible, err := r.tombstonesVisible(ctx, nc)
	if err != nil {
		return ReadResult{}, err
	}
	since := "(uSNChanged>=" + strconv.FormatInt(cur.USN+1, 10) + ")"
	seen := map[string]bool{}
	err = r.s.search(ctx, r.q, "(&"+r.q.Filter+since+")", nil, func(e Entry) error {
		seen[e.UUID] = true
		return r.emit(ChangeUpsert, e)
	})
	if err != nil {
		return ReadResult{}, err
	}
	guidIsID := strings.EqualFold(r.q.IDAttribute, "objectGUID")
	err = r.s.paged(ctx, r.s.conn, nc, goldap.ScopeWholeSubtree, since, []string{"objectGUID", "isDeleted"},
		[]goldap.Control{goldap.NewControlMicrosoftShowDeleted()}, func(e *goldap.Entry) error {
			raw := e.GetEqualFoldRawAttributeValue("objectGUID")
			if len(raw) != 16 {
				return nil
			}
			guid := GUIDString(raw)
			if seen[guid] {
				return nil
			}
			seen[guid] = true
			d := Entry{UUID: guid}
			if !strings.EqualFold(e.GetEqualFoldAttributeValue("isDeleted"), "TRUE") {
				d.DN = e.DN
			}
			if guidIsID {
				d.ID = guid
			}
			return r.emit(ChangeDelete, d)
		})
	if err != nil {
		return ReadResult{}, unwrapCaller("read changes under "+nc, err)
	}
	res := ReadResult{Mechanism: DeltaUSN, Deletes: visible, Cursor: cursor, Fallback: prior}
	if !visible {
		res.Warning = deletedObjectsWarning
	}
	return res, nil
}

// tombstonesVisible reports whether the bind account can list deleted objects. AD and Samba
// show the Deleted Objects container itself to everyone but its children only to accounts with
// the right to list it, so the probe asks for one child.
func (r *reader) tombstonesVisible(ctx context.Context, nc string) (bool, error) {
	found := false
	err := r.s.paged(ctx, r.s.conn, "CN=Deleted Objects,"+nc, goldap.ScopeSingleLevel, "(isDeleted=TRUE)", []string{"1.1"},
		[]goldap.Control{goldap.NewControlMicrosoftShowDeleted()}, func(*goldap.Entry) error {
			found = true
			return errStop
		})
	switch {
	case errors.Is(err, errStop), err == nil:
		return found, nil
	case goldap.IsErrorAnyOf(err, goldap.LDAPResultNoSuchObject, goldap.LDAPResultInsufficientAccessRights):
		return false, nil
	}
	return false, failed("look for deleted objects under "+nc, err)
}

const deletedObjectsWarning = "the bind account cannot list deleted objects (CN=Deleted Objects), or none exist yet: " +
	"deletions may be missing from this delta until the next full read"

// errStop ends a search early on purpose.
var errStop = errors.New("stop")

func joinReasons(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
