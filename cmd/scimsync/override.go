package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/scimsync/scimsync/daemon"
	"github.com/scimsync/scimsync/state"
)

const overrideLong = `An administrator's override of a user's managementMode: CMS makes the user hands-off (never
created, changed, disabled or deleted; shown as skip), DEFAULT makes the sync own it even when a
config rule or the target says CMS. With --group it is a group's, named by its displayName (CMS:
never created, given members or deleted; DEFAULT: owned even when groups.overrides says CMS).
The override is recorded in the state file (or, while the daemon runs, by the daemon) and
honoured from the next sync on.`

const overrideExample = `  scimsync override set alice CMS
  scimsync override set alice CMS --config /etc/scimsync/site.yaml
  scimsync override clear alice
  scimsync override set --group "Domain Admins" CMS
  scimsync override list -o json`

// overrideResult is the JSON of `override set` and `override clear`.
type overrideResult struct {
	FormatVersion int    `json:"format_version"`
	User          string `json:"user"` // the user's name, or the group's with Group
	Group         bool   `json:"group,omitempty"`
	Mode          string `json:"mode"` // "" when cleared
	ViaDaemon     bool   `json:"via_daemon"`
}

func (a *app) overrideCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "override",
		Short:   "Set, clear or list administrator overrides of managementMode (CMS = hands-off)",
		Long:    overrideLong,
		Example: overrideExample,
		Args:    cobra.NoArgs,
	}
	var group bool
	set := &cobra.Command{
		Use:     "set USER CMS|DEFAULT",
		Short:   "Make USER (or, with --group, a group) hands-off (CMS) or owned by the sync (DEFAULT)",
		Example: "  scimsync override set alice CMS\n  scimsync override set --group staff CMS",
		Args:    cobra.ExactArgs(2),
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 1 {
				return []string{"CMS", "DEFAULT"}, cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			mode, err := state.ParseMode(args[1])
			if err != nil {
				return err
			}
			return a.setOverride(cmd.Context(), args[0], group, mode)
		},
	}
	clear := &cobra.Command{
		Use:     "clear USER",
		Short:   "Remove USER's (or, with --group, a group's) override; config rules and the target decide again",
		Example: "  scimsync override clear alice\n  scimsync override clear --group staff",
		Args:    cobra.ExactArgs(1),
		RunE:    func(cmd *cobra.Command, args []string) error { return a.setOverride(cmd.Context(), args[0], group, "") },
	}
	for _, c := range []*cobra.Command{set, clear} {
		c.Flags().BoolVar(&group, "group", false, "the name is a group's displayName, not a userName")
	}
	cmd.AddCommand(set, clear, &cobra.Command{
		Use:     "list",
		Short:   "List the overrides",
		Example: "  scimsync override list",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return a.listOverrides(cmd.Context()) },
	})
	return cmd
}

// setOverride records (mode set) or clears (mode "") user's override in the state file, or
// through the daemon when it holds the file.
func (a *app) setOverride(ctx context.Context, user string, group bool, mode state.Mode) error {
	cfg, err := a.load()
	if err != nil {
		return err
	}
	res := overrideResult{FormatVersion: formatVersion, User: user, Group: group, Mode: string(mode)}
	st, err := state.Open(cfg.State.Path, state.Options{LockTimeout: cfg.State.LockTimeout.D()})
	switch {
	case errors.Is(err, state.ErrLocked):
		c, cerr := newAdminClient(cfg)
		if cerr != nil {
			return cerr
		}
		var out map[string]any
		if err := c.do(ctx, adminTimeout, "POST", "/overrides", map[string]any{"user": user, "group": group, "mode": string(mode)}, &out); err != nil {
			return err
		}
		res.ViaDaemon = true
	case err != nil:
		return err
	default:
		defer st.Close()
		switch {
		case group && mode == "":
			err = st.ClearGroupOverride(user)
		case group:
			err = st.SetGroupOverride(user, mode, time.Now())
		case mode == "":
			err = st.ClearOverride(user)
		default:
			err = st.SetOverride(user, mode, time.Now())
		}
		if err != nil {
			return err
		}
	}
	if a.json() {
		return a.emit(res)
	}
	by := ""
	if res.ViaDaemon {
		by = " (recorded by the running daemon)"
	}
	what := user
	if group {
		what = "group " + user
	}
	if mode == "" {
		_, err = fmt.Fprintf(a.stdout, "override for %s cleared%s\n", what, by)
	} else {
		_, err = fmt.Fprintf(a.stdout, "%s is now %s in %s%s; the next sync will honour it\n", what, mode, cfg.State.Path, by)
	}
	return err
}

func (a *app) listOverrides(ctx context.Context) error {
	cfg, err := a.load()
	if err != nil {
		return err
	}
	rep := daemon.OverridesReport{FormatVersion: daemon.APIFormatVersion}
	err = a.readState(cfg, func(st *state.Store) error {
		ovs, err := st.Overrides()
		rep.Overrides = daemon.SortedOverrides(ovs)
		return err
	}, func(c *adminClient) error {
		return c.do(ctx, adminTimeout, "GET", "/overrides", nil, &rep)
	})
	if err != nil {
		return err
	}
	if rep.Overrides == nil {
		rep.Overrides = []state.Override{}
	}
	if a.json() {
		return a.emit(rep)
	}
	if len(rep.Overrides) == 0 {
		_, err := fmt.Fprintln(a.stdout, "no overrides")
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tMODE\tSET")
	for _, o := range rep.Overrides {
		kind := "user"
		if o.Group {
			kind = "group"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", kind, o.UserName, o.Mode, o.SetAt.Local().Format(time.DateTime))
	}
	return tw.Flush()
}
