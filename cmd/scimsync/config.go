package main

import (
	"fmt"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/daemon"
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
	Server  scimserver.ServerConfig `yaml:"server"`
	Admin   daemon.AdminConfig      `yaml:"admin"`
	State   state.Config            `yaml:"state"`
	Log     logConfig               `yaml:"log"`

	file *config.File
}

type logConfig struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // json | console; empty: console on a terminal, json otherwise

	redact *config.Redactor // every secret of the file, so the logger never prints one
}

func defaults() fileConfig {
	return fileConfig{
		LDAP: ldap.DefaultConfig(), Target: scimclient.DefaultTargetConfig(), Sync: sync.DefaultConfig(),
		Server: scimserver.DefaultServerConfig(), Admin: daemon.DefaultAdminConfig(),
		State: state.DefaultConfig(), Log: logConfig{Level: "info"},
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
// problem with its key path and line.
func loadConfig(path string, need ...section) (*fileConfig, error) {
	f, err := config.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeConfig(f, need...)
}

func decodeConfig(f *config.File, need ...section) (*fileConfig, error) {
	cfg := defaults()
	if err := f.Decode(&cfg); err != nil {
		return nil, err
	}
	cfg.file = f
	// unreadable secret files are reported by the component that needs them
	cfg.Log.redact = config.NewRedactor()
	_ = cfg.Log.redact.AddConfig(&cfg)
	var ps config.Problems
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
		_, mps := sync.NewMapping(cfg.Target.Profile, cfg.Mapping)
		for _, p := range mps {
			if p.Path == "profile" {
				ps.Add("target.profile", "%s", p.Msg)
				continue
			}
			ps.Merge("mapping", config.Problems{p})
		}
		if prof, ok := sync.ProfileByName(cfg.Target.Profile); ok && prof.NoDirectDelete && cfg.Sync.Deprovision == sync.DeprovisionDelete {
			ps.Add("sync.deprovision", "the %s profile disables before any delete: use disable with delete_after", prof.Name)
		}
	}
	ps.Merge("state", cfg.State.Validate())
	switch cfg.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		ps.Add("log.level", "must be debug, info, warn or error, got %q", cfg.Log.Level)
	}
	switch cfg.Log.Format {
	case "", "json", "console":
	default:
		ps.Add("log.format", "must be json or console, got %q", cfg.Log.Format)
	}
	if len(ps) > 0 {
		located := f.Locate(ps)
		return nil, fmt.Errorf("%s: %w", f.Name, located)
	}
	return &cfg, nil
}

func contains(ss []section, s section) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// settings turns the file into what the daemon runs on.
func (c *fileConfig) settings() *daemon.Settings {
	s := &daemon.Settings{LDAP: c.LDAP, Target: c.Target, Mapping: c.Mapping, Sync: c.Sync, Admin: c.Admin,
		State: c.State, Level: c.Log.Level}
	if c.file.Line("server") > 0 {
		srv := c.Server
		s.Server = &srv
	}
	return s
}

// sections picks what one sync run is built from.
func (c *fileConfig) sections() sync.Sections {
	return sync.Sections{LDAP: c.LDAP, Target: c.Target, Mapping: c.Mapping, Sync: c.Sync}
}
