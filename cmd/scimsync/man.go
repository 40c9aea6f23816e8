package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manCmd writes the man pages (scimsync.1, scimsync-sync.1, …) generated from the commands'
// help, for the package. Hidden: administrators read them with man(1).
func (a *app) manCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write the man pages into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true // reproducible builds: no generation date in the pages
			hdr := &doc.GenManHeader{Title: "SCIMSYNC", Section: "1", Source: "scimsync " + a.build.Version, Manual: "scimsync manual"}
			// the build's date, not today's, so the same build gives the same pages
			if t, err := time.Parse(time.RFC3339, a.build.Date); err == nil {
				hdr.Date = &t
			}
			if err := doc.GenManTree(root, hdr, args[0]); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			return nil
		},
	}
}
