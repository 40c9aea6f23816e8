// Command scimsync keeps a SCIM 2.0 service provider in step with an LDAP directory, and is
// itself a SCIM 2.0 server identity providers can provision into.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/sync"
)

const defaultConfigPath = "/etc/scimsync/config.yaml"

// Exit codes (design.md): documented in README, chosen in exitCode only.
const (
	exitOK      = 0
	exitError   = 1
	exitPending = 2
	exitStopped = 3
)

// errPending marks a dry run whose plan has changes to apply.
var errPending = errors.New("changes pending")

// errUsage marks bad command-line use; flag has already said why.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
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

const usage = `scimsync keeps a SCIM 2.0 endpoint in step with an LDAP directory.

Usage:
  scimsync run      --config FILE          the daemon: scheduled sync, SCIM server, admin listener
  scimsync sync     --config FILE [--dry-run] [--output text|json] [--user NAME] [--allow-deprovision N]
  scimsync serve    --config FILE          run the SCIM 2.0 server identity providers provision into
  scimsync status   --config FILE          show the last runs
  scimsync check    --config FILE          validate the config, test the directory and the target
  scimsync override --config FILE set USER CMS|DEFAULT | clear USER | list
  scimsync profiles [--show NAME]          list target profiles, or print one's mapping
  scimsync demo     [--dir DIR]            sync a bundled sample directory into the built-in server

Exit codes: 0 done or nothing to do, 1 error, 2 dry run with changes pending,
3 stopped by a safety rule (deprovisioning limit, empty directory read).
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"sync": cmdSync, "serve": cmdServe, "status": cmdStatus, "check": cmdCheck,
		"override": cmdOverride, "demo": cmdDemo, "run": cmdRun, "profiles": cmdProfiles,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "scimsync: unknown command %q\n\n%s", args[0], usage)
		return exitError
	}
	err := cmd(ctx, args[1:], stdout, stderr)
	if err != nil && !errors.Is(err, errPending) && !errors.Is(err, errUsage) {
		fmt.Fprintf(stderr, "scimsync %s: %v\n", args[0], err)
	}
	if errors.Is(err, errUsage) {
		return exitError
	}
	return exitCode(err)
}

func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("scimsync "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfigPath, "configuration file")
	return fs, path
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	return nil
}

// newLogger builds the zap logger the config asks for; console on a terminal when no format is
// set. Logs go to stderr: stdout carries plans and reports.
func newLogger(cfg logConfig, stderr io.Writer) (*zap.Logger, error) {
	l, _, err := newLeveledLogger(cfg, stderr)
	return l, err
}

// newLeveledLogger also returns the level, which the daemon changes at run time.
func newLeveledLogger(cfg logConfig, stderr io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zap.ParseAtomicLevel(cfg.Level)
	if err != nil {
		return nil, lvl, fmt.Errorf("log.level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	format := cfg.Format
	if format == "" {
		format = "json"
		if isTerminal(stderr) {
			format = "console"
		}
	}
	var enc zapcore.Encoder
	if format == "console" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(config.RedactCore(zapcore.NewCore(enc, zapcore.AddSync(stderr), lvl), cfg.redact)), lvl, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// shutdownTimeout bounds how long serve drains requests on SIGTERM.
const shutdownTimeout = 15 * time.Second
