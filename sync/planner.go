package sync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/state"
)

// planner is one run's planning: a sequence of small phases over lookups (state by externalId,
// userName, target id and source UUID; the target by id, externalId and userName), fed by a
// full directory read or a delta.
//
//	recover   intents of writes a killed run may have sent       (state, target)
//	list      the target, when reconciling in full               (target)
//	read      the directory: map, claim names, remember deletes  (source)
//	plan      each mapped user: match, hands-off, diff           (state, target)
//	gone      links whose entry is gone: deprovision             (state, target)
//	check     safety limits on the plan's counts
type planner struct {
	e         *Engine
	ctx       context.Context
	v         *state.View
	plan      *Plan
	opts      PlanOptions
	pay       payload
	overrides map[string]state.Override
	// fp is the engine's configuration fingerprint with the administrator's overrides: an
	// override set or cleared changes what is planned for users no delta would bring, so it
	// makes the next run a full reconcile
	fp        string
	target    targetLookup
	reconcile bool // the target was listed: compare with it, repair drift

	overlay map[string]*state.Link // links recovered from intents (nil value: forgotten)
	// recovered holds the state-only items of creates recovered from intents until the user is
	// planned: an unchanged user's refresh then carries the recovery (one record, not two)
	recovered map[string]Item
	exclude   *ldap.Matcher // entries not synced at all (mapping.exclude, or the directory's default)
	claims    *claims
	desired   desiredSpool
	seen      map[idKey]string  // external id -> DN of every entry read (mapped, invalid, excluded)
	deletes   []ldap.Entry      // entries a delta says are gone
	relinked  map[string]bool   // external ids of links taken over by a new entry
	taken     map[string]string // target id -> the external id of the entry that matched it
	relinks   int
	missing   int      // created users the target's listing lacks (a delta: its lookups found gone)
	notes     []string // warnings found while planning (group cycles, depth), each once

	// what the group planner needs to know of the users (only when groups are synced)
	readUsers map[dnDigest]idKey // digest of the dnKey -> external id of every user mapped in this read
	readUIDs  map[string]idKey   // lower(uid) -> external id, when members are named by uid
	created   map[idKey]string   // users this plan creates, adopts or re-links -> name
	outside   map[idKey]struct{} // users this plan leaves alone (hands-off, invalid, taken)
	readFull  bool
}

// Plan reads directory, state and target and decides. It writes nothing anywhere.
func (e *Engine) Plan(ctx context.Context, opts PlanOptions) (*Plan, error) {
	if opts.OnlyUser != "" {
		return e.planOne(ctx, opts)
	}
	var plan *Plan
	started := time.Now()
	deadline := time.Now().Add(e.cfg.MaxRunTime.D()) // real time, whatever clock the engine plans with
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	err := e.store.View(func(v *state.View) error {
		p, err := e.newPlanner(ctx, v, opts)
		if err != nil {
			return err
		}
		plan = p.plan
		plan.deadline = deadline
		return p.run()
	})
	if err != nil {
		_ = plan.Close()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("sync: sync.max_run_time (%s) reached while planning: %w", e.cfg.MaxRunTime.D(), err)
		}
		return nil, err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	e.log.Info("plan ready", zap.String("mode", plan.Mode), zap.String("read", plan.Read.Mechanism),
		zap.Int("entries", plan.Read.Entries), zap.Int("target", plan.Target), zap.Bool("capabilities_kept", plan.Discovery.Kept),
		zap.Duration("took", time.Since(started)),
		zap.Uint64("heap_mib", ms.HeapInuse>>20))
	return plan, nil
}

// withOverrides adds a digest of the administrator's overrides to fingerprint fp (nothing when
// there are none, so a state file without overrides keeps its fingerprint).
func withOverrides(fp string, overrides map[string]state.Override) string {
	if len(overrides) == 0 {
		return fp
	}
	h := sha256.New()
	for _, k := range sortedKeys(overrides) {
		fmt.Fprintf(h, "%q=%s\n", k, overrides[k].Mode)
	}
	return fp + "|overrides=" + hex.EncodeToString(h.Sum(nil)[:8])
}

func (e *Engine) newPlanner(ctx context.Context, v *state.View, opts PlanOptions) (*planner, error) {
	overrides, err := e.store.Overrides()
	if err != nil {
		return nil, err
	}
	p := &planner{e: e, ctx: ctx, v: v, opts: opts, overrides: overrides,
		overlay: map[string]*state.Link{}, claims: newClaims(e.mapping), seen: map[idKey]string{}, relinked: map[string]bool{}}
	p.claims.dnOf = func(ext string) string { return p.seen[keyOf(ext)] }
	p.fp = withOverrides(e.fingerprint, overrides)
	p.plan = newPlan("delta")
	p.plan.Known = v.CountLinks(state.LinkUser)
	if e.groups != nil && opts.OnlyUser == "" {
		p.readUsers, p.readUIDs = map[dnDigest]idKey{}, map[string]idKey{}
		p.created, p.outside = map[idKey]string{}, map[idKey]struct{}{}
		p.plan.onAdd = func(it Item) {
			if it.Kind != KindUser || it.ExternalID == "" {
				return
			}
			k := keyOf(it.ExternalID)
			switch {
			case it.Action == ActionCreate, it.Action == ActionUpdate && (it.Adopt || it.Relink != nil):
				p.created[k] = it.Name
			case it.Action == ActionSkip, it.Action == ActionInvalid:
				p.outside[k] = struct{}{}
			}
		}
	}
	return p, nil
}

// maxKeptDiscovery bounds the discovery documents kept in state (the built-in server's are
// about 30 KiB): a target that serves more is asked again at every run instead.
const maxKeptDiscovery = 4 << 20

// discover learns the target's capabilities and the payload they allow. A delta run (fresh
// false) goes by the discovery kept in state when one was fetched under this configuration;
// a full reconcile, a run of one user and a delta without a usable kept discovery ask the
// target, and Apply keeps what they fetched. A target that refuses a write loses its kept
// discovery (Apply), so a changed schema is read again at the next run, not a day later.
func (p *planner) discover(fresh bool) error {
	caps, kept, ok := p.keptCapabilities(fresh)
	if ok {
		p.plan.Discovery = &DiscoveryInfo{FetchedAt: kept, Kept: true}
		p.e.log.Debug("target capabilities from the discovery kept in state", zap.Time("fetched", kept))
	} else {
		d, err := p.e.target.FetchDiscovery(p.ctx)
		if err == nil {
			caps, err = d.Capabilities()
		}
		if err != nil {
			return fmt.Errorf("sync: %w: discover: %w", ErrTargetFailed, err)
		}
		now := p.e.now().UTC()
		p.plan.Discovery = &DiscoveryInfo{FetchedAt: now}
		p.e.log.Debug("target capabilities from the target's discovery", zap.Time("fetched", now))
		if size := d.Size(); size > maxKeptDiscovery {
			p.e.log.Debug("the target's discovery documents are too large to keep; every run asks for them",
				zap.Int("bytes", size), zap.Int("limit", maxKeptDiscovery))
		} else if data, err := d.Encode(); err != nil {
			p.e.log.Warn("the target's discovery documents cannot be kept; every run asks for them", zap.Error(err))
		} else {
			p.plan.fetched = &state.Discovery{Data: data, FetchedAt: now, Config: p.fp}
		}
	}
	p.e.target.Use(caps)
	pay, warnings := newPayload(p.e.mapping, caps)
	p.pay = pay
	p.plan.Warnings = append(p.plan.Warnings, warnings...)
	p.plan.caps, p.plan.payload = caps, pay
	return nil
}

// keptCapabilities reads the discovery kept in state, when a delta may use it: kept under this
// run's configuration fingerprint (which names the target) and readable. It reports when the
// target served it.
func (p *planner) keptCapabilities(fresh bool) (scimclient.Capabilities, time.Time, bool) {
	if fresh {
		return scimclient.Capabilities{}, time.Time{}, false
	}
	kept, ok, err := p.v.Discovery()
	if err == nil && ok && kept.Config != p.fp {
		p.e.log.Debug("the kept target discovery is of another configuration; asking the target")
		ok = false
	}
	var caps scimclient.Capabilities
	if err == nil && ok {
		var d scimclient.Discovery
		if d, err = scimclient.DecodeDiscovery(kept.Data); err == nil {
			caps, err = d.Capabilities()
		}
	}
	if err != nil {
		p.e.log.Warn("the kept target discovery is unreadable; asking the target", zap.Error(err))
		return scimclient.Capabilities{}, time.Time{}, false
	}
	return caps, kept.FetchedAt, ok
}

// link returns the link of ext as this run sees it: state, corrected by recovered intents.
func (p *planner) link(ext string) (state.Link, bool, error) {
	if l, ok := p.overlay[ext]; ok {
		if l == nil {
			return state.Link{}, false, nil
		}
		return *l, true, nil
	}
	return p.v.Link(state.LinkUser, ext)
}

func (p *planner) run() error {
	cur, hasCursor, err := p.v.Cursor(state.LinkUser)
	if err != nil {
		return err
	}
	var ldapCur *ldap.Cursor
	if hasCursor && len(cur.Data) > 0 {
		c, err := ldap.DecodeCursor(cur.Data)
		if err != nil {
			p.e.log.Warn("stored directory cursor unreadable; reading in full", zap.Error(err))
		} else {
			ldapCur = &c
		}
	}
	due := p.e.cfg.FullReconcile.D() == 0 || cur.FullAt.IsZero() || p.e.now().Sub(cur.FullAt) >= p.e.cfg.FullReconcile.D()
	changed := cur.Config != p.fp
	p.reconcile = p.opts.Full || due || changed || ldapCur == nil || p.plan.Known == 0
	if changed && hasCursor {
		p.plan.Notices = append(p.plan.Notices, "the configuration changed since the last full reconcile (mapping, override rules or an administrator's override, deprovisioning or target): reading both sides in full")
	}
	if p.reconcile {
		p.plan.Mode = "full"
		ldapCur = nil
	}
	// decided only now: a delta may go by the capabilities kept from the last discovery
	if err := p.discover(p.reconcile); err != nil {
		return err
	}

	if err := p.recoverIntents(); err != nil {
		return err
	}
	// the target's listing and the directory's read are independent: they run at once, and the
	// plan waits for both (a full reconcile costs the longer of the two, not their sum)
	listed := make(chan error, 1)
	cancelListing := func() {}
	if p.reconcile {
		limit := scimclient.DefaultMaxResources
		if hasCursor && !cur.FullAt.IsZero() {
			// a listing may not run far beyond what the last one held and the users state knows
			limit = max(2*cur.TargetUsers, 4*p.plan.Known) + 1000
		}
		var ctx context.Context
		ctx, cancelListing = context.WithCancel(p.ctx)
		defer cancelListing() // a failed read stops the listing
		go func() {
			ix, err := listTarget(ctx, p.e.target, p.pay, limit)
			if err == nil {
				p.target = ix
				p.plan.Target = ix.size()
			}
			listed <- err
		}()
	} else {
		listed <- nil
		p.target = newRemoteLookup(p.e.target, p.pay)
		p.plan.Target = -1
		p.claims.held = p.heldName
	}

	q := p.e.source.UserQuery(p.directoryDefaults())
	res, err := p.e.source.Read(p.ctx, q, ldapCur, p.read)
	defer p.desired.close()
	if err != nil {
		cancelListing()
		<-listed
		var rerr readError
		if errors.As(err, &rerr) {
			return rerr.err
		}
		return fmt.Errorf("sync: %w: %w", ErrSourceFailed, err)
	}
	if err := <-listed; err != nil {
		return fmt.Errorf("sync: %w: list users: %w", ErrTargetFailed, err)
	}
	p.readFull = res.Full
	p.plan.Read = ReadInfo{Mechanism: res.Mechanism, Full: res.Full, Fallback: res.Fallback, CursorRefused: res.CursorRefused,
		Warning: res.Warning, Entries: p.plan.Source}
	if res.CursorRefused {
		p.e.log.Warn("the stored directory cursor could not be used: users read in full", zap.String("reason", res.Fallback))
	}
	if res.Cursor.Mechanism != "" || p.reconcile {
		p.plan.cursor = &cursorUpdate{kind: state.LinkUser, cursor: res.Cursor, full: p.reconcile, prior: cur, listed: p.plan.Target,
			config: p.fp}
	}
	if res.Full && len(p.seen) == 0 && p.plan.Known > 0 {
		return fmt.Errorf("sync: %w", ErrEmptySource)
	}

	// names are decided once the whole read is known: a delete later in a delta may free the
	// name an earlier add asks for
	claimed := 0
	if err := p.desired.each(func(sd spooledDesired) error {
		if claimed++; claimed%releaseEvery == 0 {
			p.v.Release()
		}
		l, linked, err := p.link(sd.D.ExternalID)
		if err == nil {
			p.claims.claim(sd.D, linked, l.UserName)
		}
		return err
	}); err != nil {
		return err
	}
	p.claims.resolve()
	p.v.Release()
	planned := 0
	if err := p.desired.each(func(sd spooledDesired) error {
		if planned++; planned%releaseEvery == 0 {
			p.v.Release()
		}
		var entry *ldap.Entry
		if sd.Entry != nil {
			entry = &ldap.Entry{DN: sd.D.DN, ID: sd.D.ExternalID, Attrs: sd.Entry.Attrs}
		}
		return p.planUser(sd.D, entry)
	}); err != nil {
		return err
	}
	if err := p.flushRecovered(); err != nil {
		return err
	}
	if err := p.gone(); err != nil {
		return err
	}
	if err := p.planGroups(); err != nil {
		return err
	}
	for _, n := range slices.Compact(slices.Sorted(slices.Values(p.notes))) {
		p.plan.Warnings = append(p.plan.Warnings, n)
	}
	// a full reconcile counts the created users its listing lacks, a delta those its lookups
	// found gone: either way a target that lost many users stops the run before re-creating
	p.e.checkMissing(p.plan, p.missing, p.opts.AllowRecreate)
	if p.plan.Blocked == nil {
		p.e.checkLimits(p.plan, p.relinks, p.opts.AllowDeprovision)
	}
	return nil
}

// directoryDefaults decides what depends on the kind of directory and says so in the plan:
// Active Directory's computer and built-in accounts are left out unless mapping.exclude says
// otherwise, and accounts the directory marks disabled or locked are sent with active=false.
// It returns the attributes to read.
func (p *planner) directoryDefaults() []string {
	m := p.e.mapping
	attrs := m.Attributes()
	if g := p.e.groups; g != nil && g.uidMembers {
		attrs = append(attrs, "uid") // posixGroup members are named by uid
	}
	ad := strings.EqualFold(p.e.source.UserQuery(nil).IDAttribute, "objectGUID")
	if !ad {
		info, err := p.e.source.Discover(p.ctx)
		if err != nil {
			p.e.log.Debug("root DSE not readable; directory defaults from the configuration only", zap.Error(err))
		}
		ad = err == nil && info.IsAD()
	}
	p.exclude = m.exclude
	if p.exclude == nil && !m.excludeNone && ad {
		ex, _ := ldap.CompileMatcher(adExclude)
		p.exclude = &ex
		attrs = append(attrs, ex.Attributes()...)
		p.plan.Notices = append(p.plan.Notices, "Active Directory: computer and built-in accounts (Guest, krbtgt, Administrator) "+
			"are not synced; set mapping.exclude (an LDAP filter, or none) to choose otherwise")
	}
	if m.defaultDisabled {
		what := "OpenLDAP pwdAccountLockedTime, 389-DS/FreeIPA nsAccountLock"
		if ad {
			what = "userAccountControl bit 2 (ACCOUNTDISABLE)"
		}
		p.plan.Notices = append(p.plan.Notices, "accounts the directory marks disabled or locked ("+what+
			") are sent with active=false; set mapping.disabled_if to choose otherwise")
	}
	return attrs
}

// releaseEvery is how many users a scan of state goes through between releases of the state
// file's mapped pages (View.Release): bounded RSS at 100,000 users, at no disk cost.
const releaseEvery = 5000

// dnKey is a DN in the one form every comparison uses (ldap.NormalizeDN); a DN the parser
// refuses is compared lower-cased.
func dnKey(dn string) string {
	if k, err := ldap.NormalizeDN(dn); err == nil {
		return k
	}
	return strings.ToLower(dn)
}

// readError carries an error of the planner's own out of the directory read unchanged.
type readError struct{ err error }

func (r readError) Error() string { return r.err.Error() }

// read is pass 1: every change the directory reports.
func (p *planner) read(ch ldap.Change) error {
	switch ch.Kind {
	case ldap.ChangeDelete:
		p.deletes = append(p.deletes, ch.Entry)
		return nil
	case ldap.ChangePresent:
		if ch.Entry.ID != "" {
			p.seen[keyOf(ch.Entry.ID)] = ch.Entry.DN
		}
		if l, ok, err := p.v.LinkByUUID(state.LinkUser, ch.Entry.UUID); err == nil && ok {
			p.seen[keyOf(l.ExternalID)] = ch.Entry.DN
		}
		return nil
	}
	en := ch.Entry
	if en.ID != "" {
		if other, dup := p.seen[keyOf(en.ID)]; dup && !strings.EqualFold(other, en.DN) {
			// two entries with one stable id: the second is not synced (the first keeps it)
			return p.add(Item{Action: ActionInvalid, DN: en.DN, ExternalID: en.ID, Name: en.First("uid"),
				Attribute: keyExternalID, Rule: "unique", Reason: "the same stable id is also on " + other})
		}
		p.seen[keyOf(en.ID)] = en.DN // excluded and unmappable entries exist too: never deprovisioned
	}
	if p.exclude != nil && p.exclude.Match(en) {
		p.plan.Excluded++
		return nil
	}
	p.plan.Source++
	d, merr := p.e.mapping.Map(en)
	if merr != nil {
		// a hands-off user is someone else's business even when it cannot be mapped
		if off, why := p.e.handsOff(en.First("uid"), en.DN, &en, false, p.overrides); off {
			return p.add(Item{Action: ActionSkip, DN: en.DN, ExternalID: en.ID, Name: en.First("uid"), Reason: why})
		}
		return p.add(Item{Action: ActionInvalid, DN: en.DN, ExternalID: en.ID, Name: en.First("uid"),
			Attribute: merr.Attribute, Rule: merr.Rule, Reason: strings.Join(merr.Problems, "; ")})
	}
	if p.readUsers != nil {
		p.readUsers[digestDN(dnKey(en.DN))] = keyOf(d.ExternalID)
		if p.e.groups.uidMembers {
			if uid := en.First("uid"); uid != "" {
				p.readUIDs[strings.ToLower(uid)] = keyOf(d.ExternalID)
			}
		}
	}
	sd := spooledDesired{D: d}
	if p.e.needsEntry() {
		sd.Entry = &entryRef{Attrs: en.Attrs}
	}
	return p.desired.add(sd)
}

func (p *planner) add(it Item) error {
	if err := p.plan.add(it); err != nil {
		return readError{err}
	}
	return nil
}

// needsEntry reports whether hands-off rules select by LDAP filter, so entries must be kept.
func (e *Engine) needsEntry() bool {
	for _, r := range e.rules {
		if r.filter != nil {
			return true
		}
	}
	return false
}

// heldName says which other link holds name, for delta runs that do not read every entry.
func (p *planner) heldName(name string) (string, string, bool) {
	l, ok, err := p.v.LinkByName(state.LinkUser, name)
	if err != nil || !ok {
		return "", "", false
	}
	if gone, err := p.sourceGone(l); err != nil || gone {
		// an entry that is gone frees its name (and its target user may be re-linked); a
		// failed lookup keeps the name held, the safe side
		return l.ExternalID, l.DN, err != nil
	}
	return l.ExternalID, l.DN, true
}

// gone1 reports whether link l's directory entry is known to be gone in this run.
func (p *planner) gone1(l state.Link) bool {
	if p.readFull {
		_, seen := p.seen[keyOf(l.ExternalID)]
		return !seen
	}
	for _, d := range p.deletes {
		if (d.ID != "" && d.ID == l.ExternalID) || (d.UUID != "" && (d.UUID == l.SourceUUID || d.UUID == l.ExternalID)) {
			return true
		}
	}
	return false
}

// sourceGone reports whether l's entry no longer exists: known from this run's read, or asked
// of the directory (one lookup by id).
func (p *planner) sourceGone(l state.Link) (bool, error) {
	if p.readFull || p.gone1(l) {
		return p.gone1(l), nil
	}
	if _, seen := p.seen[keyOf(l.ExternalID)]; seen {
		return false, nil
	}
	found := false
	q := p.e.source.UserQuery([]string{"1.1"})
	err := p.e.source.ByIDs(p.ctx, q, []string{l.ExternalID}, func(ldap.Entry) error { found = true; return nil })
	if err != nil {
		return false, fmt.Errorf("sync: %w: look up %s: %w", ErrSourceFailed, l.ExternalID, err)
	}
	return !found, nil
}

// planUser is pass 2 for one mapped entry: name, match, hands-off, diff.
func (p *planner) planUser(d Desired, entry *ldap.Entry) error {
	name, inv := p.claims.result(d)
	if inv != nil {
		return p.plan.add(*inv)
	}
	d.Values["userName"] = name
	vals := p.pay.values(d)
	hash := hashValues(vals)
	it := Item{Kind: KindUser, Name: name, ExternalID: d.ExternalID, DN: d.DN, UUID: d.UUID}
	link, linked, err := p.link(d.ExternalID)
	if err != nil {
		return err
	}
	if !p.reconcile && linked && link.Hash == hash && link.DisabledAt.IsZero() {
		// the target holds what was last applied: trust state, ask the target nothing
		return p.unchanged(d, name, hash, link)
	}
	rec, matchedBy, err := p.match(d, name, link, linked)
	if err != nil {
		return err
	}
	if linked && rec == nil && link.Origin == state.OriginCreated {
		// a user the sync created is nowhere on the target (not by id, externalId or userName):
		// it would be created again
		p.missing++
	}
	it.MatchedBy = matchedBy
	cms := rec != nil && rec.cms
	if off, why := p.e.handsOff(name, d.DN, entry, cms, p.overrides); off {
		it.Action, it.Reason = ActionSkip, why
		if rec != nil {
			it.TargetID = rec.ID()
		}
		return p.plan.add(it)
	}
	if rec == nil {
		return p.planCreate(it, vals, linked)
	}
	it.TargetID = rec.ID()
	if matchedBy == "userName" {
		ok, err := p.mayTake(&it, rec, d)
		if err != nil || !ok {
			return err
		}
	}
	if !rec.take(d.ExternalID) {
		it.Action, it.Reason = ActionSkip, "the target user is already matched to another directory entry"
		return p.plan.add(it)
	}
	it.Adopt = it.Relink == nil && (!linked || link.TargetID != rec.ID())
	if p.reconcile && !it.Adopt && it.Relink == nil && rec.hash == hashKey(hash) && link.DisabledAt.IsZero() {
		return p.unchanged(d, name, hash, link)
	}
	if p.reconcile && linked && !it.Adopt && link.Hash != "" && rec.hash != hashKey(link.Hash) {
		it.Drift = true
	}
	return p.planUpdate(it, vals, hash, rec, link, linked)
}

// match finds d's target user: by its link, by externalId, by userName.
func (p *planner) match(d Desired, name string, link state.Link, linked bool) (*targetRec, string, error) {
	if linked {
		rec, err := p.target.byID(p.ctx, link.TargetID)
		if err != nil || rec != nil {
			return rec, "link", p.targetErr(err)
		}
	}
	if rec, err := p.target.byExternalID(p.ctx, d.ExternalID); err != nil || rec != nil {
		return rec, "externalId", p.targetErr(err)
	}
	rec, err := p.target.byName(p.ctx, name)
	if rec == nil {
		return nil, "", p.targetErr(err)
	}
	return rec, "userName", p.targetErr(err)
}

func (p *planner) targetErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("sync: %w: %w", ErrTargetFailed, err)
}

// mayTake decides whether d may take rec, which was found by userName or carries another
// externalId: it is d's by re-link when it belongs to a managed user whose entry is gone (a
// restore from backup gives every entry a new id), and someone else's otherwise.
func (p *planner) mayTake(it *Item, rec *targetRec, d Desired) (bool, error) {
	owner, owned, err := p.v.LinkByTarget(state.LinkUser, rec.ID())
	if err != nil {
		return false, err
	}
	if owned && owner.ExternalID != d.ExternalID {
		gone, err := p.sourceGone(owner)
		if err != nil {
			return false, err
		}
		if gone && !p.relinked[owner.ExternalID] {
			p.relinked[owner.ExternalID] = true
			p.relinks++
			it.Relink = &Relink{From: owner.ExternalID, To: d.ExternalID}
			it.MatchedBy = "userName"
			it.Reason = fmt.Sprintf("re-linked: externalId %s → %s (the old directory entry is gone)", owner.ExternalID, d.ExternalID)
			return true, nil
		}
		it.Action, it.Reason = ActionSkip, fmt.Sprintf("userName %q is taken on the target by a user scimsync manages for %s", it.Name, owner.DN)
		return false, p.plan.add(*it)
	}
	if rec.otherExternalID(d.ExternalID) {
		it.Action, it.Reason = ActionSkip, fmt.Sprintf("userName %q is taken on the target by another user (externalId %s)", it.Name, scimclient.Sanitize(rec.ExternalID()))
		return false, p.plan.add(*it)
	}
	return true, nil
}

func (p *planner) planCreate(it Item, vals map[string]string, linked bool) error {
	it.Action = ActionCreate
	if linked {
		it.Reason = "was created before but is missing on the target"
	}
	body := p.pay.document(vals)
	if err := scim.ValidateUser(body); err != nil {
		it.Action, it.Attribute, it.Rule, it.Reason = ActionInvalid, err.Attribute, err.Rule, err.Error()
		return p.plan.add(it)
	}
	it.Values, it.Body = vals, body
	return p.plan.add(it)
}

// planUpdate reads the target user whole and plans the operations that make it what the
// directory says, chosen from its current values.
func (p *planner) planUpdate(it Item, vals map[string]string, hash string, rec *targetRec, link state.Link, linked bool) error {
	res, err := p.target.fetch(p.ctx, rec)
	if scimclient.IsStatus(err, http.StatusNotFound) {
		return p.planCreate(it, vals, linked)
	}
	if err != nil {
		return p.targetErr(err)
	}
	built, err := p.build(&it, res, vals)
	if err != nil || !built {
		return err
	}
	if len(it.Operations) == 0 && it.Body == nil && !it.Adopt && it.Relink == nil {
		return p.unchanged(Desired{ExternalID: it.ExternalID, DN: it.DN, UUID: it.UUID}, it.Name, hash, link)
	}
	it.Action = ActionUpdate
	if it.Adopt {
		it.Reason = "exists on the target (matched by " + it.MatchedBy + "): adopting"
	}
	if it.Drift {
		it.Reason = strings.TrimPrefix(it.Reason+"; ", "; ") + "drift: the target no longer holds what scimsync last applied"
	}
	return p.plan.add(it)
}

// build fills it's operations (or PUT body), version and changes from the target's resource.
// It adds an invalid item and reports false when the result would break the model's rules.
func (p *planner) build(it *Item, res scimclient.Resource, vals map[string]string) (bool, error) {
	ops, result, err := scim.Diff(scim.UserIndex(), res.Doc, p.pay.want(vals), p.pay.managed)
	if err != nil {
		it.Action, it.Attribute, it.Rule, it.Reason = ActionInvalid, "User", "patchable", err.Error()
		return false, p.plan.add(*it)
	}
	it.Values, it.Version = vals, res.ETag
	it.Changes = p.pay.changes(p.pay.read(res.Doc), vals)
	if len(ops) == 0 {
		return true, nil
	}
	if err := scim.ValidateUser(result); err != nil {
		it.Action, it.Attribute, it.Rule, it.Reason = ActionInvalid, err.Attribute, err.Rule, err.Error()
		return false, p.plan.add(*it)
	}
	if p.plan.caps.Patch {
		it.Operations = ops
	} else {
		it.Body = putBody(result)
	}
	return true, nil
}

// putBody is a resource as a PUT replaces it: without what the server computes.
func putBody(doc scim.Doc) scim.Doc {
	out := scim.CopyDoc(doc)
	delete(out, "meta")
	delete(out, "groups")
	return out
}

// unchanged counts a user whose target needs nothing, recording in state what changed only
// there (a moved DN the target does not carry, a new name recorded, a re-enabled user).
func (p *planner) unchanged(d Desired, name, hash string, link state.Link) error {
	p.plan.Unchanged++
	if link.ExternalID == "" {
		return nil
	}
	uuid := d.UUID
	if uuid == d.ExternalID {
		uuid = ""
	}
	key := dnKey(d.DN)
	if link.DN == d.DN && link.DNKey == key && link.UserName == name && link.Hash == hash && link.DisabledAt.IsZero() && (uuid == "" || link.SourceUUID == uuid) {
		return nil
	}
	l := link
	l.DN, l.DNKey, l.UserName, l.Hash, l.DisabledAt, l.UpdatedAt = d.DN, key, name, hash, time.Time{}, p.e.now().UTC()
	if uuid != "" {
		l.SourceUUID = uuid
	}
	reason := "state only: the target already holds this"
	if rec, ok := p.recovered[d.ExternalID]; ok {
		reason = rec.Reason
		delete(p.recovered, d.ExternalID)
	}
	return p.plan.add(Item{Kind: KindUser, Action: ActionRefresh, Name: name, ExternalID: d.ExternalID, DN: d.DN,
		TargetID: l.TargetID, Link: &l, Reason: reason})
}

// flushRecovered adds the recovered creates no unchanged user took over: users that need an
// update, or that this read did not see.
func (p *planner) flushRecovered() error {
	for _, ext := range sortedKeys(p.recovered) {
		if err := p.plan.add(p.recovered[ext]); err != nil {
			return err
		}
	}
	p.recovered = nil
	return nil
}

// gone plans the users the sync owns whose entries have left: every link not seen after a full
// read, and the entries a delta reports deleted.
func (p *planner) gone() error {
	if p.readFull {
		var stale []state.Link
		n := 0
		err := p.v.ForEachLink(state.LinkUser, func(l state.Link) error {
			if n++; n%releaseEvery == 0 {
				p.v.Release()
			}
			if _, seen := p.seen[keyOf(l.ExternalID)]; seen || p.relinked[l.ExternalID] {
				return nil
			}
			if ov, ok := p.overlay[l.ExternalID]; ok {
				if ov == nil {
					return nil
				}
				l = *ov
			}
			stale = append(stale, l)
			return nil
		})
		if err != nil {
			return err
		}
		for _, l := range stale {
			if err := p.planGone(l); err != nil {
				return err
			}
		}
		return nil
	}
	done := map[string]bool{}
	for _, d := range p.deletes {
		l, ok, err := p.v.LinkByUUID(state.LinkUser, firstOf(d.UUID, d.ID))
		if err == nil && !ok && d.ID != "" {
			l, ok, err = p.v.Link(state.LinkUser, d.ID)
		}
		if err != nil {
			return err
		}
		if _, seen := p.seen[keyOf(l.ExternalID)]; !ok || done[l.ExternalID] || seen || p.relinked[l.ExternalID] {
			continue // not ours, or still there under another DN, or taken over by a new entry
		}
		done[l.ExternalID] = true
		if err := p.planGone(l); err != nil {
			return err
		}
	}
	return nil
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (p *planner) planGone(l state.Link) error {
	it := Item{Kind: KindUser, Name: l.UserName, ExternalID: l.ExternalID, DN: l.DN, TargetID: l.TargetID}
	rec, err := p.target.byID(p.ctx, l.TargetID)
	if err != nil {
		return p.targetErr(err)
	}
	if rec != nil && !rec.takenBy.empty() && rec.takenBy != keyOf(l.ExternalID) {
		// a new entry matched this target user (by externalId, after a re-link a killed run
		// sent but did not record): it is that entry's now, never deprovisioned for this one
		it.Action, it.Forget = ActionRefresh, true
		it.Link = &l
		it.Reason = "gone from the directory; its target user now belongs to externalId " + rec.takenBy.String()
		return p.plan.add(it)
	}
	if rec == nil {
		it.Action, it.Reason, it.Forget = ActionSkip, "gone from the directory and already gone from the target; forgetting it", true
		return p.plan.add(it)
	}
	if off, why := p.e.handsOff(l.UserName, l.DN, nil, rec.cms, p.overrides); off {
		it.Action, it.Reason = ActionSkip, why+"; not deprovisioned"
		return p.plan.add(it)
	}
	it.Version = rec.etag
	switch p.e.cfg.Deprovision {
	case DeprovisionNone:
		it.Action, it.Reason = ActionSkip, "gone from the directory; sync.deprovision is none"
		return p.plan.add(it)
	case DeprovisionDelete:
		it.Action, it.Reason = ActionDelete, "gone from the directory"
		return p.plan.add(it)
	}
	if rec.Active() != "false" {
		it.Action, it.Reason = ActionDisable, "gone from the directory"
		it.Changes = []Diff{{Attribute: keyActive, Old: "true", New: "false"}}
		if !p.plan.caps.Patch {
			res, err := p.target.fetch(p.ctx, rec)
			if err != nil {
				return p.targetErr(err)
			}
			doc := putBody(res.Doc)
			paths[keyActive].Set(doc, "false")
			it.Body, it.Version = doc, res.ETag
			return p.plan.add(it)
		}
		current := scim.Doc{}
		if rec.Active() != "" {
			current["active"] = rec.Active() == "true"
		}
		ops, _, err := scim.Diff(scim.UserIndex(), current, scim.Values{paths[keyActive]: "false"}, []scim.AttrPath{paths[keyActive]})
		if err != nil {
			return err
		}
		it.Operations = ops
		return p.plan.add(it)
	}
	since := l.DisabledAt
	if since.IsZero() {
		return nil // disabled by someone else; the clock starts when the sync disables it
	}
	if grace := p.e.cfg.DeleteAfter.D(); grace > 0 && p.e.now().Sub(since) >= grace {
		it.Action, it.Reason = ActionDelete, fmt.Sprintf("disabled since %s, past delete_after (%s)", since.Format(time.RFC3339), grace)
		return p.plan.add(it)
	}
	return nil
}

// recoverIntents resolves writes a killed run may have sent without recording them: a create
// found on the target is linked (never sent twice), a disable found done starts the grace
// period, a delete found done forgets the link. What it finds is planned as refresh items, and
// used at once by this plan.
func (p *planner) recoverIntents() error {
	intents, err := p.v.Intents(state.LinkUser)
	if err != nil || len(intents) == 0 {
		return err
	}
	rl := newRemoteLookup(p.e.target, p.pay)
	for _, in := range intents {
		it := Item{Kind: KindUser, Action: ActionRefresh, Name: in.Name, ExternalID: in.ExternalID, DN: in.DN}
		switch in.Action {
		case string(ActionCreate):
			rec, err := rl.byExternalID(p.ctx, in.ExternalID)
			if err == nil && rec == nil {
				rec, err = rl.byName(p.ctx, in.Name)
				if rec != nil && rec.otherExternalID(in.ExternalID) {
					rec = nil
				}
			}
			if err != nil {
				return p.targetErr(err)
			}
			if rec != nil {
				if _, taken, _ := p.v.LinkByTarget(state.LinkUser, rec.ID()); !taken {
					now := p.e.now().UTC()
					l := state.Link{ExternalID: in.ExternalID, TargetID: rec.ID(), UserName: in.Name, DN: in.DN,
						Origin: state.OriginCreated, CreatedAt: in.At, UpdatedAt: now}
					p.overlay[in.ExternalID] = &l
					it.Link, it.TargetID = &l, rec.ID()
					it.Reason = fmt.Sprintf("created by run %d, which stopped before recording it: linked", in.RunID)
					if p.recovered == nil {
						p.recovered = map[string]Item{}
					}
					p.recovered[in.ExternalID] = it
					continue
				}
			}
			it.Reason = fmt.Sprintf("run %d stopped before creating it: nothing to record", in.RunID)
		case string(ActionDisable), string(ActionDelete):
			l, ok, err := p.v.Link(state.LinkUser, in.ExternalID)
			if err != nil {
				return err
			}
			if !ok {
				it.Reason = "no link left: nothing to record"
				break
			}
			rec, err := rl.byID(p.ctx, l.TargetID)
			if err != nil {
				return p.targetErr(err)
			}
			switch {
			case rec == nil:
				p.overlay[in.ExternalID] = nil
				it.Link, it.Forget, it.TargetID = &l, true, l.TargetID
				it.Reason = fmt.Sprintf("%s by run %d, which stopped before recording it: forgetting it", in.Action, in.RunID)
			case in.Action == string(ActionDisable) && rec.Active() == "false" && l.DisabledAt.IsZero():
				l.DisabledAt = in.At
				p.overlay[in.ExternalID] = &l
				it.Link, it.TargetID = &l, l.TargetID
				it.Reason = fmt.Sprintf("disabled by run %d, which stopped before recording it: the grace period runs from then", in.RunID)
			default:
				it.Reason = "nothing to record"
			}
		default:
			it.Reason = "nothing to record: updates are planned again"
		}
		if err := p.plan.add(it); err != nil {
			return err
		}
	}
	return nil
}

// cursorData encodes a directory cursor for state.
func cursorData(c ldap.Cursor) (json.RawMessage, error) { return c.Encode() }
