package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
)

// app holds what every command shares: the streams, the global flags and whether a JSON
// document was printed.
type app struct {
	stdout, stderr io.Writer
	build          buildInfo

	configPath string
	output     string // text | json
	quiet      bool
	verbose    bool
	logLevel   string

	printed bool
	// red knows the config file's secrets once it is read: execute redacts the error it
	// prints with it.
	red *config.Redactor
}

const rootLong = `scimsync keeps a SCIM 2.0 endpoint in step with an LDAP directory (Active Directory,
OpenLDAP, FreeIPA), and is itself a SCIM 2.0 server identity providers (Okta, Entra ID)
provision into. Every command reads one YAML file (--config).

Exit codes: 0 done or nothing to do, 1 error, 2 dry run with changes pending,
3 stopped by a safety rule (deprovisioning limit, empty directory read).`

const rootExample = `  # first steps on a new install
  scimsync check
  scimsync sync --dry-run
  scimsync sync

  # what happened to one user, and in one run
  scimsync history alice
  scimsync runs show 42

  # flags go anywhere, -c is --config, -o json prints one JSON document
  scimsync override set alice CMS -c /etc/scimsync/site.yaml
  scimsync status -o json`

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "scimsync",
		Short:         "Keep a SCIM 2.0 endpoint in step with an LDAP directory",
		Long:          rootLong,
		Example:       rootExample,
		SilenceErrors: true, // execute prints them once, naming the command
		SilenceUsage:  true, // a failed sync is not a usage mistake
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.output != "text" && a.output != "json" {
				return fmt.Errorf("--output must be text or json, got %q", a.output)
			}
			if a.quiet && a.verbose {
				return errors.New("-q and -v contradict each other")
			}
			if a.logLevel != "" {
				if _, err := zap.ParseAtomicLevel(a.logLevel); err != nil {
					return fmt.Errorf("--log-level: %w", err)
				}
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())
	})
	def := defaultConfigPath
	if env := os.Getenv("SCIMSYNC_CONFIG"); env != "" {
		def = env
	}
	pf := root.PersistentFlags()
	pf.StringVarP(&a.configPath, "config", "c", def, "configuration file ($SCIMSYNC_CONFIG)")
	pf.StringVarP(&a.output, "output", "o", "text", "output format: text or json (one JSON document)")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "only errors on stderr; no progress bar")
	pf.BoolVarP(&a.verbose, "verbose", "v", false, "debug logs on stderr")
	pf.StringVar(&a.logLevel, "log-level", "", "log level (debug, info, warn, error); overrides log.level")
	_ = root.MarkPersistentFlagFilename("config", "yaml", "yml")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	_ = root.RegisterFlagCompletionFunc("log-level", cobra.FixedCompletions([]string{"debug", "info", "warn", "error"}, cobra.ShellCompDirectiveNoFileComp))

	root.AddGroup(&cobra.Group{ID: "sync", Title: "Syncing:"}, &cobra.Group{ID: "ops", Title: "Operating:"},
		&cobra.Group{ID: "setup", Title: "Setting up:"})
	for _, c := range []*cobra.Command{a.syncCmd(), a.runCmd(), a.serveCmd()} {
		c.GroupID = "sync"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.statusCmd(), a.runsCmd(), a.historyCmd(), a.overrideCmd()} {
		c.GroupID = "ops"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.checkCmd(), a.profilesCmd(), a.configCmd(), a.demoCmd(), a.versionCmd()} {
		c.GroupID = "setup"
		root.AddCommand(c)
	}
	root.AddCommand(a.manCmd())
	root.SetHelpCommandGroupID("setup")
	root.SetCompletionCommandGroupID("setup")
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Example = `  # bash, now and in every new shell
  source <(scimsync completion bash)
  scimsync completion bash > /etc/bash_completion.d/scimsync
  # zsh and fish
  scimsync completion zsh > "${fpath[1]}/_scimsync"
  scimsync completion fish > ~/.config/fish/completions/scimsync.fish`
		}
	}
	return root
}

// load reads the config file and validates the sections the command uses, then applies the
// log-level flags.
func (a *app) load(need ...section) (*fileConfig, error) {
	cfg, err := loadConfig(a.configPath, need...)
	if cfg != nil && a.red == nil {
		// the first file read is the one whose secrets the command's errors may quote
		a.red = cfg.Log.redact
	}
	if err != nil {
		return nil, err
	}
	switch {
	case a.logLevel != "":
		cfg.Log.Level = a.logLevel
	case a.quiet:
		cfg.Log.Level = "error"
	case a.verbose:
		cfg.Log.Level = "debug"
	}
	return cfg, nil
}

// logger builds the command's logger on w and warns about every secret file under the given
// key prefixes that others can read: a warning at each start-up until it is fixed.
func (a *app) logger(cfg *fileConfig, w io.Writer, secretPrefixes ...string) (*zap.Logger, zap.AtomicLevel, error) {
	log, lvl, err := newLeveledLogger(cfg.Log, w)
	if err != nil {
		return nil, lvl, err
	}
	for _, sf := range cfg.secretFiles() {
		if !hasAnyPrefix(sf.Key, secretPrefixes) {
			continue
		}
		if err := config.CheckSecretFile(sf.Path); errors.Is(err, config.ErrLoosePermissions) {
			log.Warn("secret file is readable by group or others", zap.String("key", sf.Key), zap.Error(err))
		}
	}
	return log, lvl, nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// emit prints v as the command's one JSON document.
func (a *app) emit(v any) error {
	a.printed = true
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// json reports whether -o json was asked for.
func (a *app) json() bool { return a.output == "json" }
