package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"

	"github.com/scimsync/scimsync/sync"
)

// cmdProfiles lists the target profiles, or prints one's effective mapping as config YAML to
// copy and edit.
func cmdProfiles(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlags("profiles", stderr)
	show := fs.String("show", "", "print the effective mapping of this profile")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *show == "" {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PROFILE\tTARGET RULES")
		for _, n := range sync.ProfileNames() {
			p, _ := sync.ProfileByName(n)
			fmt.Fprintf(tw, "%s\t%s\n", n, p.Summary)
		}
		return tw.Flush()
	}
	p, ok := sync.ProfileByName(*show)
	if !ok {
		return fmt.Errorf("unknown profile %q", *show)
	}
	fmt.Fprintf(stdout, "# target.profile: %s — %s\n", p.Name, p.Summary)
	if p.NoDirectDelete {
		fmt.Fprintln(stdout, "# deprovisioning always disables first (sync.deprovision: delete is refused)")
	}
	enc := yaml.NewEncoder(stdout)
	enc.SetIndent(2)
	return enc.Encode(map[string]any{"mapping": sync.Effective(p.Name, sync.MappingConfig{})})
}
