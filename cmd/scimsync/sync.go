package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/state"
	"github.com/scimsync/scimsync/sync"
)

type syncFlags struct {
	dryRun           bool
	output           string
	user             string
	allowDeprovision int
	full             bool
}

func cmdSync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := newFlags("sync", stderr)
	var f syncFlags
	fs.BoolVar(&f.dryRun, "dry-run", false, "print the plan; write nothing to the target or the state file")
	fs.StringVar(&f.output, "output", "text", "plan format: text or json")
	fs.StringVar(&f.user, "user", "", "provision this one userName now, showing each step")
	fs.IntVar(&f.allowDeprovision, "allow-deprovision", 0, "allow up to N disables/deletes beyond the safety limits, once")
	fs.BoolVar(&f.full, "full", false, "read both sides in full and repair drift (a full reconcile), whether it is due or not")
	if err := parse(fs, args); err != nil {
		return err
	}
	if f.output != "text" && f.output != "json" {
		fmt.Fprintln(stderr, "--output must be text or json")
		return errUsage
	}
	cfg, err := loadConfig(*path, needLDAP, needTarget)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	return syncOnce(ctx, cfg, f, log, stdout, stderr)
}

// syncOnce plans and (unless dry) applies one run; shared by `sync` and `demo`.
func syncOnce(ctx context.Context, cfg *fileConfig, f syncFlags, log *zap.Logger, stdout, stderr io.Writer) error {
	st, err := state.Open(cfg.State.Path, state.Options{ReadOnly: f.dryRun, LockTimeout: cfg.State.LockTimeout.D()})
	if err != nil {
		return err
	}
	defer st.Close()
	eng, tgt, err := sync.Open(cfg.sections(), st, log, nil)
	if err != nil {
		return err
	}
	started := time.Now()
	plan, err := eng.Plan(ctx, sync.PlanOptions{OnlyUser: f.user, AllowDeprovision: f.allowDeprovision, Full: f.full})
	if err != nil {
		if !f.dryRun && !errors.Is(err, sync.ErrUserNotFound) {
			if rerr := eng.RecordFailure(started, err); rerr != nil {
				log.Error("could not record the failed run", zap.Error(rerr))
			}
		}
		return err
	}
	defer plan.Close()
	if f.user != "" && f.output == "text" {
		writeSteps(stdout, plan)
	} else if err := writePlan(stdout, plan, f.output); err != nil {
		return err
	}
	if f.dryRun {
		switch {
		case plan.Blocked != nil:
			return fmt.Errorf("dry run: %w: %s", sync.ErrSafetyLimit, plan.Blocked.Message)
		case plan.Pending():
			return errPending
		}
		return nil
	}
	var progress sync.Progress
	if isTerminal(stderr) {
		progress = func(done, total int) {
			fmt.Fprintf(stderr, "\rapplying: %d/%d", done, total)
			if done == total {
				fmt.Fprintln(stderr)
			}
		}
	}
	res, err := eng.Apply(ctx, plan, progress)
	if res != nil {
		st := tgt.Stats()
		if f.output == "json" {
			_ = json.NewEncoder(stdout).Encode(struct {
				*sync.Result
				SCIMRequests int64 `json:"scim_requests"`
				SCIMWrites   int64 `json:"scim_writes"`
				Retries      int64 `json:"scim_retries"`
			}{res, st.Requests, st.Writes, st.Retries})
		} else {
			fmt.Fprintln(stdout, sync.ResultLine(res))
			for _, fail := range res.Failed {
				fmt.Fprintf(stdout, "  failed: %s %s: %s\n", fail.Action, fail.UserName, fail.Error)
			}
		}
		if f.user != "" && f.output == "text" {
			fmt.Fprintf(stdout, "result:  %s\n", userResult(res, err))
		}
	}
	return err
}

func writePlan(w io.Writer, plan *sync.Plan, format string) error {
	if format == "json" {
		return sync.WriteJSON(w, plan)
	}
	return sync.WriteText(w, plan)
}

// writeSteps prints the on-demand trace of one user: found, mapped, matched, action.
func writeSteps(w io.Writer, plan *sync.Plan) {
	for _, it := range plan.Items() {
		fmt.Fprintf(w, "found:   %s (externalId %s)\n", it.DN, it.ExternalID)
		if it.Action == sync.ActionInvalid {
			fmt.Fprintf(w, "mapped:  no: %s breaks %q: %s\n", it.Attribute, it.Rule, it.Reason)
		} else {
			fmt.Fprintf(w, "mapped:  userName %q\n", it.Name)
		}
		switch {
		case it.TargetID == "":
			fmt.Fprintln(w, "matched: not on the target")
		default:
			fmt.Fprintf(w, "matched: target id %s (by %s)\n", it.TargetID, orDash(it.MatchedBy))
		}
		fmt.Fprintf(w, "action:  %s", it.Action)
		if it.Reason != "" && it.Action != sync.ActionInvalid {
			fmt.Fprintf(w, " (%s)", it.Reason)
		}
		fmt.Fprintln(w)
		for _, d := range it.Changes {
			fmt.Fprintf(w, "           %s: %q → %q\n", d.Attribute, d.Old, d.New)
		}
	}
	if len(plan.Items()) == 0 {
		fmt.Fprintln(w, "action:  none (already up to date)")
	}
}

func userResult(res *sync.Result, err error) string {
	if err != nil {
		return "failed: " + err.Error()
	}
	var done []string
	for a, n := range res.Done {
		if n > 0 {
			done = append(done, string(a))
		}
	}
	if len(done) == 0 {
		return "nothing to do"
	}
	return strings.Join(done, ", ") + " done"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
