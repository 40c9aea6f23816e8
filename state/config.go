package state

import (
	"time"

	"github.com/scimsync/scimsync/config"
)

// Config is the `state:` section.
type Config struct {
	Path        string          `yaml:"path"`
	LockTimeout config.Duration `yaml:"lock_timeout"`
}

// DefaultConfig is the section's defaults.
func DefaultConfig() Config {
	return Config{Path: "/var/lib/scimsync/state.db", LockTimeout: config.Duration(2 * time.Second)}
}

// Validate reports every problem in the section.
func (c Config) Validate() config.Problems {
	var ps config.Problems
	if c.Path == "" {
		ps.Add("path", "required")
	}
	if c.LockTimeout.D() <= 0 {
		ps.Add("lock_timeout", "must be positive (opening a locked file must fail, not hang)")
	}
	return ps
}
