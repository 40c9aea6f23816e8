package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/scimsync/scimsync/daemon"
	"github.com/scimsync/scimsync/daemon/notify"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/state"
	"github.com/scimsync/scimsync/sync"
)

type syncFlags struct {
	dryRun           bool
	user             string
	allowDeprovision int
	allowRecreate    int
	full             bool
}

func (f syncFlags) options() daemon.SyncOptions {
	return daemon.SyncOptions{DryRun: f.dryRun, User: f.user, AllowDeprovision: f.allowDeprovision,
		AllowRecreate: f.allowRecreate, Full: f.full}
}

const syncLong = `Read the directory, the state file and the target, print the plan (per user: create,
update with attribute diffs, disable, delete, skip with the reason, invalid with the attribute
and rule) and apply it. --dry-run prints the same plan and writes nothing anywhere.

While 'scimsync run' holds the state file, the sync is run by the daemon through its admin
listener (admin.listen, admin.token): --dry-run, --user and --allow-deprovision work the same.

Exit codes: 0 done or nothing to do, 1 error, 2 dry run with changes pending,
3 stopped by a safety rule.`

const syncExample = `  # preview: what would change (exit 2 when something would)
  scimsync sync --dry-run

  # apply, as JSON: one document with the plan and the result
  scimsync sync -o json

  # provision one user now, showing each step
  scimsync sync --user alice

  # a run stopped by the deprovisioning limit said "rerun with --allow-deprovision 12":
  # read the plan, then approve those 12 once
  scimsync sync --dry-run --allow-deprovision 12
  scimsync sync --allow-deprovision 12`

func (a *app) syncCmd() *cobra.Command {
	var f syncFlags
	cmd := &cobra.Command{
		Use:     "sync",
		Short:   "Run one sync now (or --dry-run to only print the plan)",
		Long:    syncLong,
		Example: syncExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.allowDeprovision < 0 || f.allowRecreate < 0 {
				return errors.New("--allow-deprovision and --allow-recreate must be 0 or more")
			}
			return a.sync(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the plan; write nothing to the target or the state file")
	fl.StringVar(&f.user, "user", "", "provision this one userName now, showing each step")
	fl.IntVar(&f.allowDeprovision, "allow-deprovision", 0, "approve up to N disables/deletes/re-links beyond the safety limits, once")
	fl.IntVar(&f.allowRecreate, "allow-recreate", 0, "approve creating again up to N users the sync created that the target lacks, once")
	fl.BoolVar(&f.full, "full", false, "read both sides in full and repair drift (a full reconcile), whether it is due or not")
	return cmd
}

func (a *app) sync(ctx context.Context, f syncFlags) error {
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		// a one-shot sync of a large directory holds a compact record per user for a few
		// seconds (about 60 MiB at 100,000 users with 2,000 groups); a soft limit makes the
		// collector work harder only when the heap nears it, where a lower GOGC would cost CPU
		// on every run. Under that limit a higher GOGC lets the heap grow further between
		// collections while applying, when little is live and every write leaves garbage
		// (GOGC or GOMEMLIMIT choose otherwise)
		debug.SetMemoryLimit(syncMemoryLimit)
		debug.SetGCPercent(syncGCPercent)
	}
	defer profile(ctx)()
	cfg, err := a.load(needLDAP, needTarget)
	if err != nil {
		return err
	}
	log, _, err := a.logger(cfg, a.stderr, "ldap.", "target.", "notify.")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	st, err := state.Open(cfg.State.Path, state.Options{ReadOnly: f.dryRun, LockTimeout: cfg.State.LockTimeout.D()})
	if errors.Is(err, state.ErrLocked) {
		return a.syncViaDaemon(ctx, cfg, f)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	prog := a.progress(log, cfg.Log.ProgressInterval.D())
	out, err := runSync(ctx, cfg, st, log, f.options(), prog, func(p *sync.Plan) error {
		if a.json() {
			return nil // one document, printed at the end
		}
		return a.printPlan(p, f.user != "")
	})
	if out != nil {
		defer out.Plan.Close()
	}
	if !f.dryRun && !errors.Is(err, sync.ErrUserNotFound) && !errors.Is(err, errPrint) {
		a.afterRun(ctx, cfg, st, log, f, out)
	}
	return a.syncResult(f, out, err)
}

// syncMemoryLimit is the sync command's soft heap limit unless GOMEMLIMIT says otherwise.
const syncMemoryLimit = 100 << 20

// syncGCPercent is the sync command's GOGC unless GOGC or GOMEMLIMIT says otherwise. Measured
// with go run ./bench sync -n 20000 -groups 0, the users phase ran at 0.86× the target's raw
// create rate at GOGC 400 against 0.77–0.81× at 100: with the sync on one CPU, collection
// delays its requests.
const syncGCPercent = 400

// errPrint marks a failure to print the plan, which stops the run before it applies anything.
var errPrint = errors.New("print the plan")

// runSync is the CLI's one call site of the sync engine (the daemon's is Daemon.runOnce): open,
// plan, record a failed plan, show the plan (onPlan), apply.
func runSync(ctx context.Context, cfg *fileConfig, st *state.Store, log *zap.Logger, opts daemon.SyncOptions,
	prog *daemon.Progress, onPlan func(*sync.Plan) error) (*daemon.Outcome, error) {
	eng, tgt, err := sync.Open(cfg.sections(), st, log, func(src sync.Source) sync.Source { return progressSource{src, prog} })
	if err != nil {
		return nil, err
	}
	tgt.Observe(func(string, int) { prog.Touch() })
	started := time.Now()
	plan, err := eng.Plan(ctx, opts.PlanOptions())
	if err != nil {
		if !opts.DryRun && !errors.Is(err, sync.ErrUserNotFound) {
			if rerr := eng.RecordFailure(started, err); rerr != nil {
				log.Error("could not record the failed run", zap.Error(rerr))
			}
		}
		return nil, err
	}
	out := &daemon.Outcome{Plan: plan}
	if err := onPlan(plan); err != nil {
		return out, fmt.Errorf("%w: %w", errPrint, err)
	}
	if opts.DryRun {
		out.Stats = tgt.Stats()
		return out, nil
	}
	out.Result, err = eng.Apply(ctx, plan, prog.Apply)
	out.Stats = tgt.Stats()
	return out, err
}

// progressSource tells the run's progress about every directory entry read.
type progressSource struct {
	sync.Source
	prog *daemon.Progress
}

func (p progressSource) Read(ctx context.Context, q ldap.Query, cur *ldap.Cursor, fn func(ldap.Change) error) (ldap.ReadResult, error) {
	return p.Source.Read(ctx, q, cur, func(ch ldap.Change) error {
		p.prog.Read()
		return fn(ch)
	})
}

// progress shows a bar on a terminal, and otherwise logs a line every few seconds (a sync run
// from a systemd timer or cron says how far it is in the journal).
func (a *app) progress(log *zap.Logger, interval time.Duration) *daemon.Progress {
	p := daemon.NewProgress(log, nil, interval)
	if a.quiet || !isTerminal(a.stderr) {
		return p
	}
	var bar *progressbar.ProgressBar
	return p.WithBar(func(done, total int) {
		if bar == nil {
			bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(a.stderr), progressbar.OptionSetDescription("applying"),
				progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("changes"),
				progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(a.stderr) }))
		}
		_ = bar.Set(done)
	})
}

// afterRun records what a run left (failed writes, report file, pruning) and sends the alerts
// it calls for, as the daemon does after its runs.
func (a *app) afterRun(ctx context.Context, cfg *fileConfig, st *state.Store, log *zap.Logger, f syncFlags, out *daemon.Outcome) {
	var plan *sync.Plan
	var res *sync.Result
	if out != nil {
		plan, res = out.Plan, out.Result
	}
	if err := daemon.Bookkeep(st, cfg.State, plan, res, time.Now()); err != nil {
		log.Warn("run history bookkeeping incomplete", zap.Error(err))
	}
	if f.user != "" || len(cfg.Notify.Webhooks) == 0 {
		return // a one-user run says nothing about the directory as a whole
	}
	n, err := notify.New(cfg.Notify, a.build.Version, log, nil)
	if err != nil {
		log.Error("notifications not sent", zap.Error(err))
		return
	}
	runs, err := st.Runs(20)
	if err != nil {
		log.Error("notifications not sent", zap.Error(err))
		return
	}
	for _, ev := range notify.Evaluate(runs, cfg.Notify.InvalidThreshold) {
		_ = n.Send(context.WithoutCancel(ctx), ev) // logged in Send; the run's outcome is what counts
	}
}

// printPlan prints the plan in text: the table, or for one user the steps.
func (a *app) printPlan(p *sync.Plan, oneUser bool) error {
	if oneUser {
		writeSteps(a.stdout, p)
		return nil
	}
	return sync.WriteText(a.stdout, p)
}

// syncResult prints what the run did (text) or the one JSON document, and turns the outcome
// into the error that picks the exit code.
func (a *app) syncResult(f syncFlags, out *daemon.Outcome, err error) error {
	if errors.Is(err, errPrint) {
		return err
	}
	err = a.red.Error(err) // the report's "error" leaves the process
	if a.json() {
		rep, rerr := daemon.NewSyncReport(f.dryRun, out, err)
		if rerr != nil {
			return rerr
		}
		a.printed = true
		if perr := rep.Encode(a.stdout); perr != nil { // the plan streams: it may hold 100,000 items
			return perr
		}
	} else if out != nil && out.Result != nil {
		a.printResult(out.Result, f, err)
	}
	if err != nil {
		return err
	}
	if f.dryRun && out != nil && out.Plan != nil {
		switch {
		case out.Plan.Blocked != nil:
			return fmt.Errorf("dry run: %w: %s", sync.ErrSafetyLimit, out.Plan.Blocked.Message)
		case out.Plan.Pending():
			return errPending
		}
	}
	return nil
}

func (a *app) printResult(res *sync.Result, f syncFlags, err error) {
	fmt.Fprintln(a.stdout, sync.ResultLine(res))
	for _, fail := range res.Failed {
		fmt.Fprintf(a.stdout, "  failed: %s %s: %s\n", fail.Action, fail.UserName, fail.Error)
	}
	if f.user != "" {
		fmt.Fprintf(a.stdout, "result:  %s\n", userResult(res, err))
	}
	if res.RunID > 0 {
		fmt.Fprintf(a.stdout, "details: scimsync runs show %d\n", res.RunID)
	}
}

// syncViaDaemon asks the running daemon, which holds the state file, to run the sync, and
// prints its answer as if the sync had run here.
func (a *app) syncViaDaemon(ctx context.Context, cfg *fileConfig, f syncFlags) error {
	c, err := newAdminClient(cfg)
	if err != nil {
		return err
	}
	if !a.quiet {
		fmt.Fprintf(a.stderr, "the daemon holds %s: asking it (admin listener %s) to run this sync\n", cfg.State.Path, cfg.Admin.Listen)
	}
	q := url.Values{}
	if f.dryRun {
		q.Set("dry_run", "true")
	}
	if f.user != "" {
		q.Set("user", f.user)
	}
	if f.allowDeprovision > 0 {
		q.Set("allow_deprovision", strconv.Itoa(f.allowDeprovision))
	}
	if f.allowRecreate > 0 {
		q.Set("allow_recreate", strconv.Itoa(f.allowRecreate))
	}
	if f.full {
		q.Set("full", "true")
	}
	var rep daemon.SyncReport
	// no timeout of our own: a first sync of a large directory takes as long as it takes
	if err := c.do(ctx, 0, "POST", "/sync?"+q.Encode(), nil, &rep, okStatuses...); err != nil {
		return err
	}
	if a.json() {
		if err := a.emit(rep); err != nil {
			return err
		}
	} else if len(rep.Plan) > 0 {
		var plan sync.Plan
		if err := json.Unmarshal(rep.Plan, &plan); err != nil {
			return fmt.Errorf("daemon: decode the plan: %w", err)
		}
		defer plan.Close()
		if err := a.printPlan(&plan, f.user != ""); err != nil {
			return err
		}
		if rep.Result != nil {
			var rerr error
			if rep.Error != "" {
				rerr = errors.New(rep.Error)
			}
			a.printResult(rep.Result, f, rerr)
		}
	}
	switch rep.Outcome {
	case daemon.OutcomeOK:
		return nil
	case daemon.OutcomePending:
		return errPending
	case daemon.OutcomeStopped:
		return fmt.Errorf("daemon: %w (%s)", sync.ErrSafetyLimit, rep.Error)
	case daemon.OutcomeBusy:
		return errors.New("daemon: a sync is running now; try again when it has finished (scimsync status)")
	case daemon.OutcomeNotFound:
		return fmt.Errorf("daemon: %w (%s)", sync.ErrUserNotFound, rep.Error)
	}
	return fmt.Errorf("daemon: %s", rep.Error)
}

// okStatuses are the admin API answers to POST /sync that carry a SyncReport.
var okStatuses = []int{200, 404, 409, 422, 500}

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
	if res.Adopted > 0 {
		done = append(done, "adopt (the target already held the user)")
	}
	if len(done) == 0 {
		return "nothing to do"
	}
	sort.Strings(done)
	return strings.Join(done, ", ") + " done"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
