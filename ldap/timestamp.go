package ldap

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// timestamp reads entries whose modifyTimestamp is at or after the cursor's high-water mark
// minus the overlap window (ldap.timestamp_overlap): clocks of replicas differ, and a write in
// flight during the last read may carry an earlier timestamp than what that read saw. Entries
// seen twice are harmless upserts. It cannot see deletions, nor entries moved out of the base:
// Deletes is false and the caller's periodic full reconcile finds those.
func (r *reader) timestamp(ctx context.Context, cur *Cursor) (ReadResult, error) {
	server := r.serverID(ctx, false)
	why := r.unusable(cur, DeltaTimestamp, server)
	var high time.Time
	track := func(e Entry) {
		if t, err := ParseGeneralizedTime(e.First("modifyTimestamp")); err == nil && t.After(high) {
			high = t
		}
	}
	if why != "" {
		res, err := r.full(ctx, []string{"modifyTimestamp"}, track)
		if err != nil {
			return ReadResult{}, err
		}
		res.Fallback = why
		if !high.IsZero() {
			res.Cursor = Cursor{Mechanism: DeltaTimestamp, Server: server, Fingerprint: r.fp, Time: high}
		}
		return res, nil
	}
	since := cur.Time.Add(-r.s.c.cfg.TimestampOverlap.D())
	filter := "(&" + r.q.Filter + "(modifyTimestamp>=" + FormatGeneralizedTime(since) + "))"
	err := r.s.search(ctx, r.q, filter, []string{"modifyTimestamp"}, func(e Entry) error {
		track(e)
		return r.emit(ChangeUpsert, e)
	})
	if err != nil {
		return ReadResult{}, err
	}
	if high.Before(cur.Time) {
		high = cur.Time
	}
	return ReadResult{Mechanism: DeltaTimestamp, Deletes: false,
		Cursor:  Cursor{Mechanism: DeltaTimestamp, Server: server, Fingerprint: r.fp, Time: high},
		Warning: "modifyTimestamp deltas do not see deletions or moves out of the base: the next full read does"}, nil
}

// FormatGeneralizedTime renders t as an LDAP GeneralizedTime in UTC, to the second.
func FormatGeneralizedTime(t time.Time) string { return t.UTC().Format("20060102150405Z") }

// ParseGeneralizedTime reads an LDAP GeneralizedTime (RFC 4517 §3.3.13) as servers write it:
// YYYYMMDDHHMMSS with an optional fraction (AD writes ".0Z"), then Z or ±HHMM. Minutes and
// seconds are required: no directory this reads from omits them.
func ParseGeneralizedTime(s string) (time.Time, error) {
	bad := func(why string) (time.Time, error) {
		return time.Time{}, fmt.Errorf("generalized time %q: %s", truncate(s, 40), why)
	}
	if len(s) < 15 {
		return bad("too short")
	}
	digits := func(p string) (int, bool) {
		n := 0
		for _, c := range p {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	var f [6]int
	for i, w := range []int{4, 2, 2, 2, 2, 2} {
		start := [6]int{0, 4, 6, 8, 10, 12}[i]
		v, ok := digits(s[start : start+w])
		if !ok {
			return bad("not digits")
		}
		f[i] = v
	}
	rest := s[14:]
	nsec := 0
	if rest[0] == '.' || rest[0] == ',' {
		end := 1
		for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
			end++
		}
		frac := rest[1:end]
		if frac == "" || len(frac) > 9 {
			return bad("bad fraction")
		}
		n, _ := strconv.Atoi(frac + strings.Repeat("0", 9-len(frac)))
		nsec = n
		rest = rest[end:]
	}
	loc := time.UTC
	switch {
	case rest == "Z":
	case len(rest) == 5 && (rest[0] == '+' || rest[0] == '-'):
		hh, ok1 := digits(rest[1:3])
		mm, ok2 := digits(rest[3:5])
		if !ok1 || !ok2 || hh > 23 || mm > 59 {
			return bad("bad zone offset")
		}
		off := hh*3600 + mm*60
		if rest[0] == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
	default:
		return bad("no time zone (Z or ±HHMM)")
	}
	if f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 || f[4] > 59 || f[5] > 60 {
		return bad("field out of range")
	}
	t := time.Date(f[0], time.Month(f[1]), f[2], f[3], f[4], f[5], nsec, loc)
	if t.Day() != f[2] && f[5] != 60 {
		return bad("no such day")
	}
	if u := t.UTC(); u.Year() < 1 || u.Year() > 9999 {
		return bad("outside the years 0001–9999 in UTC")
	}
	return t.UTC(), nil
}
