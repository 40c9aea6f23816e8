package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/sync"
)

// profileInfo is one profile in `profiles -o json`.
type profileInfo struct {
	Name           string         `json:"name"`
	Summary        string         `json:"summary"`
	NoDirectDelete bool           `json:"no_direct_delete"`
	Mapping        map[string]any `json:"mapping,omitempty"` // as in the config file (snake_case keys)
}

func (a *app) profilesCmd() *cobra.Command {
	var show string
	cmd := &cobra.Command{
		Use:   "profiles",
		Short: "List the target profiles, or print one's effective mapping (--show NAME)",
		Long: `A target profile (target.profile) is a default mapping plus the rules a target's user model
enforces, checked before anything is sent. --show prints a profile's effective mapping as YAML
to paste into the config and edit.`,
		Example: `  scimsync profiles
  scimsync profiles --show passbolt >> /etc/scimsync/config.yaml`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if show == "" {
				return a.listProfiles()
			}
			return a.showProfile(show)
		},
	}
	cmd.Flags().StringVar(&show, "show", "", "print the effective mapping of this profile")
	_ = cmd.RegisterFlagCompletionFunc("show", cobra.FixedCompletions(sync.ProfileNames(), cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (a *app) listProfiles() error {
	if a.json() {
		out := struct {
			FormatVersion int           `json:"format_version"`
			Profiles      []profileInfo `json:"profiles"`
		}{FormatVersion: formatVersion, Profiles: []profileInfo{}}
		for _, n := range sync.ProfileNames() {
			p, _ := sync.ProfileByName(n)
			out.Profiles = append(out.Profiles, profileInfo{Name: n, Summary: p.Summary, NoDirectDelete: p.NoDirectDelete})
		}
		return a.emit(out)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tTARGET RULES")
	for _, n := range sync.ProfileNames() {
		p, _ := sync.ProfileByName(n)
		fmt.Fprintf(tw, "%s\t%s\n", n, p.Summary)
	}
	return tw.Flush()
}

func (a *app) showProfile(name string) error {
	p, ok := sync.ProfileByName(name)
	if !ok {
		msg := fmt.Sprintf("unknown profile %q (scimsync profiles lists them)", name)
		if s := config.Suggest(name, sync.ProfileNames()); s != "" {
			msg = fmt.Sprintf("unknown profile %q (did you mean %q?)", name, s)
		}
		return fmt.Errorf("%s", msg)
	}
	m := sync.Effective(p.Name, sync.MappingConfig{})
	if a.json() {
		// through YAML, so the keys are the config file's
		raw, err := yaml.Marshal(m)
		if err != nil {
			return err
		}
		var asConfig map[string]any
		if err := yaml.Unmarshal(raw, &asConfig); err != nil {
			return err
		}
		return a.emit(struct {
			FormatVersion int `json:"format_version"`
			profileInfo
		}{formatVersion, profileInfo{Name: p.Name, Summary: p.Summary, NoDirectDelete: p.NoDirectDelete, Mapping: asConfig}})
	}
	fmt.Fprintf(a.stdout, "# target.profile: %s — %s\n", p.Name, p.Summary)
	if p.NoDirectDelete {
		fmt.Fprintln(a.stdout, "# deprovisioning always disables first (sync.deprovision: delete is refused)")
	}
	enc := yaml.NewEncoder(a.stdout)
	enc.SetIndent(2)
	return enc.Encode(map[string]any{"mapping": m})
}

func (a *app) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the example configuration (every key, its default and what it does)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "example",
		Short: "Print the example configuration, as the package installs it in /etc/scimsync/config.yaml",
		Example: `  scimsync config example > /etc/scimsync/config.yaml
  scimsync config example | less`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if a.json() {
				return a.emit(map[string]any{"format_version": formatVersion, "path": defaultConfigPath, "yaml": string(config.Example)})
			}
			_, err := a.stdout.Write(config.Example)
			return err
		},
	})
	return cmd
}
