package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/daemon"
	"github.com/scimsync/scimsync/daemon/notify"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/scimserver"
	"github.com/scimsync/scimsync/state"
	"github.com/scimsync/scimsync/sync"
)

// fileConfig is the one YAML file every command reads; each section belongs to its package.
type fileConfig struct {
	LDAP    ldap.Config             `yaml:"ldap"`
	Target  scimclient.TargetConfig `yaml:"target"`
	Mapping sync.MappingConfig      `yaml:"mapping"`
	Sync    sync.Config             `yaml:"sync"`
	Groups  sync.GroupsConfig       `yaml:"groups"` // synced when the section is present
	Server  scimserver.ServerConfig `yaml:"server"`
	Admin   daemon.AdminConfig      `yaml:"admin"`
	State   state.Config            `yaml:"state"`
	Notify  notify.Config           `yaml:"notify"`
	Log     logConfig               `yaml:"log"`

	file *config.File
}

type logConfig struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // json | console; empty: console on a terminal, json otherwise
	// ProgressInterval is how often a long sync logs its progress (and updates systemd's STATUS=).
	ProgressInterval config.Duration `yaml:"progress_interval"`

	redact *config.Redactor // every secret of the file, so the logger never prints one
}

func defaults() fileConfig {
	return fileConfig{
		LDAP: ldap.DefaultConfig(), Target: scimclient.DefaultTargetConfig(), Sync: sync.DefaultConfig(), Groups: sync.DefaultGroupsConfig(),
		Server: scimserver.DefaultServerConfig(), Admin: daemon.DefaultAdminConfig(),
		State: state.DefaultConfig(), Notify: notify.DefaultConfig(), Log: logConfig{Level: "info", ProgressInterval: config.Duration(5 * time.Second)},
	}
}

// section names a config section a command needs.
type section string

const (
	needLDAP   section = "ldap"
	needTarget section = "target"
	needServer section = "server"
	needDaemon section = "daemon" // not a section: `run` needs admin and schedule checks
)

// loadConfig reads path strictly and validates the sections the command uses, reporting every
// problem with its key path and line. On problems it returns them with the config as far as
// it decoded (see decodeConfig), whose redactor already knows the file's secrets.
func loadConfig(path string, need ...section) (*fileConfig, error) {
	f, err := config.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeConfig(f, need...)
}

// decodeConfig decodes and validates f. On problems it returns them with the config as far as
// it decoded, for `check` to go on looking at what it can (secret files).
func decodeConfig(f *config.File, need ...section) (*fileConfig, error) {
	cfg := defaults()
	cfg.file = f
	// type errors and unknown keys first; validation then adds what it finds in the rest, so
	// one run of any command lists every problem of the file
	var ps config.Problems
	if err := f.Decode(&cfg); err != nil && !errors.As(err, &ps) {
		return nil, err
	}
	// every secret the file holds or names; unreadable secret files are reported by the
	// component that needs them
	cfg.Log.redact = config.NewRedactor()
	_ = cfg.Log.redact.AddConfig(&cfg)
	nDecode := len(ps)
	for _, s := range need {
		if s == needDaemon {
			ps.Merge("admin", cfg.Admin.Validate())
			if err := daemon.ValidateSchedule(cfg.Sync.Schedule, cfg.Sync.Timezone); err != nil {
				ps.Add("sync.schedule", "%v", err)
			}
			if f.Line("server") > 0 {
				ps.Merge("server", cfg.Server.Validate())
			}
			continue
		}
		if f.Line(string(s)) == 0 {
			ps.Add(string(s), "section required by this command is missing")
			continue
		}
		switch s {
		case needLDAP:
			ps.Merge("ldap", cfg.LDAP.Validate())
		case needTarget:
			ps.Merge("target", cfg.Target.Validate())
		case needServer:
			ps.Merge("server", cfg.Server.Validate())
		}
	}
	if contains(need, needLDAP) || contains(need, needTarget) {
		ps.Merge("sync", cfg.Sync.Validate())
		if f.Line("groups") > 0 {
			ps.Merge("groups", cfg.Groups.Validate())
		}
		_, mps := sync.NewMapping(cfg.Target.Profile, cfg.Mapping)
		for _, p := range mps {
			if p.Path == "profile" {
				msg := p.Msg
				if s := config.Suggest(cfg.Target.Profile, sync.ProfileNames()); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				ps.Add("target.profile", "%s", msg)
				continue
			}
			ps.Merge("mapping", config.Problems{p})
		}

		if prof, ok := sync.ProfileByName(cfg.Target.Profile); ok && prof.NoDirectDelete && cfg.Sync.Deprovision == sync.DeprovisionDelete {
			ps.Add("sync.deprovision", "the %s profile disables before any delete: use disable with delete_after", prof.Name)
		}
	}
	ps.Merge("state", cfg.State.Validate())
	ps.Merge("notify", cfg.Notify.Validate())
	switch cfg.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		ps.Add("log.level", "must be debug, info, warn or error, got %q", cfg.Log.Level)
	}
	if cfg.Log.ProgressInterval.D() < time.Second {
		ps.Add("log.progress_interval", "must be at least 1s")
	}
	switch cfg.Log.Format {
	case "", "json", "console":
	default:
		ps.Add("log.format", "must be json or console, got %q", cfg.Log.Format)
	}
	ps = dropEchoes(ps, nDecode)
	if len(ps) > 0 {
		located := f.Locate(ps)
		return &cfg, fmt.Errorf("%s: %w", f.Name, located)
	}
	return &cfg, nil
}

// dropEchoes removes validation problems (from index n on) about a key whose value already
// failed to decode: the default left in its place would only add a confusing second message.
func dropEchoes(ps config.Problems, n int) config.Problems {
	bad := map[string]bool{}
	for _, p := range ps[:n] {
		bad[p.Path] = true
	}
	out := ps[:n:n]
	for _, p := range ps[n:] {
		if !bad[p.Path] {
			out = append(out, p)
		}
	}
	return out
}

func contains(ss []section, s section) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// has reports whether the file has a top-level section.
func (c *fileConfig) has(name string) bool { return c.file != nil && c.file.Line(name) > 0 }

// secretFiles lists every *_file key that names a secret (and the server's TLS key), with the
// path as written.
func (c *fileConfig) secretFiles() []config.SecretFile {
	var out []config.SecretFile
	add := func(key, path string) {
		if path != "" {
			out = append(out, config.SecretFile{Key: key, Path: path})
		}
	}
	add("ldap.bind_password_file", c.LDAP.BindPasswordFile)
	add("target.token_file", c.Target.TokenFile)
	if c.has("server") {
		for i, t := range c.Server.Tokens {
			add(fmt.Sprintf("server.tokens[%d].token_file", i), t.TokenFile)
		}
		add("server.tls_key_file", c.Server.TLSKeyFile)
	}
	add("admin.token_file", c.Admin.TokenFile)
	return append(out, c.Notify.SecretFiles()...)
}

// settings turns the file into what the daemon runs on.
func (c *fileConfig) settings() *daemon.Settings {
	s := &daemon.Settings{LDAP: c.LDAP, Target: c.Target, Mapping: c.Mapping, Sync: c.Sync, Admin: c.Admin,
		State: c.State, Notify: c.Notify, Level: c.Log.Level, ProgressInterval: c.Log.ProgressInterval.D(), Redactor: c.Log.redact}
	if c.file.Line("server") > 0 {
		srv := c.Server
		s.Server = &srv
	}
	s.Groups = c.sections().Groups
	return s
}

// sections picks what one sync run is built from.
func (c *fileConfig) sections() sync.Sections {
	sec := sync.Sections{LDAP: c.LDAP, Target: c.Target, Mapping: c.Mapping, Sync: c.Sync, Redactor: c.Log.redact}
	if c.file != nil && c.file.Line("groups") > 0 {
		g := c.Groups
		sec.Groups = &g
	}
	return sec
}
