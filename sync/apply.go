package sync

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/state"
)

// Result is what a run did. Counts are what the target confirmed, never the requests sent.
type Result struct {
	RunID uint64         `json:"run_id"`
	Done  map[Action]int `json:"done"` // users
	// GroupsDone counts the groups' writes that were done.
	GroupsDone map[Action]int `json:"groups_done,omitempty"`
	Failed     []ItemError    `json:"failed,omitempty"`
	Replanned  int            `json:"replanned,omitempty"` // writes planned again after 412/428/noTarget
	// Adopted counts creates the target answered 409 whose existing user the run then adopted
	// and updated: the target did not create them, so they are not in Done[create].
	Adopted int `json:"adopted,omitempty"`
	// Stopped says why the run stopped dispatching before the end of the plan (its deadline).
	Stopped string `json:"stopped,omitempty"`
	// Phases says how long each apply phase that had writes took.
	Phases []PhaseTime `json:"phases,omitempty"`
}

// PhaseTime is one apply phase: users created and updated, groups, users deprovisioned.
type PhaseTime struct {
	Name    string  `json:"name"`
	Changes int     `json:"changes"` // plan items: a group's create and its member batches are one
	Seconds float64 `json:"seconds"`
}

// ItemError is one resource whose change failed, with what was tried, so the change log can
// record it without the plan.
type ItemError struct {
	Kind       Kind   `json:"kind"`
	UserName   string `json:"userName"`
	ExternalID string `json:"externalId"`
	TargetID   string `json:"targetId,omitempty"`
	Action     Action `json:"action"`
	Changes    []Diff `json:"changes,omitempty"`
	Error      string `json:"error"`
}

// Progress is told how many of the plan's writes are done.
type Progress func(done, total int)

// intentBatch is how many writes share one intent transaction (one fsync); commitLinger how
// long the committer waits for more results before recording a batch.
const (
	intentBatch  = 128
	commitLinger = 50 * time.Millisecond
)

// outcome is one executed item: what to record, or why it failed.
type outcome struct {
	it        Item
	commits   []state.Commit
	err       error
	replanned bool
	noop      bool // nothing needed doing after all (seen when planning again)
	adopted   bool // a create answered 409: the user found was adopted instead
}

// applier is one Apply: the plan, the run, and what the workers share.
type applier struct {
	e       *Engine
	plan    *Plan
	runID   uint64
	etag    atomic.Bool // send If-Match: the target said etag.supported, or answered 428
	mu      gosync.Mutex
	claimed map[string]string // target ids linked in this run -> external id (creates answered alike)
	stop    context.CancelCauseFunc
	// deadline is the run's context: writes cut by sync.max_run_time are not failures, just not
	// done (their intents tell the next run what to look up)
	deadline context.Context
	// refused is the first write the target refused (refusedWrite), set by the commit loops
	refused string
}

// Apply executes plan. Writes are sent by target.concurrency workers; before a batch goes out
// its intents are recorded (one fsync), and results are committed in batches (one fsync for
// many writes), each write's link and change log together. A run stopped at any point (crash,
// SIGTERM, cancelled ctx, sync.max_run_time) leaves state that the next run reconciles without
// duplicating anything. Blocked items are not executed; the error then wraps ErrSafetyLimit.
func (e *Engine) Apply(ctx context.Context, plan *Plan, progress Progress) (*Result, error) {
	started := e.now()
	runID, err := e.store.BeginRun(started)
	if err != nil {
		return nil, err
	}
	a := &applier{e: e, plan: plan, runID: runID, claimed: map[string]string{}}
	a.etag.Store(plan.caps.ETag)
	res := &Result{RunID: runID, Done: map[Action]int{}, GroupsDone: map[Action]int{}}
	outErr := a.refresh()
	if outErr == nil && (plan.Blocked == nil || plan.Blocked.Kind != blockMissing) {
		outErr = a.writes(ctx, res, progress)
	}
	run := state.Run{ID: runID, Started: started, Finished: e.now(), Result: "ok", Counts: map[string]int{}}
	for act, n := range res.Done {
		run.Counts[string(act)] = n
	}
	for act, n := range res.GroupsDone {
		run.Counts["group_"+string(act)] = n
	}
	if res.Adopted > 0 {
		run.Counts["adopted"] = res.Adopted
	}
	run.Counts["unchanged"] = plan.Unchanged
	if plan.GroupsUnchanged > 0 {
		run.Counts["group_unchanged"] = plan.GroupsUnchanged
	}
	run.Counts["skip"] = plan.Summary[ActionSkip]
	run.Counts["invalid"] = plan.Summary[ActionInvalid]
	for _, f := range res.Failed {
		run.Errors = append(run.Errors, f.UserName+": "+f.Error)
	}
	switch {
	case outErr != nil:
		run.Result = "error"
		run.Errors = append(run.Errors, e.redact(outErr.Error()))
	case ctx.Err() != nil:
		run.Result, outErr = "cancelled", fmt.Errorf("sync: run %d cancelled: %w", runID, ctx.Err())
	case len(res.Failed) > 0:
		run.Result, outErr = "error", fmt.Errorf("sync: run %d: %d changes: %w", runID, len(res.Failed), ErrApplyFailed)
	case plan.Blocked != nil:
		run.Result, outErr = "stopped", fmt.Errorf("sync: %w: %s", ErrSafetyLimit, plan.Blocked.Message)
		run.Errors = append(run.Errors, plan.Blocked.Message)
	case res.Stopped != "":
		run.Result = "stopped"
		run.Errors = append(run.Errors, res.Stopped)
	default:
		if err := a.advanceCursor(a.plan.cursor); err != nil {
			outErr = err
		}
		if a.plan.GroupsBlocked == nil {
			if err := a.advanceCursor(a.plan.groupCursor); err != nil {
				outErr = err
			}
		}
	}
	if err := a.keepDiscovery(); err != nil && outErr == nil {
		outErr = err
	}
	if outErr == nil && a.plan.GroupsBlocked != nil {
		run.Result, outErr = "stopped", fmt.Errorf("sync: %w: %s", ErrSafetyLimit, a.plan.GroupsBlocked.Message)
		run.Errors = append(run.Errors, a.plan.GroupsBlocked.Message)
	}
	e.log.Info("apply finished", zap.Uint64("run", runID), zap.String("result", run.Result),
		zap.Int("written", run.Counts["create"]+run.Counts["update"]+run.Counts["disable"]+run.Counts["delete"]),
		zap.Int("failed", len(res.Failed)), zap.Duration("took", e.now().Sub(started)))
	// record the outcome even when ctx is cancelled: it is local and quick
	if err := e.store.FinishRun(run); err != nil && outErr == nil {
		outErr = err
	}
	return res, outErr
}

// keepDiscovery keeps the discovery this run asked the target for, so the delta runs that
// follow need not ask again. A write the target refused forgets any kept one instead: a target
// that refuses what its documents let us send may have changed them, and must not be written
// with stale capabilities until the next full reconcile.
func (a *applier) keepDiscovery() error {
	if a.refused != "" {
		a.e.log.Warn("the target refused a write; its capabilities are read again at the next run",
			zap.String("refused", a.refused))
		return a.e.store.ClearDiscovery()
	}
	if a.plan.fetched == nil {
		return nil
	}
	return a.e.store.SetDiscovery(*a.plan.fetched)
}

// refusedWrite reports whether a write failed in a way that says the target's capabilities may
// have changed: a 501 or 405 (PATCH or the endpoint gone), or a 400 about the request's shape
// (invalidSyntax, invalidPath, noTarget, mutability, or no scimType at all), which is what a
// target answers for an attribute it no longer declares. A 400 about one user's data
// (invalidValue, uniqueness, tooMany, invalidVers, sensitive), a 403 or 413, and the statuses
// about existence, versions, the token or the pace say nothing about the schema: counting them
// would re-read the discovery at every run while one user's bad value keeps failing.
func refusedWrite(err error) bool {
	var ae *scimclient.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Status {
	case http.StatusNotImplemented, http.StatusMethodNotAllowed:
		return true
	case http.StatusBadRequest:
		switch strings.ToLower(ae.ScimType) {
		case "invalidvalue", "uniqueness", "toomany", "invalidvers", "sensitive":
			return false
		}
		return true
	}
	return false
}

// refresh records the plan's state-only items.
func (a *applier) refresh() error {
	var commits []state.Commit
	clear := map[state.LinkKind][]string{}
	err := a.plan.eachOf([]Action{ActionRefresh, ActionSkip}, func(it Item) error {
		switch {
		case it.Action == ActionRefresh && it.Link != nil:
			commits = append(commits, state.Commit{Kind: it.Kind.link(), Link: *it.Link, Forget: it.Forget,
				Change: a.e.change(it, "record")})
		case it.Action == ActionRefresh:
			clear[it.Kind.link()] = append(clear[it.Kind.link()], it.ExternalID)
		case it.Action == ActionSkip && it.Forget:
			commits = append(commits, state.Commit{Kind: it.Kind.link(), Link: state.Link{ExternalID: it.ExternalID}, Forget: true,
				Change: a.e.change(it, "forget")})
		}
		if len(commits) >= 512 {
			err := a.e.store.CommitBatch(a.runID, commits)
			commits = commits[:0]
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := a.e.store.CommitBatch(a.runID, commits); err != nil {
		return err
	}
	for kind, ids := range clear {
		if err := a.e.store.ClearIntents(kind, ids...); err != nil {
			return err
		}
	}
	return nil
}

func isWrite(it Item) bool {
	switch it.Action {
	case ActionCreate, ActionUpdate, ActionDisable, ActionDelete:
		return !it.Blocked
	}
	return false
}

// writes sends the plan's writes: creates and updates, then disables and deletes.
// phases order a run's writes: users are created and updated before the groups that name
// them, and deprovisioned after the groups they leave; each phase is committed before the next
// starts, so a group's member ids are in state when it is sent.
var phases = []struct {
	name    string
	kind    Kind
	actions []Action
}{
	{"users", KindUser, []Action{ActionCreate, ActionUpdate}},
	{"groups", KindGroup, []Action{ActionCreate, ActionUpdate, ActionDelete}},
	{"deprovision", KindUser, []Action{ActionDisable, ActionDelete}},
}

// writes sends the plan's writes, phase by phase.
func (a *applier) writes(ctx context.Context, res *Result, progress Progress) error {
	total := a.plan.writes() // blocked relinks are counted but not sent: progress may end short
	if total == 0 {
		return nil
	}
	deadline := a.plan.deadline
	if deadline.IsZero() {
		deadline = time.Now().Add(a.e.cfg.MaxRunTime.D())
	}
	runCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	a.deadline = runCtx
	stopCtx, stop := context.WithCancelCause(runCtx) // the circuit breaker stops dispatching
	defer stop(nil)
	a.stop = stop
	done := 0
	for _, ph := range phases {
		dispatchErr, err := a.phase(stopCtx, ph.name, ph.kind, ph.actions, res, &done, total, progress)
		if err != nil {
			return err
		}
		if dispatchErr != nil {
			if errors.Is(dispatchErr, scimclient.ErrCircuitOpen) {
				res.Stopped = "the target kept failing, so the run stopped sending: " + a.e.redact(dispatchErr.Error())
				a.e.log.Error(res.Stopped)
				return nil
			}
			if errors.Is(dispatchErr, context.DeadlineExceeded) && ctx.Err() == nil || a.deadline.Err() != nil && ctx.Err() == nil {
				res.Stopped = fmt.Sprintf("sync.max_run_time (%s) reached; the next run goes on from here", a.e.cfg.MaxRunTime.D())
				a.e.log.Warn(res.Stopped)
				return nil
			}
			if errors.Is(dispatchErr, context.Canceled) {
				return nil // reported from ctx by the caller
			}
			return dispatchErr
		}
	}
	return nil
}

// phase sends one phase's writes with target.concurrency workers and commits their outcomes;
// it returns why dispatching stopped early (dispatchErr) apart from a failure to record (err).
func (a *applier) phase(stopCtx context.Context, name string, kind Kind, actions []Action, res *Result, done *int, total int,
	progress Progress) (dispatchErr, err error) {
	count := 0
	for _, act := range actions {
		count += a.plan.Kinds[kind][act]
	}
	if count == 0 {
		return nil, nil
	}
	start := time.Now()
	defer func() {
		res.Phases = append(res.Phases, PhaseTime{Name: name, Changes: count, Seconds: time.Since(start).Seconds()})
	}()
	jobs := make(chan Item)
	results := make(chan outcome, 4*intentBatch)
	var workers gosync.WaitGroup
	for w := 0; w < min(a.e.concurrency, count); w++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for it := range jobs {
				results <- a.execute(stopCtx, it)
			}
		}()
	}
	commitErr := make(chan error, 1)
	go func() { commitErr <- a.commitLoop(results, res, done, total, progress) }()

	// intents are written a batch ahead of dispatch, so their fsync overlaps the writes in
	// flight instead of stalling the workers
	batches := make(chan []Item, 1)
	produced := make(chan error, 1)
	go func() {
		defer close(batches)
		var batch []Item
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			intents := make([]state.Intent, 0, len(batch))
			now := a.e.now().UTC()
			for _, it := range batch {
				intents = append(intents, state.Intent{Kind: it.Kind.link(), Action: string(it.Action), ExternalID: it.ExternalID,
					Name: it.Name, DN: it.DN, TargetID: it.TargetID, RunID: a.runID, At: now})
			}
			if err := a.e.store.PutIntents(intents); err != nil {
				return err
			}
			select {
			case batches <- batch:
			case <-stopCtx.Done():
				return context.Cause(stopCtx)
			}
			batch = nil
			return nil
		}
		size := max(intentBatch, 8*a.e.concurrency)
		err := a.plan.eachOfKind(kind, actions, func(it Item) error {
			if !isWrite(it) {
				return nil
			}
			batch = append(batch, it)
			if len(batch) >= size {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		produced <- err
	}()
	for batch := range batches {
		for _, it := range batch {
			if dispatchErr != nil {
				break
			}
			select {
			case jobs <- it:
			case <-stopCtx.Done():
				dispatchErr = context.Cause(stopCtx)
			}
		}
	}
	if perr := <-produced; dispatchErr == nil {
		dispatchErr = perr
	}
	close(jobs)
	workers.Wait()
	close(results)
	return dispatchErr, <-commitErr
}

// commitLoop records outcomes as they come, many per transaction: it takes whatever has
// arrived while the previous transaction was being written.
func (a *applier) commitLoop(results <-chan outcome, res *Result, done *int, total int, progress Progress) error {
	var failed error
	committed := 0
	for first := range results {
		// linger a moment so one fsync records many writes: a commit per write would compete
		// with the target's own fsyncs on the same disk (intents already cover a crash)
		pending := []outcome{first}
		linger := time.NewTimer(commitLinger)
	drain:
		for len(pending) < 1024 {
			select {
			case o, ok := <-results:
				if !ok {
					break drain
				}
				pending = append(pending, o)
			case <-linger.C:
				break drain
			}
		}
		linger.Stop()
		var commits []state.Commit
		for _, o := range pending {
			commits = append(commits, o.commits...)
		}
		if failed == nil {
			if err := a.e.store.CommitBatch(a.runID, commits); err != nil {
				failed = err // keep draining so the workers never block
			}
			i := 0
			for n := range pending {
				for range pending[n].commits {
					if by := commits[i].RefusedBy; by != "" && pending[n].err == nil {
						pending[n].err = fmt.Errorf("%s %q: the target answered with user %s, which scimsync manages for externalId %s; nothing was linked",
							pending[n].it.Action, pending[n].it.Name, commits[i].Link.TargetID, by)
					}
					i++
				}
			}
			if committed += len(commits); committed >= releaseEvery {
				committed = 0
				_ = a.e.store.ReleaseMappedPages() // see View.Release
			}
		}
		for _, o := range pending {
			*done++
			if o.replanned {
				res.Replanned++
			}
			cut := o.err != nil && errors.Is(o.err, context.DeadlineExceeded) && a.deadline != nil && a.deadline.Err() != nil
			switch {
			case cut:
			case o.err != nil:
				if errors.Is(o.err, scimclient.ErrCircuitOpen) && a.stop != nil {
					a.stop(o.err)
				}
				msg := a.e.redact(o.err.Error())
				if a.refused == "" && refusedWrite(o.err) {
					a.refused = msg
				}
				res.Failed = append(res.Failed, ItemError{Kind: o.it.Kind, UserName: o.it.Name, ExternalID: o.it.ExternalID,
					TargetID: o.it.TargetID, Action: o.it.Action, Changes: o.it.Changes, Error: msg})
				a.e.log.Error("change failed", zap.String("kind", string(o.it.Kind)), zap.String("name", o.it.Name),
					zap.String("action", string(o.it.Action)), zap.String("error", msg))
			case failed == nil && o.adopted:
				res.Adopted++
			case failed == nil && !o.noop:
				if o.it.Kind == KindGroup {
					res.GroupsDone[o.it.Action]++
				} else {
					res.Done[o.it.Action]++
				}
			}
			if progress != nil {
				progress(*done, total)
			}
		}
	}
	return failed
}

// execute sends one item's write and says what to record.
func (a *applier) execute(ctx context.Context, it Item) outcome {
	if err := ctx.Err(); err != nil {
		return outcome{it: it, err: err}
	}
	var o outcome
	switch {
	case it.Kind == KindGroup:
		o = a.group(ctx, it)
	case it.Action == ActionCreate:
		o = a.create(ctx, it)
	case it.Action == ActionUpdate:
		o = a.update(ctx, it)
	case it.Action == ActionDisable:
		o = a.disable(ctx, it)
	case it.Action == ActionDelete:
		o = a.remove(ctx, it)
	}
	o.it = it
	return o
}

func (a *applier) ifMatch(version string) string {
	if a.etag.Load() {
		return version
	}
	return ""
}

// retryable reports whether a write was refused because the target moved on since it was
// planned (412), wants a version (428), or refuses an operation's target (400 noTarget): read
// it again, plan again, send once more.
func (a *applier) retryable(err error) bool {
	var ae *scimclient.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch {
	case ae.Status == http.StatusPreconditionRequired:
		a.etag.Store(true)
		return true
	case ae.Status == http.StatusPreconditionFailed:
		return true
	case ae.Status == http.StatusBadRequest && strings.EqualFold(ae.ScimType, "noTarget"):
		return true
	}
	return false
}

func (a *applier) create(ctx context.Context, it Item) outcome {
	tgt := a.e.target
	r, err := tgt.Create(ctx, scimclient.Users, it.Body)
	if scimclient.IsStatus(err, http.StatusConflict) {
		return a.adoptAfterConflict(ctx, it)
	}
	if errors.Is(err, scimclient.ErrOutcomeUnknown) {
		return a.resolveUnknownCreate(ctx, it, err)
	}
	if err != nil {
		return outcome{err: fmt.Errorf("create %q: %w", it.Name, err)}
	}
	if err := a.verify(it, r); err != nil {
		return outcome{err: fmt.Errorf("create %q: %w; nothing was linked", it.Name, err)}
	}
	now := a.e.now().UTC()
	l := a.linkFor(it, r.ID(), state.OriginCreated, nil, now)
	ch := a.e.change(it, "create")
	ch.TargetID, ch.Old, ch.New = r.ID(), nil, it.Values
	return outcome{commits: []state.Commit{{Kind: state.LinkUser, Link: l, Change: ch, Exclusive: true}}}
}

// verify checks that a create's answer is the user the sync asked for, before linking it: a
// buggy or hostile target answering with another user's id must not make the sync own (and
// later rename, disable or delete) that user.
func (a *applier) verify(it Item, r scimclient.Resource) error {
	id := r.ID()
	if id == "" {
		return errors.New("the target returned no id")
	}
	ext, _ := r.Doc["externalId"].(string)
	name, _ := r.Doc["userName"].(string)
	switch {
	case ext != "" && ext != it.ExternalID:
		return fmt.Errorf("the target answered with user %s, whose externalId is %s, not ours (%s)", id, scimclient.Sanitize(ext), it.ExternalID)
	case ext == "" && !strings.EqualFold(name, it.Name):
		return fmt.Errorf("the target answered with user %s, whose userName is %q, not ours", id, scimclient.Sanitize(name))
	case recordOf(a.plan.payload, r).cms:
		return fmt.Errorf("the target answered with user %s, which is hands-off (managementMode CMS)", id)
	}
	return a.claim(id, it.ExternalID)
}

// claim records that target id is linked to ext in this run, refusing an id another entry of
// this run took. Links of earlier runs are checked when the link is committed (an exclusive
// commit), in the same transaction that writes it.
func (a *applier) claim(id, ext string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if other, ok := a.claimed[id]; ok && other != ext {
		return fmt.Errorf("the target answered with user %s, which this run already linked to externalId %s", id, other)
	}
	a.claimed[id] = ext
	return nil
}

// resolveUnknownCreate handles a create that may or may not have happened (a timeout after
// sending, a 5xx): it is never sent again blindly. The user is looked up: found and ours, it is
// linked as created; not found, the item fails and the intent stays for the next run.
func (a *applier) resolveUnknownCreate(ctx context.Context, it Item, cause error) outcome {
	rl := newRemoteLookup(a.e.target, a.plan.payload)
	rec, err := rl.byExternalID(ctx, it.ExternalID)
	if err != nil {
		return outcome{err: fmt.Errorf("create %q: %w; and the lookup failed: %w", it.Name, cause, err)}
	}
	if rec == nil {
		return outcome{err: fmt.Errorf("create %q: %w; not found on the target: the next run tries again", it.Name, cause)}
	}
	if rec.cms {
		return outcome{err: fmt.Errorf("create %q: exists on the target with managementMode CMS; left alone", it.Name)}
	}
	if err := a.claim(rec.ID(), it.ExternalID); err != nil {
		return outcome{err: fmt.Errorf("create %q: %w", it.Name, err)}
	}
	l := a.linkFor(it, rec.ID(), state.OriginCreated, nil, a.e.now().UTC())
	ch := a.e.change(it, "create")
	ch.TargetID, ch.Old, ch.New = rec.ID(), nil, it.Values
	return outcome{commits: []state.Commit{{Kind: state.LinkUser, Link: l, Change: ch, Exclusive: true}}}
}

// adoptAfterConflict handles a 409 on create: the user exists (created by a run that died
// before recording it, or by someone else). Look it up and adopt it if it is ours to take,
// never loop on 409.
func (a *applier) adoptAfterConflict(ctx context.Context, it Item) outcome {
	rl := newRemoteLookup(a.e.target, a.plan.payload)
	rec, err := rl.byExternalID(ctx, it.ExternalID)
	if err == nil && rec == nil {
		rec, err = rl.byName(ctx, it.Name)
	}
	if err != nil {
		return outcome{err: fmt.Errorf("create %q: 409, and the lookup failed: %w", it.Name, err)}
	}
	switch {
	case rec == nil:
		return outcome{err: fmt.Errorf("create %q: the target reports a conflict but no user with that externalId or userName", it.Name)}
	case rec.otherExternalID(it.ExternalID):
		return outcome{err: fmt.Errorf("create %q: userName taken on the target by externalId %s", it.Name, scimclient.Sanitize(rec.ExternalID()))}
	case rec.cms:
		return outcome{err: fmt.Errorf("create %q: exists on the target with managementMode CMS; left alone", it.Name)}
	}
	if err := a.claim(rec.ID(), it.ExternalID); err != nil {
		return outcome{err: fmt.Errorf("create %q: 409: %w", it.Name, err)}
	}
	adopt := it
	adopt.Action, adopt.TargetID, adopt.Adopt, adopt.Body = ActionUpdate, rec.ID(), true, nil
	// the user found holds what someone else gave it: make it what the directory says before
	// linking it, or state would record values the target does not hold
	adopt, _, err = a.diffCurrent(ctx, adopt)
	if err != nil {
		return outcome{err: fmt.Errorf("create %q: 409, and the user found: %w", it.Name, err)}
	}
	o := a.update(ctx, adopt)
	o.noop, o.adopted = false, o.err == nil
	return o
}

// send writes an update's operations, or its PUT body for a target without PATCH.
func (a *applier) send(ctx context.Context, it Item) (scimclient.Resource, error) {
	if it.Operations != nil {
		return a.e.target.Patch(ctx, scimclient.Users, it.TargetID, it.Operations, a.ifMatch(it.Version))
	}
	return a.e.target.Replace(ctx, scimclient.Users, it.TargetID, it.Body, a.ifMatch(it.Version))
}

func (a *applier) update(ctx context.Context, it Item) outcome {
	var o outcome
	if it.Operations != nil || it.Body != nil {
		_, err := a.send(ctx, it)
		if err != nil && a.retryable(err) {
			o.replanned = true
			again, write, perr := a.replan(ctx, it)
			if perr != nil {
				return outcome{replanned: true, err: fmt.Errorf("update %q: %w; planned again: %w", it.Name, err, perr)}
			}
			err = nil
			if write {
				_, err = a.send(ctx, again)
			}
			it = again
		}
		if err != nil {
			return outcome{replanned: o.replanned, err: fmt.Errorf("update %q: %w", it.Name, err)}
		}
	}
	var prior *state.Link
	origin, action := state.OriginAdopted, "update"
	from := it.ExternalID
	if it.Relink != nil {
		from = it.Relink.From
	}
	cur, ok, err := a.currentLink(from)
	if err != nil {
		return outcome{err: err}
	}
	if ok {
		prior, origin = &cur, cur.Origin
	}
	switch {
	case it.Relink != nil:
		action = "relink"
	case it.Adopt:
		action = "adopt"
	}
	now := a.e.now().UTC()
	l := a.linkFor(it, it.TargetID, origin, prior, now)
	o.commits = []state.Commit{}
	if it.Relink != nil {
		o.commits = append(o.commits, state.Commit{Kind: state.LinkUser, Link: state.Link{ExternalID: it.Relink.From}, Forget: true})
	}
	o.commits = append(o.commits, state.Commit{Kind: state.LinkUser, Link: l, Change: a.e.change(it, action), Exclusive: it.Adopt})
	return o
}

// replan reads the user again and plans its operations anew from what it holds now, with the
// same wanted values; write is false when it already holds them.
func (a *applier) replan(ctx context.Context, it Item) (Item, bool, error) {
	again, write, err := a.diffCurrent(ctx, it)
	if err == nil && write {
		a.e.log.Info("planned again after the target refused a write", zap.String("user", it.Name), zap.Int("operations", len(again.Operations)))
	}
	return again, write, err
}

// diffCurrent reads the user it.TargetID and plans the operations (or PUT body) that make it
// hold its wanted values; write is false when it already holds them.
func (a *applier) diffCurrent(ctx context.Context, it Item) (Item, bool, error) {
	r, err := a.e.target.Get(ctx, scimclient.Users, it.TargetID)
	if err != nil {
		return it, false, err
	}
	rec := recordOf(a.plan.payload, r)
	if rec.cms {
		return it, false, errors.New("it became hands-off (managementMode CMS) on the target")
	}
	if rec.otherExternalID(it.ExternalID) && (it.Relink == nil || rec.otherExternalID(it.Relink.From)) {
		return it, false, fmt.Errorf("it now carries another externalId (%s)", scimclient.Sanitize(rec.ExternalID()))
	}
	p := a.plan.payload
	ops, result, err := scim.Diff(scim.UserIndex(), r.Doc, p.want(it.Values), p.managed)
	if err != nil {
		return it, false, err
	}
	it.Version, it.Operations, it.Body = r.ETag, nil, nil
	if r.ETag != "" {
		a.etag.Store(a.etag.Load() || a.plan.caps.ETag)
	}
	it, write := a.withWrite(it, ops, result)
	return it, write, nil
}

// withWrite puts a re-plan's operations into it: ops, or for a target without PATCH the PUT
// body of result; write is false when there is nothing to send.
func (a *applier) withWrite(it Item, ops []scim.PatchOp, result scim.Doc) (Item, bool) {
	if len(ops) == 0 {
		return it, false
	}
	if a.plan.caps.Patch {
		it.Operations = ops
	} else {
		it.Body = putBody(result)
	}
	return it, true
}

func (a *applier) disable(ctx context.Context, it Item) outcome {
	_, err := a.send(ctx, it)
	if err != nil && a.retryable(err) {
		again, write, perr := a.replanDisable(ctx, it)
		if perr != nil {
			err = perr
		} else if err = nil; write {
			_, err = a.send(ctx, again)
		}
	}
	l, ok, lerr := a.currentLink(it.ExternalID)
	if lerr != nil {
		return outcome{err: lerr}
	}
	if scimclient.IsStatus(err, http.StatusNotFound) {
		return outcome{noop: true, commits: []state.Commit{{Kind: state.LinkUser, Link: l, Forget: true, Change: a.e.change(it, "forget")}}}
	}
	if err != nil {
		return outcome{err: fmt.Errorf("disable %q: %w", it.Name, err)}
	}
	if !ok {
		l = state.Link{ExternalID: it.ExternalID, TargetID: it.TargetID, UserName: it.Name, DN: it.DN, Origin: state.OriginAdopted}
	}
	now := a.e.now().UTC()
	l.DisabledAt, l.UpdatedAt = now, now
	return outcome{commits: []state.Commit{{Kind: state.LinkUser, Link: l, Change: a.e.change(it, "disable")}}}
}

// replanDisable reads a user whose disable was refused and plans it again.
func (a *applier) replanDisable(ctx context.Context, it Item) (Item, bool, error) {
	r, err := a.e.target.Get(ctx, scimclient.Users, it.TargetID)
	if err != nil {
		return it, false, err
	}
	if recordOf(a.plan.payload, r).cms {
		return it, false, errors.New("it became hands-off (managementMode CMS) on the target")
	}
	active := paths[keyActive]
	ops, result, err := scim.Diff(scim.UserIndex(), r.Doc, scim.Values{active: "false"}, []scim.AttrPath{active})
	if err != nil {
		return it, false, err
	}
	it.Version, it.Operations, it.Body = r.ETag, nil, nil
	it, write := a.withWrite(it, ops, result)
	return it, write, nil
}

func (a *applier) remove(ctx context.Context, it Item) outcome {
	err := a.e.target.Delete(ctx, scimclient.Users, it.TargetID, a.ifMatch(it.Version))
	if err != nil && a.retryable(err) {
		var r scimclient.Resource
		if r, err = a.e.target.Get(ctx, scimclient.Users, it.TargetID); err == nil {
			if recordOf(a.plan.payload, r).cms {
				err = errors.New("it became hands-off (managementMode CMS) on the target")
			} else {
				err = a.e.target.Delete(ctx, scimclient.Users, it.TargetID, r.ETag)
			}
		}
		if scimclient.IsStatus(err, http.StatusNotFound) {
			err = nil
		}
	}
	if err != nil {
		return outcome{err: fmt.Errorf("delete %q: %w", it.Name, err)}
	}
	l, _, lerr := a.currentLink(it.ExternalID)
	if lerr != nil {
		return outcome{err: lerr}
	}
	l.ExternalID = it.ExternalID
	return outcome{commits: []state.Commit{{Kind: state.LinkUser, Link: l, Forget: true, Change: a.e.change(it, "delete")}}}
}

func (a *applier) currentLink(ext string) (state.Link, bool, error) {
	var l state.Link
	var ok bool
	err := a.e.store.View(func(v *state.View) error {
		var err error
		l, ok, err = v.Link(state.LinkUser, ext)
		return err
	})
	return l, ok, err
}

func (a *applier) linkFor(it Item, targetID string, origin state.Origin, prior *state.Link, now time.Time) state.Link {
	l := state.Link{ExternalID: it.ExternalID, TargetID: targetID, UserName: it.Name, DN: it.DN, DNKey: dnKey(it.DN),
		Hash: hashValues(it.Values), Origin: origin, CreatedAt: now, UpdatedAt: now}
	if it.UUID != "" && it.UUID != it.ExternalID {
		l.SourceUUID = it.UUID
	}
	if prior != nil && !prior.CreatedAt.IsZero() {
		l.CreatedAt = prior.CreatedAt
	}
	return l
}

// advanceCursor stores the directory cursor the plan's read ended at: every change it covers
// has been applied and committed.
func (a *applier) advanceCursor(cu *cursorUpdate) error {
	if cu == nil {
		return nil
	}
	now := a.e.now().UTC()
	c := cu.prior
	if cu.cursor.Mechanism != "" {
		data, err := cursorData(cu.cursor)
		if err != nil {
			return fmt.Errorf("sync: encode directory cursor: %w", err)
		}
		c.Data, c.UpdatedAt = data, now
	}
	if cu.full {
		c.FullAt, c.Config = now, cu.config
		if cu.listed >= 0 {
			c.TargetUsers = cu.listed
		}
	}
	return a.e.store.SetCursor(cu.kind, c)
}

// RecordFailure stores a run that failed before it could plan (LDAP down, empty read), so
// `scimsync status` shows it.
func (e *Engine) RecordFailure(started time.Time, cause error) error {
	id, err := e.store.BeginRun(started)
	if err != nil {
		return err
	}
	result := "error"
	if errors.Is(cause, ErrEmptySource) {
		result = "stopped"
	}
	return e.store.FinishRun(state.Run{ID: id, Started: started, Finished: e.now(), Result: result, Errors: []string{e.redact(cause.Error())}})
}

func (e *Engine) change(it Item, action string) *state.Change {
	ch := &state.Change{At: e.now().UTC(), Kind: it.Kind.link(), Action: action, ExternalID: it.ExternalID, UserName: it.Name,
		TargetID: it.TargetID, By: "sync"}
	if len(it.Changes) > 0 {
		ch.Old, ch.New = map[string]string{}, map[string]string{}
		for _, d := range it.Changes {
			ch.Old[d.Attribute], ch.New[d.Attribute] = d.Old, d.New
		}
	}
	return ch
}
