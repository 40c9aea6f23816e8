package main

import (
	"fmt"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
	"github.com/scimsync/scimsync/sync"
)

// fileConfig is the one YAML file every command reads; each section belongs to its package.
type fileConfig struct {
	LDAP    ldap.Config        `yaml:"ldap"`
	Target  scim.TargetConfig  `yaml:"target"`
	Mapping sync.MappingConfig `yaml:"mapping"`
	Sync    sync.Config        `yaml:"sync"`
	Server  scim.ServerConfig  `yaml:"server"`
	Admin   adminConfig        `yaml:"admin"`
	State   state.Config       `yaml:"state"`
	Log     logConfig          `yaml:"log"`

	file *config.File
}

// adminConfig is read by `scimsync run` (health, metrics, run-now); accepted here so one file
// serves every command.
type adminConfig struct {
	Listen string `yaml:"listen"`
}

type logConfig struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // json | console; empty: console on a terminal, json otherwise
}

func defaults() fileConfig {
	return fileConfig{
		LDAP: ldap.DefaultConfig(), Target: scim.DefaultTargetConfig(), Sync: sync.DefaultConfig(),
		Server: scim.DefaultServerConfig(), Admin: adminConfig{Listen: "127.0.0.1:9464"},
		State: state.DefaultConfig(), Log: logConfig{Level: "info"},
	}
}

// section names a config section a command needs.
type section string

const (
	needLDAP   section = "ldap"
	needTarget section = "target"
	needServer section = "server"
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
	var ps config.Problems
	for _, s := range need {
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
		_, mps := sync.NewMapping(cfg.Mapping)
		ps.Merge("mapping", mps)
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
