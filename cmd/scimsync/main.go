// Command scimsync keeps a SCIM 2.0 service provider in step with an LDAP directory, and is
// itself a SCIM 2.0 server identity providers can provision into.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/scimsync/scimsync/sync"
)

// defaultConfigPath is where the package installs the config; $SCIMSYNC_CONFIG overrides it.
const defaultConfigPath = "/etc/scimsync/config.yaml"

// Exit codes (design.md): documented in README and in --help, chosen in exitCode only.
const (
	exitOK      = 0
	exitError   = 1
	exitPending = 2
	exitStopped = 3
)

// errPending marks a dry run whose plan has changes to apply.
var errPending = errors.New("changes pending")

// formatVersion is the format_version of every JSON document the CLI prints itself (the plan
// inside `sync -o json` carries the plan's own).
const formatVersion = 1

func main() {
	raiseProcs()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errPending):
		return exitPending
	case errors.Is(err, sync.ErrSafetyLimit), errors.Is(err, sync.ErrEmptySource):
		return exitStopped
	}
	return exitError
}

// execute runs one command line and returns its exit code. Errors are printed once, here,
// naming the command; with -o json a command that failed before printing its document prints
// an error document instead, so stdout always holds exactly one JSON document.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, build: readBuildInfo()}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	code := exitCode(err)
	if err == nil || errors.Is(err, errPending) {
		return code
	}
	// an error may quote what a directory or target answered, or a value of the file: no
	// secret of the file leaves the process in it
	err = a.red.Error(err)
	name := "scimsync"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	if a.output == "json" && !a.printed {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"format_version": formatVersion, "error": err.Error(), "exit_code": code})
	}
	return code
}
