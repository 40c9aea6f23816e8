package ldap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
)

// ChangeKind says what a Change tells about an entry.
type ChangeKind int

// Change kinds.
const (
	// ChangeUpsert carries the full entry: every requested attribute, ranged values expanded.
	ChangeUpsert ChangeKind = iota + 1
	// ChangeDelete says the entry is gone or no longer in scope. Only what is known is set:
	// UUID and/or ID, and DN when the directory still has the entry somewhere (moved out of the
	// base, or no longer matching the filter). A delete may name an entry the caller never saw
	// (AD reports every changed object of the domain that is out of scope): ignore those.
	ChangeDelete
	// ChangePresent says the entry is unchanged and still in scope (syncrepl's present phase);
	// only UUID, ID when it equals the UUID, and DN are set.
	ChangePresent
)

func (k ChangeKind) String() string {
	switch k {
	case ChangeUpsert:
		return "upsert"
	case ChangeDelete:
		return "delete"
	case ChangePresent:
		return "present"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Change is one thing Read learnt about one entry.
type Change struct {
	Kind  ChangeKind
	Entry Entry
}

// Cursor is where the last read ended, for the next Read to start from. It is plain JSON
// (DecodeCursor reads it back); the caller stores it per source and resource kind, and only
// after every change the read delivered has been applied.
type Cursor struct {
	// Mechanism is syncrepl, dirsync, usn or timestamp.
	Mechanism string `json:"mechanism"`
	// Server identifies the server that issued the cursor: AD's dsServiceName and the DC's
	// invocationId (a restored DC gets a new one), or the URL, naming context and the naming
	// context's entryUUID elsewhere. A cursor from another server is refused: full read.
	Server string `json:"server"`
	// Fingerprint hashes what the read covers (URL, bind DN, base, scope, filter, attributes,
	// id attribute); a different one means the configuration changed: full read.
	Fingerprint string `json:"fingerprint"`
	// Cookie is the syncrepl or DirSync cookie.
	Cookie []byte `json:"cookie,omitempty"`
	// USN is the highestCommittedUSN the read is complete up to (usn).
	USN int64 `json:"usn,omitempty"`
	// Time is the highest modifyTimestamp seen (timestamp); the next read starts an overlap
	// window (ldap.timestamp_overlap) before it.
	Time time.Time `json:"time,omitzero"`
}

// ReadResult says what a Read did.
type ReadResult struct {
	// Mechanism is what was used this time: syncrepl, dirsync, usn, timestamp, or full (a
	// read of everything in scope, because there was no usable cursor or ldap.delta is off).
	Mechanism string
	// Full means every entry in scope was delivered as Upsert or Present: whatever was not
	// delivered is gone. A full read, or a syncrepl refresh the server answered with a present
	// phase.
	Full bool
	// Deletes means the mechanism reports deletions. A timestamp delta does not, nor does a
	// usn delta when the bind account cannot see deleted objects: the caller's periodic full
	// reconcile catches those.
	Deletes bool
	// Cursor is for the next Read; store it only after every change it covers is applied. A
	// zero Cursor (Mechanism "") means there is nothing to store: the next Read is full.
	Cursor Cursor
	// Fallback is "" or why a delta was not possible (no cursor, a refused cookie, another
	// server, a changed configuration, DirSync not permitted): log it and count it.
	Fallback string
	// CursorRefused says a stored cursor was given and could not be used (expired, refused by the
	// server, issued by another server, made for another query): the read was in full. A read
	// without a cursor, or one that went on with another delta mechanism, is not refused.
	CursorRefused bool
	// Warning is "" or something the administrator should know about this read's limits, e.g.
	// that deletions are not visible to the bind account.
	Warning string
}

// Read streams what changed in q's scope since cur to fn, once per change; an error from fn
// stops the read and is returned as is. cur nil (or unusable: another server, another
// configuration, a cookie the server refuses) gives a full read that also yields a cursor.
// A size or time limit, a dropped connection or a cancelled context is an error (wrapping
// ErrPartial where it applies), never a short success.
func (c *Client) Read(ctx context.Context, q Query, cur *Cursor, fn func(Change) error) (ReadResult, error) {
	if c.cfg.isFile() {
		err := c.fileSearch(ctx, q, "", func(e Entry) error { return fn(Change{Kind: ChangeUpsert, Entry: e}) })
		return ReadResult{Mechanism: MechanismFull, Full: true, Deletes: true}, err
	}
	if err := q.check(); err != nil {
		return ReadResult{}, err
	}
	s, err := c.open(ctx)
	if err != nil {
		return ReadResult{}, err
	}
	defer s.close()
	// the root DSE first: on AD its highestCommittedUSN must be taken before anything is read
	info, err := s.discover(ctx)
	if err != nil {
		return ReadResult{}, err
	}
	mech, err := c.mechanism(info)
	if err != nil {
		return ReadResult{}, err
	}
	r := &reader{s: s, q: q, info: info, fn: fn, fp: c.fingerprint(q), auto: c.cfg.Delta == DeltaAuto}
	var res ReadResult
	switch mech {
	case DeltaSyncrepl:
		res, err = r.syncrepl(ctx, cur)
	case DeltaDirSync:
		res, err = r.dirsync(ctx, cur)
	case DeltaUSN:
		res, err = r.usn(ctx, cur, "")
	case DeltaTimestamp:
		res, err = r.timestamp(ctx, cur)
	default:
		res, err = r.full(ctx, nil, nil)
	}
	if err != nil {
		return ReadResult{}, unwrapCaller("read "+q.BaseDN, err)
	}
	res.CursorRefused = cur != nil && cur.Mechanism != "" && res.Full && res.Fallback != ""
	return res, nil
}

// mechanism picks the delta mechanism from ldap.delta and what the server supports.
func (c *Client) mechanism(info ServerInfo) (string, error) {
	switch c.cfg.Delta {
	case DeltaOff:
		return DeltaOff, nil
	case DeltaSyncrepl:
		if !info.Supports(OIDSyncRequest) {
			return "", errors.New("ldap: ldap.delta is syncrepl, but the server does not list the sync request control " +
				OIDSyncRequest + " (on OpenLDAP, load the syncprov overlay on this database)")
		}
		return DeltaSyncrepl, nil
	case DeltaDirSync:
		if !info.IsAD() || !info.Supports(OIDDirSync) {
			return "", errors.New("ldap: ldap.delta is dirsync, but the server is not Active Directory with the DirSync control " + OIDDirSync)
		}
		return DeltaDirSync, nil
	case DeltaUSN:
		if !info.IsAD() || info.HighestCommittedUSN == 0 {
			return "", errors.New("ldap: ldap.delta is usn, but the server is not Active Directory (no highestCommittedUSN in its root DSE)")
		}
		return DeltaUSN, nil
	case DeltaTimestamp:
		return DeltaTimestamp, nil
	}
	switch {
	case info.Supports(OIDSyncRequest):
		return DeltaSyncrepl, nil
	case info.IsAD() && info.Supports(OIDDirSync):
		return DeltaDirSync, nil
	case info.IsAD() && info.HighestCommittedUSN > 0:
		return DeltaUSN, nil
	}
	return DeltaTimestamp, nil
}

// fingerprint hashes everything that changes what a read of q returns.
func (c *Client) fingerprint(q Query) string {
	attrs := make([]string, 0, len(q.Attributes)+1)
	for _, a := range append(slices.Clone(q.Attributes), q.IDAttribute) {
		attrs = append(attrs, strings.ToLower(a))
	}
	slices.Sort(attrs)
	attrs = slices.Compact(attrs)
	base, err := NormalizeDN(q.BaseDN)
	if err != nil {
		base = q.BaseDN
	}
	b, _ := json.Marshal([]any{"v1", strings.TrimRight(c.cfg.URL, "/"), c.cfg.BindDN, base, q.Scope, q.Filter,
		attrs, strings.ToLower(q.IDAttribute)})
	sum := sha256.Sum256(b)
	return "v1:" + hex.EncodeToString(sum[:16])
}

// reader is one Read in progress.
type reader struct {
	s    *session
	q    Query
	info ServerInfo
	fn   func(Change) error
	fp   string
	auto bool // ldap.delta is auto: DirSync may fall back to USN
}

func (r *reader) emit(kind ChangeKind, e Entry) error {
	if err := r.fn(Change{Kind: kind, Entry: e}); err != nil {
		return callerError{err}
	}
	return nil
}

// FallbackNoCursor is the fallback reason of a read that had no cursor to continue from (a
// first run, or a full reconcile, which reads in full on purpose): not a refused cursor.
const FallbackNoCursor = "no cursor"

// unusable says why cur cannot continue a delta with mech on server, "" when it can.
func (r *reader) unusable(cur *Cursor, mech, server string) string {
	switch {
	case cur == nil || cur.Mechanism == "":
		return FallbackNoCursor
	case cur.Mechanism != mech:
		return fmt.Sprintf("the cursor is for %s, this read uses %s", cur.Mechanism, mech)
	case cur.Server != server:
		return fmt.Sprintf("the cursor was issued by another server (%s), this is %s", cur.Server, server)
	case cur.Fingerprint != r.fp:
		return "the configuration changed (URL, bind DN, base, scope, filter, attributes or id attribute)"
	case (mech == DeltaSyncrepl || mech == DeltaDirSync) && len(cur.Cookie) == 0:
		return "the cursor has no cookie"
	case mech == DeltaUSN && cur.USN <= 0:
		return "the cursor has no USN"
	case mech == DeltaTimestamp && cur.Time.IsZero():
		return "the cursor has no time"
	}
	return ""
}

// full reads everything in scope as upserts; track sees every entry (for a high-water mark).
func (r *reader) full(ctx context.Context, extraAttrs []string, track func(Entry)) (ReadResult, error) {
	err := r.s.search(ctx, r.q, r.q.Filter, extraAttrs, func(e Entry) error {
		if track != nil {
			track(e)
		}
		return r.emit(ChangeUpsert, e)
	})
	if err != nil {
		return ReadResult{}, err
	}
	return ReadResult{Mechanism: MechanismFull, Full: true, Deletes: true}, nil
}

// serverID identifies the server for Cursor.Server (see there). The lookups are best effort:
// an account that may not read them gets the same, shorter identity every time.
func (r *reader) serverID(ctx context.Context, ad bool) string {
	if ad {
		inv := r.readGUID(ctx, r.info.DSServiceName, "invocationId")
		return "ad:" + strings.ToLower(r.info.DSServiceName) + "|invocationId=" + inv
	}
	nc := r.info.namingContextOf(r.q.BaseDN)
	id := ""
	if nc != "" {
		id = r.readGUID(ctx, nc, "entryUUID")
	}
	return "ldap:" + strings.TrimRight(r.s.c.cfg.URL, "/") + "|" + strings.ToLower(nc) + "|" + id
}

// readGUID reads one id-like attribute of dn: invocationId or objectGUID in canonical form,
// entryUUID as it is; "" when it cannot be read.
func (r *reader) readGUID(ctx context.Context, dn, attr string) string {
	if dn == "" {
		return ""
	}
	var out string
	req := goldap.NewSearchRequest(dn, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{attr}, nil)
	_ = r.s.each(ctx, r.s.conn, func(c context.Context) goldap.Response { return r.s.conn.SearchAsync(c, req, 1) },
		func(res goldap.Response) error {
			e := res.Entry()
			if e == nil {
				return nil
			}
			raw := e.GetEqualFoldRawAttributeValue(attr)
			if len(raw) == 16 && !strings.EqualFold(attr, "entryUUID") {
				out = GUIDString(raw)
			} else {
				out = strings.ToLower(e.GetEqualFoldAttributeValue(attr))
			}
			return nil
		})
	return out
}

// maxCursorBytes bounds what DecodeCursor reads; real cursors are a few hundred bytes.
const maxCursorBytes = 1 << 20

// DecodeCursor reads a cursor stored as JSON and checks it; an error means "no usable cursor":
// the caller reads in full.
func DecodeCursor(data []byte) (Cursor, error) {
	if len(data) > maxCursorBytes {
		return Cursor{}, fmt.Errorf("ldap: cursor: %d bytes, more than %d", len(data), maxCursorBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var c Cursor
	if err := dec.Decode(&c); err != nil {
		return Cursor{}, fmt.Errorf("ldap: cursor: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Cursor{}, errors.New("ldap: cursor: trailing data after the JSON object")
	}
	switch c.Mechanism {
	case DeltaSyncrepl, DeltaDirSync, DeltaUSN, DeltaTimestamp:
	default:
		return Cursor{}, fmt.Errorf("ldap: cursor: unknown mechanism %q", truncate(c.Mechanism, 40))
	}
	switch {
	case c.Server == "" || c.Fingerprint == "":
		return Cursor{}, errors.New("ldap: cursor: no server or fingerprint")
	case c.USN < 0:
		return Cursor{}, fmt.Errorf("ldap: cursor: negative USN %d", c.USN)
	case c.Mechanism == DeltaUSN && c.USN == 0:
		return Cursor{}, errors.New("ldap: cursor: usn cursor without a USN")
	case (c.Mechanism == DeltaSyncrepl || c.Mechanism == DeltaDirSync) && len(c.Cookie) == 0:
		return Cursor{}, fmt.Errorf("ldap: cursor: %s cursor without a cookie", c.Mechanism)
	case c.Mechanism == DeltaTimestamp && (c.Time.IsZero() || c.Time.Year() > 9999):
		return Cursor{}, errors.New("ldap: cursor: timestamp cursor without a usable time")
	}
	return c, nil
}

// Encode is the cursor as JSON, for DecodeCursor.
func (c Cursor) Encode() ([]byte, error) { return json.Marshal(c) }
