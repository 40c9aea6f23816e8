package sync

import (
	"fmt"
	"sort"
	"strings"
)

// claims gives each userName to one directory entry. The entry already linked under the name
// wins, then the smaller DN, so the choice is stable across runs whatever order the directory
// returns entries in. A loser is invalid, or with unique_user_names: suffix gets name-2,
// name-3 …; the name a user was given is recorded in its link, so it keeps it on every later
// run. Entries claim during the read (pass 1) and are told their name after it (pass 2), which
// is what lets a full read stream: only one small record per name is held.
type claims struct {
	suffix bool
	limit  int // userName length rule, 0 for none
	// held says who else holds name in state when the read does not cover every entry (a
	// delta): the link's external id and DN, or ok=false.
	held func(name string) (ext, dn string, ok bool)
	// dnOf is the DN of the entry with an external id, from the read (kept once, there).
	dnOf func(ext string) string

	names   map[string]claim // lower(name) -> its winner
	losers  []claim
	final   map[string]string // externalId -> its name when not the one it asked for
	invalid map[string]Item   // externalId -> why it gets no name
}

// claim is one entry's claim on a name. It keeps no DN: the read keeps every entry's DN once,
// and claims ask it (dnOf) only when two of them collide.
type claim struct {
	id           idKey // the entry's external id
	name, base   string
	heldDN       string // a name held by a link whose entry is not in this read: its DN
	linked, held bool
}

func newClaims(m *Mapping) *claims {
	return &claims{suffix: m.suffix, limit: m.maxUserName(), names: map[string]claim{},
		final: map[string]string{}, invalid: map[string]Item{}, dnOf: func(string) string { return "" }}
}

// dn is the DN of the entry behind a claim.
func (c *claims) dn(cl claim) string {
	if cl.held {
		return cl.heldDN
	}
	return c.dnOf(cl.id.String())
}

// beats reports whether a wins a name over b.
func (c *claims) beats(a, b claim) bool {
	if a.linked != b.linked {
		return a.linked
	}
	return strings.ToLower(c.dn(a)) < strings.ToLower(c.dn(b))
}

// claim records d's claim on its userName; linkedName is the name its link records ("" when
// not linked).
func (c *claims) claim(d Desired, linked bool, linkedName string) {
	cl := claim{id: keyOf(d.ExternalID), name: d.UserName(), base: d.UserName(), linked: linked}
	if c.suffix && linked && linkedName != cl.name && isSuffixOf(linkedName, cl.base, c.limit) {
		cl.name = linkedName // keep the suffixed name it was given
	}
	key := strings.ToLower(cl.name)
	cur, taken := c.names[key]
	if !taken && c.held != nil {
		if ext, dn, ok := c.held(cl.name); ok && keyOf(ext) != cl.id {
			cur, taken = claim{id: keyOf(ext), heldDN: dn, name: cl.name, base: cl.name, linked: true, held: true}, true
			c.names[key] = cur
		}
	}
	switch {
	case !taken:
		c.names[key] = cl
	case c.beats(cl, cur):
		c.names[key] = cl
		if !cur.held {
			c.losers = append(c.losers, cur)
		}
	default:
		c.losers = append(c.losers, cl)
	}
}

// resolve decides every loser: a suffix, or invalid.
func (c *claims) resolve() {
	sort.Slice(c.losers, func(i, j int) bool { return c.beats(c.losers[i], c.losers[j]) })
	for _, l := range c.losers {
		winner := c.names[strings.ToLower(l.name)]
		if !c.suffix {
			c.invalid[l.id.String()] = Item{Action: ActionInvalid, DN: c.dn(l), Name: l.base, ExternalID: l.id.String(),
				Attribute: "userName", Rule: "unique", Reason: fmt.Sprintf("userName %q is also produced by %s", l.base, c.dn(winner))}
			continue
		}
		for n := 2; ; n++ {
			cand := withSuffix(l.base, n, c.limit)
			if c.free(cand, l.id.String()) {
				l.name = cand
				c.names[strings.ToLower(cand)] = l
				c.final[l.id.String()] = cand
				break
			}
		}
	}
	for key, w := range c.names {
		if w.name != w.base {
			c.final[w.id.String()] = c.names[key].name
		}
	}
	// only final and invalid are asked from now on: the claims (one per user) go, so the plan
	// pass that follows does not hold them too
	c.names, c.losers = nil, nil
}

func (c *claims) free(name, ext string) bool {
	if _, taken := c.names[strings.ToLower(name)]; taken {
		return false
	}
	if c.held != nil {
		if other, _, ok := c.held(name); ok && other != ext {
			return false
		}
	}
	return true
}

// result is d's userName after every claim was heard, or why it has none.
func (c *claims) result(d Desired) (string, *Item) {
	if it, bad := c.invalid[d.ExternalID]; bad && (it.DN == d.DN) {
		return "", &it
	}
	if n, ok := c.final[d.ExternalID]; ok {
		return n, nil
	}
	return d.UserName(), nil
}

// maxUserName is the userName length rule, or 0 for none.
func (m *Mapping) maxUserName() int { return m.rules["userName"].MaxLength }

// withSuffix appends -n, shortening base so the result stays within limit characters.
func withSuffix(base string, n, limit int) string {
	suffix := fmt.Sprintf("-%d", n)
	if limit > 0 {
		base = truncateRunes(base, max(limit-len(suffix), 1))
	}
	return base + suffix
}

// isSuffixOf reports whether name is a suffixed form withSuffix would produce from base.
func isSuffixOf(name, base string, limit int) bool {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return false
	}
	var n int
	if _, err := fmt.Sscanf(name[i+1:], "%d", &n); err != nil || n < 2 || fmt.Sprint(n) != name[i+1:] {
		return false
	}
	return withSuffix(base, n, limit) == name
}
