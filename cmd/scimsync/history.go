package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/scimsync/scimsync/daemon"
	"github.com/scimsync/scimsync/state"
)

// readState runs fn on the state file opened read-only; when the daemon holds the file it
// runs viaDaemon with a client of its admin listener instead.
func (a *app) readState(cfg *fileConfig, fn func(*state.Store) error, viaDaemon func(*adminClient) error) error {
	st, err := state.Open(cfg.State.Path, state.Options{ReadOnly: true, LockTimeout: cfg.State.LockTimeout.D()})
	if errors.Is(err, state.ErrLocked) {
		c, cerr := newAdminClient(cfg)
		if cerr != nil {
			return cerr
		}
		return viaDaemon(c)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}

const statusExample = `  scimsync status
  scimsync status -n 30 -o json`

func (a *app) statusCmd() *cobra.Command {
	var limit int
	return withFlags(&cobra.Command{
		Use:   "status",
		Short: "Show managed users, overrides, the daemon's schedule and the last runs",
		Long: `Show the state file's summary and the last runs with their counts and errors. While the
daemon runs, the report comes from its admin listener (with the next run and whether a sync is
running now).`,
		Example: statusExample,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return a.status(cmd.Context(), limit) },
	}, func(c *cobra.Command) { c.Flags().IntVarP(&limit, "limit", "n", 10, "how many runs") })
}

func withFlags(c *cobra.Command, add func(*cobra.Command)) *cobra.Command {
	add(c)
	return c
}

func (a *app) status(ctx context.Context, limit int) error {
	cfg, err := a.load()
	if err != nil {
		return err
	}
	var rep *daemon.StatusReport
	err = a.readState(cfg, func(st *state.Store) error {
		rep = &daemon.StatusReport{FormatVersion: daemon.APIFormatVersion}
		var err error
		if rep.Runs, err = st.Runs(limit); err != nil {
			return err
		}
		links, err := st.Links()
		if err != nil {
			return err
		}
		rep.ManagedUsers = len(links)
		ovs, err := st.Overrides()
		rep.Overrides = daemon.SortedOverrides(ovs)
		rep.OverrideCount = len(rep.Overrides)
		return err
	}, func(c *adminClient) error {
		rep = &daemon.StatusReport{}
		return c.do(ctx, adminTimeout, "GET", "/status", nil, rep)
	})
	if err != nil {
		return err
	}
	if rep.Runs == nil {
		rep.Runs = []state.Run{}
	}
	if a.json() {
		return a.emit(rep)
	}
	fmt.Fprintf(a.stdout, "state: %s — %d managed users, %d overrides\n", cfg.State.Path, rep.ManagedUsers, rep.OverrideCount)
	if !rep.NextRun.IsZero() {
		running := ""
		if rep.Running {
			running = "; a sync is running now"
		}
		fmt.Fprintf(a.stdout, "daemon: schedule %q, next run %s%s\n", rep.Schedule, rep.NextRun.Local().Format(time.DateTime), running)
	}
	if err := printRuns(a.stdout, rep.Runs); err != nil {
		return err
	}
	if rep.Limited {
		_, err = fmt.Fprintln(a.stdout, "(the daemon showed counts only: set admin.token or admin.token_file to see run errors and overrides)")
	}
	return err
}

func printRuns(w io.Writer, runs []state.Run) error {
	if len(runs) == 0 {
		_, err := fmt.Fprintln(w, "no runs yet")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTARTED\tDURATION\tRESULT\tCOUNTS\tERRORS")
	for _, r := range runs {
		errs := ""
		if len(r.Errors) > 0 {
			errs = fmt.Sprintf("%d: %s", len(r.Errors), truncate(r.Errors[0], 80))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Started.Local().Format(time.DateTime), duration(r), r.Result, counts(r), errs)
	}
	return tw.Flush()
}

func duration(r state.Run) string {
	if r.Finished.IsZero() {
		return "-"
	}
	return r.Finished.Sub(r.Started).Round(time.Millisecond).String()
}

func counts(r state.Run) string {
	var out []string
	for _, k := range []string{"create", "update", "disable", "delete", "skip", "invalid", "unchanged",
		"group_create", "group_update", "group_delete"} {
		if r.Counts[k] > 0 {
			out = append(out, fmt.Sprintf("%s=%d", k, r.Counts[k]))
		}
	}
	return strings.Join(out, " ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

const runsExample = `  # the last 20 runs
  scimsync runs
  # every change run 42 made, old → new, with the errors
  scimsync runs show 42
  scimsync runs show 42 -o json`

func (a *app) runsCmd() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List the recorded sync runs (and 'runs show N' for one run's changes)",
		Long: `List the recorded sync runs, newest first, with their counts and errors. Runs are kept for
state.history_retention (90d by default).`,
		Example: runsExample,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return a.runs(cmd.Context(), limit) },
	}
	cmd.Flags().IntVarP(&limit, "limit", "n", 20, "how many runs")
	cmd.AddCommand(&cobra.Command{
		Use:     "show RUN",
		Short:   "Show one run: its outcome and every change it made or tried, old → new",
		Example: "  scimsync runs show 42",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("run must be a number (see scimsync runs), got %q", args[0])
			}
			return a.runShow(cmd.Context(), id)
		},
	})
	return cmd
}

func (a *app) runs(ctx context.Context, limit int) error {
	cfg, err := a.load()
	if err != nil {
		return err
	}
	rep := daemon.RunsReport{FormatVersion: daemon.APIFormatVersion}
	err = a.readState(cfg, func(st *state.Store) error {
		var err error
		rep.Runs, err = st.Runs(limit)
		return err
	}, func(c *adminClient) error {
		return c.do(ctx, adminTimeout, "GET", fmt.Sprintf("/runs?limit=%d", limit), nil, &rep)
	})
	if err != nil {
		return err
	}
	if rep.Runs == nil {
		rep.Runs = []state.Run{}
	}
	if a.json() {
		return a.emit(rep)
	}
	return printRuns(a.stdout, rep.Runs)
}

func (a *app) runShow(ctx context.Context, id uint64) error {
	cfg, err := a.load()
	if err != nil {
		return err
	}
	var rep *daemon.RunReport
	err = a.readState(cfg, func(st *state.Store) error {
		var err error
		rep, err = daemon.LoadRunReport(st, id)
		if errors.Is(err, state.ErrNotFound) {
			return fmt.Errorf("no run %d (see scimsync runs; runs older than state.history_retention are pruned)", id)
		}
		return err
	}, func(c *adminClient) error {
		rep = &daemon.RunReport{}
		return c.do(ctx, adminTimeout, "GET", fmt.Sprintf("/runs/%d", id), nil, rep)
	})
	if err != nil {
		return err
	}
	if a.json() {
		return a.emit(rep)
	}
	r := rep.Run
	fmt.Fprintf(a.stdout, "run %d: %s, started %s, took %s\n", r.ID, r.Result, r.Started.Local().Format(time.DateTime), duration(r))
	if c := counts(r); c != "" {
		fmt.Fprintf(a.stdout, "counts: %s\n", c)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(a.stdout, "error: %s\n", e)
	}
	if len(rep.Changes) == 0 {
		_, err := fmt.Fprintln(a.stdout, "no changes recorded")
		return err
	}
	fmt.Fprintln(a.stdout)
	return printChanges(a.stdout, rep.Changes, false)
}

const historyExample = `  # every change to alice across runs: time, run, action, attribute old → new, result
  scimsync history alice
  # by externalId (the directory's entryUUID / objectGUID) works too
  scimsync history 5a1e0000-0000-4000-8000-000000000020
  scimsync history alice -n 10 -o json`

func (a *app) historyCmd() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "history USER",
		Short: "Show every change to one user across runs, old → new, with the result",
		Long: `Show every change the sync made (or tried and failed) to one user: when, in which run, the
action, each attribute's old and new value, and the result or error. USER is a userName
(case-insensitive; earlier names of a renamed user lead to the same history) or an externalId.
History is kept for state.history_retention (90d by default).`,
		Example: historyExample,
		Args:    cobra.ExactArgs(1),
		RunE:    func(cmd *cobra.Command, args []string) error { return a.history(cmd.Context(), args[0], limit) },
	}
	cmd.Flags().IntVarP(&limit, "limit", "n", 100, "show at most the last N changes")
	return cmd
}

func (a *app) history(ctx context.Context, user string, limit int) error {
	cfg, err := a.load()
	if err != nil {
		return err
	}
	rep := daemon.HistoryReport{FormatVersion: daemon.APIFormatVersion, User: user}
	err = a.readState(cfg, func(st *state.Store) error {
		var err error
		rep.Changes, err = st.History(user, limit)
		return err
	}, func(c *adminClient) error {
		return c.do(ctx, adminTimeout, "GET", fmt.Sprintf("/history/%s?limit=%d", url.PathEscape(user), limit), nil, &rep)
	})
	if err != nil {
		return err
	}
	if rep.Changes == nil {
		rep.Changes = []state.HistoryEntry{}
	}
	if a.json() {
		return a.emit(rep)
	}
	if len(rep.Changes) == 0 {
		keep := "forever"
		if d := cfg.State.HistoryRetention.D(); d > 0 {
			keep = "for " + formatDays(d)
		}
		_, err := fmt.Fprintf(a.stdout, "no recorded changes for %s (history is kept %s)\n", user, keep)
		return err
	}
	return printChanges(a.stdout, rep.Changes, true)
}

func formatDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// printChanges prints change-log entries: one line per attribute, old → new; withRun adds the
// run column (history spans runs; `runs show` is one run).
func printChanges(w io.Writer, entries []state.HistoryEntry, withRun bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "TIME\tRUN\tUSER\tACTION\tRESULT\tATTRIBUTE\tOLD → NEW"
	if !withRun {
		head = strings.Replace(head, "RUN\t", "", 1)
	}
	fmt.Fprintln(tw, head)
	for _, e := range entries {
		result := "done"
		if e.Error != "" {
			result = "failed"
		}
		lead := []string{e.At.Local().Format(time.DateTime)}
		if withRun {
			lead = append(lead, strconv.FormatUint(e.Run, 10))
		}
		lead = append(lead, orDash(e.UserName), e.Action, result)
		blank := strings.Repeat("\t", len(lead))
		attrs := changedAttributes(e.Change)
		if len(attrs) == 0 {
			fmt.Fprintf(tw, "%s\t-\t\n", strings.Join(lead, "\t"))
		}
		for i, at := range attrs {
			prefix := blank
			if i == 0 {
				prefix = strings.Join(lead, "\t") + "\t"
			}
			fmt.Fprintf(tw, "%s%s\t%s → %s\n", prefix, at, quoteOrNone(e.Old[at]), quoteOrNone(e.New[at]))
		}
		if e.Error != "" {
			fmt.Fprintf(tw, "%serror: %s\t\n", blank, e.Error)
		}
	}
	return tw.Flush()
}

func changedAttributes(ch state.Change) []string {
	seen := map[string]bool{}
	for k := range ch.Old {
		seen[k] = true
	}
	for k := range ch.New {
		seen[k] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func quoteOrNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return strconv.Quote(s)
}
