package ldap

import (
	"context"
	"errors"
	"fmt"
	"strings"

	goldap "github.com/go-ldap/ldap/v3"
)

// syncrepl reads with an RFC 4533 refreshOnly search. With a usable cookie the server sends
// what changed since: changed entries in full, deletions (and entries that left the scope or
// filter, or were moved out of the base) as sync-state deletes or a syncIdSet of UUIDs; or, when
// its session log cannot cover the gap, a present phase that lists every unchanged entry (Full).
// Without a cookie the refresh is the full read, and it ends with the cookie for next time.
func (r *reader) syncrepl(ctx context.Context, cur *Cursor) (ReadResult, error) {
	server := r.serverID(ctx, false)
	why := r.unusable(cur, DeltaSyncrepl, server)
	var cookie []byte
	if why == "" {
		cookie = cur.Cookie
	}
	res, err := r.refresh(ctx, cookie)
	if err != nil && cookie != nil {
		if reason := refusedCookie(err); reason != "" {
			why = reason
			cookie = nil
			res, err = r.refresh(ctx, nil)
		}
	}
	if err != nil {
		return ReadResult{}, err
	}
	if res.Cursor.Mechanism != "" {
		res.Cursor.Server, res.Cursor.Fingerprint = server, r.fp
	}
	if cookie == nil {
		res.Mechanism, res.Fallback = MechanismFull, why
	}
	if res.ignored {
		res.Fallback = "the server ignored the stored cookie and sent everything"
	}
	return res.ReadResult, nil
}

// refusedCookie says why a syncrepl error means "read again without the cookie", "" when it
// does not. e-syncRefreshRequired is the RFC's way; slapd answers unwillingToPerform ("consumer
// state is newer than provider") to a cookie from before a restore.
func refusedCookie(err error) string {
	var le *goldap.Error
	var ce callerError
	if errors.As(err, &ce) || !errors.As(err, &le) {
		return ""
	}
	switch le.ResultCode {
	case goldap.LDAPResultSyncRefreshRequired:
		return "the server asked for a full refresh (e-syncRefreshRequired)"
	case goldap.LDAPResultUnwillingToPerform, goldap.LDAPResultProtocolError, goldap.LDAPResultOther:
		return "the server refused the cookie: " + le.Error()
	}
	return ""
}

type refreshResult struct {
	ReadResult
	ignored bool // a cookie was sent and the server answered with an explicitly empty one
}

// refresh runs one refreshOnly search and delivers its changes.
func (r *reader) refresh(ctx context.Context, cookie []byte) (refreshResult, error) {
	conn := r.s.conn
	req := goldap.NewSearchRequest(r.q.BaseDN, scopes[r.q.Scope], goldap.NeverDerefAliases, 0, 0, false,
		r.q.Filter, r.q.request(), nil)
	uuidIsID := strings.EqualFold(r.q.IDAttribute, "entryUUID")
	notice := func(kind ChangeKind, uuid, dn string) error {
		e := Entry{DN: dn, UUID: uuid}
		if uuidIsID {
			e.ID = uuid
		}
		return r.emit(kind, e)
	}
	var (
		last          = cookie
		present, done bool
		doneDeletes   bool
		ignored       bool
	)
	keep := func(c []byte) {
		if len(c) > 0 {
			last = c
		}
	}
	err := r.s.each(ctx, conn, func(c context.Context) goldap.Response {
		// a fresh request every call: Syncrepl appends its control to the request it is given
		return conn.Syncrepl(c, req, 64, goldap.SyncRequestModeRefreshOnly, cookie, false)
	}, func(resp goldap.Response) error {
		ctrls := resp.Controls()
		if e := resp.Entry(); e != nil {
			st, _ := goldap.FindControl(ctrls, goldap.ControlTypeSyncState).(*goldap.ControlSyncState)
			if st == nil {
				return fmt.Errorf("ldap: syncrepl: entry %q without a sync state control", e.DN)
			}
			keep(st.Cookie)
			uuid := st.EntryUUID.String()
			switch st.State {
			case goldap.SyncStatePresent:
				present = true
				return notice(ChangePresent, uuid, e.DN)
			case goldap.SyncStateDelete:
				return notice(ChangeDelete, uuid, e.DN)
			default:
				entry, err := r.s.entry(ctx, e, r.q)
				if err != nil {
					return err
				}
				entry.UUID = uuid
				return r.emit(ChangeUpsert, entry)
			}
		}
		if info, ok := goldap.FindControl(ctrls, goldap.ControlTypeSyncInfo).(*goldap.ControlSyncInfo); ok {
			switch info.Value {
			case goldap.SyncInfoNewcookie:
				keep(info.NewCookie.Cookie)
			case goldap.SyncInfoRefreshDelete:
				keep(info.RefreshDelete.Cookie)
			case goldap.SyncInfoRefreshPresent:
				present = true
				keep(info.RefreshPresent.Cookie)
			case goldap.SyncInfoSyncIdSet:
				set := info.SyncIdSet
				keep(set.Cookie)
				kind := ChangeDelete
				if !set.RefreshDeletes {
					kind, present = ChangePresent, true
				}
				for _, u := range set.SyncUUIDs {
					if err := notice(kind, u.String(), ""); err != nil {
						return err
					}
				}
			}
			return nil
		}
		if d, ok := goldap.FindControl(ctrls, goldap.ControlTypeSyncDone).(*goldap.ControlSyncDone); ok {
			done, doneDeletes = true, d.RefreshDeletes
			if d.Cookie != nil && len(d.Cookie) == 0 && cookie != nil {
				ignored = true
			}
			keep(d.Cookie)
		}
		return nil
	})
	if err != nil {
		return refreshResult{}, failed("syncrepl refresh of "+r.q.BaseDN, err)
	}
	if !done {
		return refreshResult{}, fmt.Errorf("ldap: syncrepl refresh of %s: %w: the server ended without a sync done control", r.q.BaseDN, ErrPartial)
	}
	res := refreshResult{ReadResult: ReadResult{
		Mechanism: DeltaSyncrepl,
		// slapd marks even a cookie-less initial refresh refreshDeletes=TRUE, so "no cookie" is
		// what says it was the whole content
		Full:    cookie == nil || present || !doneDeletes || ignored,
		Deletes: true,
	}, ignored: ignored}
	if !ignored && len(last) > 0 {
		res.Cursor = Cursor{Mechanism: DeltaSyncrepl, Cookie: last}
	}
	return res, nil
}
