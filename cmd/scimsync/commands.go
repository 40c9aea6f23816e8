package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scimsync/scimsync/daemon"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/scimserver"
	"github.com/scimsync/scimsync/state"
)

func cmdServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs, path := newFlags("serve", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path, needServer)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	st, err := state.Open(cfg.State.Path, state.Options{LockTimeout: cfg.State.LockTimeout.D()})
	if err != nil {
		return err
	}
	defer st.Close()
	srv, err := scimserver.NewServer(cfg.Server, st, log)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return srv.Stop(sctx)
}

func openForCLI(cfg *fileConfig, readOnly bool) (*state.Store, error) {
	return state.Open(cfg.State.Path, state.Options{ReadOnly: readOnly, LockTimeout: cfg.State.LockTimeout.D()})
}

// statusReport reads the report from the state file, or from the running daemon when it holds
// the file's lock.
func statusReport(cfg *fileConfig, limit int) (*daemon.StatusReport, error) {
	st, err := openForCLI(cfg, true)
	if errors.Is(err, state.ErrLocked) {
		a, aerr := newAdminClient(cfg)
		if aerr != nil {
			return nil, aerr
		}
		var rep daemon.StatusReport
		if err := a.do(http.MethodGet, "/status", nil, &rep); err != nil {
			return nil, err
		}
		return &rep, nil
	}
	if err != nil {
		return nil, err
	}
	defer st.Close()
	rep := &daemon.StatusReport{Overrides: []state.Override{}}
	if rep.Runs, err = st.Runs(limit); err != nil {
		return nil, err
	}
	links, err := st.Links()
	if err != nil {
		return nil, err
	}
	rep.ManagedUsers = len(links)
	ovs, err := st.Overrides()
	if err != nil {
		return nil, err
	}
	for _, o := range ovs {
		rep.Overrides = append(rep.Overrides, o)
	}
	return rep, nil
}

func cmdStatus(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := newFlags("status", stderr)
	output := fs.String("output", "text", "text or json")
	limit := fs.Int("n", 10, "how many runs")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	rep, err := statusReport(cfg, *limit)
	if err != nil {
		return err
	}
	if *output == "json" {
		return json.NewEncoder(stdout).Encode(rep)
	}
	fmt.Fprintf(stdout, "state: %s — %d managed users, %d overrides\n", cfg.State.Path, rep.ManagedUsers, len(rep.Overrides))
	if !rep.NextRun.IsZero() {
		running := ""
		if rep.Running {
			running = "; a sync is running now"
		}
		fmt.Fprintf(stdout, "daemon: schedule %q, next run %s%s\n", rep.Schedule, rep.NextRun.Local().Format(time.DateTime), running)
	}
	if len(rep.Runs) == 0 {
		fmt.Fprintln(stdout, "no runs yet")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTARTED\tDURATION\tRESULT\tCOUNTS\tERRORS")
	for _, r := range rep.Runs {
		dur := "-"
		if !r.Finished.IsZero() {
			dur = r.Finished.Sub(r.Started).Round(time.Millisecond).String()
		}
		var counts []string
		for _, k := range []string{"create", "update", "disable", "delete", "skip", "invalid", "unchanged"} {
			if r.Counts[k] > 0 {
				counts = append(counts, fmt.Sprintf("%s=%d", k, r.Counts[k]))
			}
		}
		errs := ""
		if len(r.Errors) > 0 {
			errs = fmt.Sprintf("%d: %s", len(r.Errors), truncate(r.Errors[0], 80))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Started.Local().Format(time.DateTime), dur, r.Result, strings.Join(counts, " "), errs)
	}
	return tw.Flush()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func cmdOverride(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := newFlags("override", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprintln(stderr, "usage: scimsync override [--config F] set USER CMS|DEFAULT | clear USER | list")
		return errUsage
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	st, err := openForCLI(cfg, rest[0] == "list")
	if errors.Is(err, state.ErrLocked) {
		return overrideViaDaemon(cfg, rest, stdout, stderr)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	switch {
	case rest[0] == "set" && len(rest) == 3:
		mode, err := state.ParseMode(rest[2])
		if err != nil {
			return err
		}
		if err := st.SetOverride(rest[1], mode, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s is now %s; the next sync will honour it\n", rest[1], mode)
	case rest[0] == "clear" && len(rest) == 2:
		if err := st.ClearOverride(rest[1]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "override for %s cleared\n", rest[1])
	case rest[0] == "list" && len(rest) == 1:
		ovs, err := st.Overrides()
		if err != nil {
			return err
		}
		list := make([]state.Override, 0, len(ovs))
		for _, o := range ovs {
			list = append(list, o)
		}
		return printOverrides(stdout, list)
	default:
		fmt.Fprintln(stderr, "usage: scimsync override [--config F] set USER CMS|DEFAULT | clear USER | list")
		return errUsage
	}
	return nil
}

func printOverrides(w io.Writer, list []state.Override) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tMODE\tSET")
	for _, o := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", o.UserName, o.Mode, o.SetAt.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

// overrideViaDaemon asks the running daemon, which holds the state file, to record the override.
func overrideViaDaemon(cfg *fileConfig, rest []string, stdout, stderr io.Writer) error {
	a, err := newAdminClient(cfg)
	if err != nil {
		return err
	}
	switch {
	case rest[0] == "list" && len(rest) == 1:
		var rep daemon.StatusReport
		if err := a.do(http.MethodGet, "/status", nil, &rep); err != nil {
			return err
		}
		return printOverrides(stdout, rep.Overrides)
	case rest[0] == "set" && len(rest) == 3, rest[0] == "clear" && len(rest) == 2:
		body := map[string]string{"user": rest[1]}
		if rest[0] == "set" {
			body["mode"] = rest[2]
		}
		var out map[string]string
		if err := a.do(http.MethodPost, "/overrides", body, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: override recorded by the running daemon\n", rest[1])
		return nil
	}
	fmt.Fprintln(stderr, "usage: scimsync override [--config F] set USER CMS|DEFAULT | clear USER | list")
	return errUsage
}

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := newFlags("check", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path, needLDAP, needTarget)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "config: %s is valid\n", *path)
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	var failed []string
	src, err := ldap.New(cfg.LDAP)
	if err == nil {
		if w := src.InsecureWarning(); w != "" {
			fmt.Fprintf(stdout, "warning: %s\n", w)
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var n int
		n, err = src.Check(cctx)
		cancel()
		if err == nil {
			fmt.Fprintf(stdout, "ldap: bound to %s; the first page under %s has %d users matching %s\n", cfg.LDAP.URL, cfg.LDAP.BaseDN, n, cfg.LDAP.UserFilter)
		}
	}
	if err != nil {
		fmt.Fprintf(stdout, "ldap: FAILED: %v\n", err)
		failed = append(failed, "ldap")
	}
	tgt, err := scimclient.NewClient(cfg.Target, log)
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var caps scimclient.Capabilities
		caps, err = tgt.Discover(cctx)
		cancel()
		if err == nil {
			var exts []string
			for e := range caps.Extensions {
				exts = append(exts, e)
			}
			fmt.Fprintf(stdout, "target: %s answers; PATCH %s; User extensions: %s\n", cfg.Target.URL,
				map[bool]string{true: "supported", false: "not supported (PUT is used)"}[caps.Patch], orDash(strings.Join(exts, ", ")))
		}
	}
	if err != nil {
		fmt.Fprintf(stdout, "target: FAILED: %v\n", err)
		failed = append(failed, "target")
	}
	if len(failed) > 0 {
		return fmt.Errorf("check failed: %s", strings.Join(failed, ", "))
	}
	return nil
}
