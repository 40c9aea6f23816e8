package sync

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	gosync "sync"
	"time"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/state"
)

// Result is what a run did.
type Result struct {
	RunID  uint64         `json:"run_id"`
	Done   map[Action]int `json:"done"`
	Failed []ItemError    `json:"failed,omitempty"`
}

// ItemError is one user whose change failed.
type ItemError struct {
	UserName string `json:"userName"`
	Action   Action `json:"action"`
	Error    string `json:"error"`
}

// Progress is told how many of the plan's writes are done.
type Progress func(done, total int)

// Apply executes plan. Each target write is followed at once by its state commit, so a run
// stopped at any point (crash, SIGTERM, cancelled ctx) leaves state that matches the target
// and the next run converges. Blocked deprovisions are not executed; the returned error then
// wraps ErrSafetyLimit.
func (e *Engine) Apply(ctx context.Context, plan *Plan, progress Progress) (*Result, error) {
	started := e.now()
	runID, err := e.store.BeginRun(started)
	if err != nil {
		return nil, err
	}
	res := &Result{RunID: runID, Done: map[Action]int{}}
	for _, l := range plan.refresh {
		if err := e.store.Commit(0, l, false, state.Change{}); err != nil {
			return nil, err
		}
	}
	for _, it := range plan.Items {
		if it.forget && it.link != nil {
			if err := e.store.Commit(runID, *it.link, true, e.change(it, "forget")); err != nil {
				return nil, err
			}
		}
	}
	var work []Item
	for _, it := range plan.Items {
		switch it.Action {
		case ActionCreate, ActionUpdate, ActionDisable, ActionDelete:
			if !it.Blocked {
				work = append(work, it)
			}
		}
	}
	var (
		mu   gosync.Mutex
		wg   gosync.WaitGroup
		done int
		jobs = make(chan Item)
	)
	for w := 0; w < min(e.concurrency, max(len(work), 1)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range jobs {
				err := e.applyItem(ctx, runID, it, plan.caps)
				mu.Lock()
				done++
				if err != nil {
					res.Failed = append(res.Failed, ItemError{UserName: it.UserName, Action: it.Action, Error: err.Error()})
					e.log.Error("change failed", zap.String("user", it.UserName), zap.String("action", string(it.Action)), zap.Error(err))
				} else {
					res.Done[it.Action]++
				}
				if progress != nil {
					progress(done, len(work))
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, it := range work {
		select {
		case jobs <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()

	run := state.Run{ID: runID, Started: started, Finished: e.now(), Result: "ok", Counts: map[string]int{}}
	for a, n := range res.Done {
		run.Counts[string(a)] = n
	}
	run.Counts["unchanged"] = plan.Unchanged
	run.Counts["skip"] = plan.Summary[ActionSkip]
	run.Counts["invalid"] = plan.Summary[ActionInvalid]
	for _, f := range res.Failed {
		run.Errors = append(run.Errors, f.UserName+": "+f.Error)
	}
	var outErr error
	switch {
	case ctx.Err() != nil:
		run.Result, outErr = "cancelled", fmt.Errorf("sync: run %d cancelled: %w", runID, ctx.Err())
	case len(res.Failed) > 0:
		run.Result, outErr = "error", fmt.Errorf("sync: run %d: %d of %d changes: %w", runID, len(res.Failed), len(work), ErrApplyFailed)
	case plan.Blocked != nil:
		run.Result, outErr = "stopped", fmt.Errorf("sync: %w: %s", ErrSafetyLimit, plan.Blocked.Message)
		run.Errors = append(run.Errors, plan.Blocked.Message)
	}
	// record the outcome even when ctx is cancelled: it is local and quick
	if err := e.store.FinishRun(run); err != nil && outErr == nil {
		outErr = err
	}
	return res, outErr
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
	return e.store.FinishRun(state.Run{ID: id, Started: started, Finished: e.now(), Result: result, Errors: []string{cause.Error()}})
}

func (e *Engine) change(it Item, action string) state.Change {
	ch := state.Change{At: e.now().UTC(), Action: action, ExternalID: it.ExternalID, UserName: it.UserName, TargetID: it.TargetID, By: "sync"}
	if len(it.Changes) > 0 {
		ch.Old, ch.New = map[string]string{}, map[string]string{}
		for _, d := range it.Changes {
			ch.Old[d.Attribute], ch.New[d.Attribute] = d.Old, d.New
		}
	}
	return ch
}

func (e *Engine) applyItem(ctx context.Context, runID uint64, it Item, caps scimclient.Capabilities) error {
	payload := Payload{Extensions: caps.Extensions}
	now := e.now().UTC()
	switch it.Action {
	case ActionCreate:
		doc := payload.Document(*it.desired, nil)
		created, err := e.target.CreateUser(ctx, doc)
		if scimclient.IsStatus(err, http.StatusConflict) {
			return e.adoptAfterConflict(ctx, runID, it, caps)
		}
		if err != nil {
			return err
		}
		it.TargetID, _ = created["id"].(string)
		if it.TargetID == "" {
			return fmt.Errorf("sync: create %q: the target returned no id", it.UserName)
		}
		l := e.linkFor(it, state.OriginCreated, payload, now)
		return e.store.Commit(runID, l, false, e.changeCreate(it, payload))
	case ActionUpdate:
		if len(it.Changes) > 0 {
			if err := e.update(ctx, it, caps); err != nil {
				return err
			}
		}
		origin := state.OriginAdopted
		if it.link != nil {
			origin = it.link.Origin
		}
		action := "update"
		if it.Adopt {
			action = "adopt"
		}
		return e.store.Commit(runID, e.linkFor(it, origin, payload, now), false, e.change(it, action))
	case ActionDisable:
		err := e.update(ctx, it, caps)
		if scimclient.IsStatus(err, http.StatusNotFound) {
			return e.store.Commit(runID, *it.link, true, e.change(it, "forget"))
		}
		if err != nil {
			return err
		}
		l := *it.link
		l.DisabledAt, l.UpdatedAt = now, now
		return e.store.Commit(runID, l, false, e.change(it, "disable"))
	case ActionDelete:
		if err := e.target.DeleteUser(ctx, it.TargetID); err != nil {
			return err
		}
		return e.store.Commit(runID, *it.link, true, e.change(it, "delete"))
	}
	return nil
}

func (e *Engine) update(ctx context.Context, it Item, caps scimclient.Capabilities) error {
	var err error
	if caps.Patch {
		err = e.target.PatchUser(ctx, it.TargetID, patchOps(it.Changes))
	} else {
		err = e.target.ReplaceUser(ctx, it.TargetID, applyDiffs(it.actual, it.Changes))
	}
	if err != nil {
		return fmt.Errorf("sync: update %q: %w", it.UserName, err)
	}
	return nil
}

// adoptAfterConflict handles a 409 on create: the user exists (created by an earlier run that
// died before committing, or by someone else). Look it up and adopt it, never loop on 409.
func (e *Engine) adoptAfterConflict(ctx context.Context, runID uint64, it Item, caps scimclient.Capabilities) error {
	payload := Payload{Extensions: caps.Extensions}
	actual, err := e.target.FindUser(ctx, it.ExternalID, it.UserName)
	if err != nil {
		return fmt.Errorf("sync: create %q: 409, and the lookup failed: %w", it.UserName, err)
	}
	if actual == nil {
		return fmt.Errorf("sync: create %q: the target reports a conflict but no user with that externalId or userName", it.UserName)
	}
	if other, _ := actual["externalId"].(string); other != "" && other != it.ExternalID {
		return fmt.Errorf("sync: create %q: userName taken on the target by externalId %s", it.UserName, other)
	}
	if ext, ok := actual[scim.ScimsyncSchema].(map[string]any); ok && ext["managementMode"] == scim.ModeCMS {
		return fmt.Errorf("sync: create %q: exists on the target with managementMode CMS; left alone", it.UserName)
	}
	it.TargetID, _ = actual["id"].(string)
	it.actual = actual
	it.Changes = payload.diff(e.mapping, *it.desired, actual)
	if len(it.Changes) > 0 {
		if err := e.update(ctx, it, caps); err != nil {
			return err
		}
	}
	it.Adopt = true
	return e.store.Commit(runID, e.linkFor(it, state.OriginAdopted, payload, e.now().UTC()), false, e.change(it, "adopt"))
}

func (e *Engine) linkFor(it Item, origin state.Origin, payload Payload, now time.Time) state.Link {
	l := state.Link{ExternalID: it.ExternalID, TargetID: it.TargetID, UserName: it.UserName, DN: it.DN,
		Origin: origin, CreatedAt: now, UpdatedAt: now}
	if it.link != nil && !it.link.CreatedAt.IsZero() {
		l.CreatedAt = it.link.CreatedAt
	}
	if it.desired != nil {
		l.Hash = hash(payload.values(*it.desired))
	}
	return l
}

func (e *Engine) changeCreate(it Item, payload Payload) state.Change {
	ch := e.change(it, "create")
	ch.New = payload.values(*it.desired)
	return ch
}
