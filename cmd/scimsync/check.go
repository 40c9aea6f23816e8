package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/state"
)

const checkLong = `Check everything a command would check before it starts, in one pass: every problem of the
config file (unknown keys with the nearest valid one, wrong types, invalid values, the schedule
'run' would refuse), every secret file (missing, empty, unreadable, readable by group or
others), then bind to the directory and search its first page, read the target's
/ServiceProviderConfig, and look at the state file. It ends by saying what to do next.

Exit codes: 0 all good (warnings allowed), 1 something must be fixed.`

const checkExample = `  scimsync check
  scimsync check -c /etc/scimsync/site.yaml -o json`

// checkItem is one line of the check report.
type checkItem struct {
	Name    string `json:"name"`
	Status  string `json:"status"` // ok | warning | failed | skipped
	Message string `json:"message"`
}

// checkProblem is a config problem in the check report.
type checkProblem struct {
	Path    string `json:"path"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

// checkReport is `check -o json`.
type checkReport struct {
	FormatVersion int            `json:"format_version"`
	Config        string         `json:"config"`
	Valid         bool           `json:"valid"`
	Problems      []checkProblem `json:"problems"`
	Checks        []checkItem    `json:"checks"`
	Next          []string       `json:"next"`
	OK            bool           `json:"ok"`
}

// redact removes every secret of the file from the report's messages: they quote what the
// directory and the target answered, and values of the file.
func (r *checkReport) redact(red *config.Redactor) {
	for i := range r.Problems {
		r.Problems[i].Message = red.Redact(r.Problems[i].Message)
	}
	for i := range r.Checks {
		r.Checks[i].Message = red.Redact(r.Checks[i].Message)
	}
}

func (r *checkReport) add(name, status, format string, args ...any) {
	r.Checks = append(r.Checks, checkItem{Name: name, Status: status, Message: fmt.Sprintf(format, args...)})
}

func (a *app) checkCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "check",
		Short:   "Validate the config and secret files, test the directory, the target and the state file",
		Long:    checkLong,
		Example: checkExample,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return a.check(cmd.Context()) },
	}
}

func (a *app) check(ctx context.Context) error {
	rep := &checkReport{FormatVersion: formatVersion, Config: a.configPath, Problems: []checkProblem{}, Checks: []checkItem{}, Next: []string{}}
	f, err := config.ReadFile(a.configPath)
	if err != nil {
		return err // unreadable or not YAML at all: nothing else can be checked
	}
	// validate what every command would: the sections present, and run's own checks when the
	// file is for a sync (schedule, admin listener)
	var need []section
	if f.Line("ldap") > 0 || f.Line("target") > 0 {
		need = append(need, needLDAP, needTarget, needDaemon)
	}
	if f.Line("server") > 0 {
		need = append(need, needServer)
	}
	cfg, err := decodeConfig(f, need...)
	if cfg != nil {
		a.red = cfg.Log.redact
	}
	var ps config.Problems
	switch {
	case errors.As(err, &ps):
		for _, p := range ps {
			rep.Problems = append(rep.Problems, checkProblem{Path: p.Path, Line: p.Line, Message: p.Msg})
		}
	case err != nil:
		return err
	}
	rep.Valid = len(rep.Problems) == 0
	failed := !rep.Valid
	if len(need) == 0 && rep.Valid {
		rep.add("config", "warning", "no ldap, target or server section: no command has anything to do")
	}

	if cfg != nil {
		for _, sf := range cfg.secretFiles() {
			switch err := config.CheckSecretFile(sf.Path); {
			case err == nil:
				rep.add(sf.Key, "ok", "%s", sf.Path)
			case errors.Is(err, config.ErrLoosePermissions):
				rep.add(sf.Key, "warning", "%v", err)
			default:
				rep.add(sf.Key, "failed", "%v", err)
				failed = true
			}
		}
	}
	if rep.Valid && cfg.has("ldap") {
		failed = a.checkLDAP(ctx, cfg, rep) || failed
	}
	if rep.Valid && cfg.has("ldap") && cfg.has("groups") {
		failed = a.checkGroups(ctx, cfg, rep) || failed
	}
	if rep.Valid && cfg.has("target") {
		failed = a.checkTarget(ctx, cfg, rep) || failed
	}
	if rep.Valid {
		a.checkState(cfg, rep)
	}
	rep.OK = !failed
	rep.Next = nextSteps(a.configPath, cfg, rep, failed)
	rep.redact(a.red)
	if a.json() {
		if err := a.emit(rep); err != nil {
			return err
		}
	} else {
		a.printCheck(rep)
	}
	if failed {
		return errors.New("check failed: fix what is marked above and run scimsync check again")
	}
	return nil
}

func (a *app) checkLDAP(ctx context.Context, cfg *fileConfig, rep *checkReport) (failed bool) {
	src, err := ldap.New(cfg.LDAP)
	if err == nil {
		if w := src.InsecureWarning(); w != "" {
			rep.add("ldap", "warning", "%s", w)
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var n int
		n, err = src.Check(cctx)
		cancel()
		if err == nil {
			rep.add("ldap", "ok", "bound to %s; the first page under %s has %d users matching %s", cfg.LDAP.URL, cfg.LDAP.BaseDN, n, cfg.LDAP.UserFilter)
			if n == 0 {
				rep.add("ldap", "warning", "no user matches: check ldap.base_dn and ldap.user_filter")
			}
			return false
		}
	}
	rep.add("ldap", "failed", "%v", err)
	return true
}

// checkGroups reads the groups the groups: section selects and counts them and the member
// values they hold: what a sync would work through.
func (a *app) checkGroups(ctx context.Context, cfg *fileConfig, rep *checkReport) (failed bool) {
	src, err := ldap.New(cfg.LDAP)
	if err == nil {
		g := cfg.Groups
		id := g.IDAttribute
		if id == "" {
			id = cfg.LDAP.IDAttribute
		}
		q := ldap.Query{BaseDN: g.BaseDN, Scope: g.Scope, Filter: g.Filter, Attributes: g.MemberAttributes, IDAttribute: id}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		groups, members := 0, 0
		err = src.Search(cctx, q, "", func(e ldap.Entry) error {
			groups++
			for _, attr := range g.MemberAttributes {
				members += len(e.Attrs[strings.ToLower(attr)])
			}
			return nil
		})
		cancel()
		if err == nil {
			rep.add("groups", "ok", "%d groups under %s match %s, with %d member values (nesting: %s)", groups, g.BaseDN, g.Filter, members, orDash(g.Nesting))
			if groups == 0 {
				rep.add("groups", "warning", "no group matches: check groups.base_dn and groups.filter")
			}
			return false
		}
	}
	rep.add("groups", "failed", "%v", err)
	return true
}

func (a *app) checkTarget(ctx context.Context, cfg *fileConfig, rep *checkReport) (failed bool) {
	tgt, err := scimclient.NewClient(cfg.Target, zap.NewNop(), scimclient.WithRedactor(cfg.Log.redact))
	if err == nil {
		if w := tgt.InsecureWarning(); w != "" {
			rep.add("target", "warning", "%s", w)
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var caps scimclient.Capabilities
		caps, err = tgt.Discover(cctx)
		cancel()
		if err == nil {
			var exts []string
			for e := range caps.Extensions {
				exts = append(exts, e)
			}
			sort.Strings(exts)
			patch := "not supported (PUT is used)"
			if caps.Patch {
				patch = "supported"
			}
			rep.add("target", "ok", "%s answers; PATCH %s; User extensions: %s", cfg.Target.URL, patch, orDash(strings.Join(exts, ", ")))
			if cfg.has("groups") && caps.Groups == nil {
				rep.add("target", "warning", "the target declares no Group resource type: groups will not be synced")
			}
			return false
		}
	}
	rep.add("target", "failed", "%v", err)
	return true
}

// checkState looks at the state file without changing it: a problem there is reported, but a
// missing file is normal before the first sync.
func (a *app) checkState(cfg *fileConfig, rep *checkReport) {
	st, err := state.Open(cfg.State.Path, state.Options{ReadOnly: true, LockTimeout: cfg.State.LockTimeout.D()})
	switch {
	case errors.Is(err, state.ErrLocked):
		rep.add("state", "ok", "%s is held by the running daemon (scimsync status asks it)", cfg.State.Path)
		return
	case errors.Is(err, state.ErrReadOnly):
		rep.add("state", "warning", "%v", err)
		return
	case err != nil:
		rep.add("state", "failed", "%v", err)
		return
	}
	defer st.Close()
	links, err := st.Links()
	if err != nil {
		rep.add("state", "failed", "%v", err)
		return
	}
	runs, _ := st.Runs(1)
	switch {
	case len(runs) == 0 && len(links) == 0:
		rep.add("state", "ok", "%s: no sync yet (the first sync creates it)", cfg.State.Path)
	case len(runs) == 0:
		rep.add("state", "ok", "%s: %d managed users", cfg.State.Path, len(links))
	default:
		rep.add("state", "ok", "%s: %d managed users; last run %d %s at %s", cfg.State.Path, len(links), runs[0].ID, runs[0].Result,
			runs[0].Started.Local().Format(time.DateTime))
	}
}

func nextSteps(path string, cfg *fileConfig, rep *checkReport, failed bool) []string {
	c := ""
	if path != defaultConfigPath {
		c = " -c " + path
	}
	switch {
	case !rep.Valid:
		return []string{"fix the config problems above, then: scimsync check" + c}
	case failed:
		return []string{"fix what is marked FAILED above, then: scimsync check" + c}
	case cfg.has("ldap") && cfg.has("target"):
		return []string{
			"scimsync sync --dry-run" + c + "    # read the plan: nothing is written",
			"scimsync sync" + c + "              # apply it",
			"systemctl enable --now scimsync     # then let the daemon keep it in step (sync.schedule)",
		}
	case cfg.has("server"):
		return []string{"scimsync serve" + c + "    # or systemctl enable --now scimsync"}
	}
	return []string{"add the ldap and target sections (scimsync config example shows every key)"}
}

func (a *app) printCheck(rep *checkReport) {
	w := a.stdout
	if rep.Valid {
		fmt.Fprintf(w, "config: %s is valid\n", rep.Config)
	} else {
		fmt.Fprintf(w, "config: %s has %d problem(s):\n", rep.Config, len(rep.Problems))
		for _, p := range rep.Problems {
			if p.Line > 0 {
				fmt.Fprintf(w, "  %s (line %d): %s\n", p.Path, p.Line, p.Message)
			} else {
				fmt.Fprintf(w, "  %s: %s\n", p.Path, p.Message)
			}
		}
	}
	for _, c := range rep.Checks {
		switch c.Status {
		case "ok":
			fmt.Fprintf(w, "%s: %s\n", c.Name, c.Message)
		case "warning":
			fmt.Fprintf(w, "%s: warning: %s\n", c.Name, c.Message)
		default:
			fmt.Fprintf(w, "%s: FAILED: %s\n", c.Name, c.Message)
		}
	}
	fmt.Fprintln(w, "next:")
	for _, n := range rep.Next {
		fmt.Fprintf(w, "  %s\n", n)
	}
}
