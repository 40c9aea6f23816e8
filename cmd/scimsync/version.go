package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/scimsync/scimsync/daemon"
)

// Set by the release build (-ldflags "-X main.version=… -X main.commit=… -X main.date=…");
// empty means: read them from the Go build info.
var (
	version string
	commit  string
	date    string
)

// buildInfo says which build this is.
type buildInfo struct {
	FormatVersion int    `json:"format_version"`
	Version       string `json:"version"`
	Commit        string `json:"commit"`
	Date          string `json:"date"`
	Modified      bool   `json:"modified"` // built from a work tree with uncommitted changes
	GoVersion     string `json:"go_version"`
	Platform      string `json:"platform"`
}

// readBuildInfo takes the module version and the VCS stamp Go records in every binary
// (`go install …@v1.2.3` and `go build` in a checkout), overridden by the release build's
// -ldflags.
func readBuildInfo() buildInfo {
	b := buildInfo{FormatVersion: formatVersion, Version: "(devel)", Commit: "unknown", Date: "unknown",
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" {
			b.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.time":
				b.Date = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if version != "" {
		b.Version = version
	}
	if commit != "" {
		b.Commit = commit
	}
	if date != "" {
		b.Date = date
	}
	return b
}

func (b buildInfo) daemon() daemon.BuildInfo {
	return daemon.BuildInfo{Version: b.Version, Commit: b.Commit, Date: b.Date, GoVersion: b.GoVersion}
}

func (b buildInfo) String() string {
	dirty := ""
	if b.Modified {
		dirty = ", modified"
	}
	return fmt.Sprintf("scimsync %s (commit %s%s, built %s, %s %s)", b.Version, b.Commit, dirty, b.Date, b.GoVersion, b.Platform)
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date and Go version",
		Example: `  scimsync version
  scimsync version -o json`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if a.json() {
				return a.emit(a.build)
			}
			_, err := fmt.Fprintln(a.stdout, a.build)
			return err
		},
	}
}
