package state

import (
	"os"
	"time"

	"github.com/scimsync/scimsync/config"
)

// Config is the `state:` section.
type Config struct {
	Path        string          `yaml:"path"`
	LockTimeout config.Duration `yaml:"lock_timeout"`
	// HistoryRetention is how long runs and their change log are kept; 0 keeps them forever.
	HistoryRetention config.Duration `yaml:"history_retention"`
	// ReportDir, when set, receives a JSON report (run-NNNNNN.json) after every run.
	ReportDir string `yaml:"report_dir"`
}

// DefaultConfig is the section's defaults: 90 days of history, no report files.
func DefaultConfig() Config {
	return Config{Path: "/var/lib/scimsync/state.db", LockTimeout: config.Duration(2 * time.Second),
		HistoryRetention: config.Duration(90 * 24 * time.Hour)}
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
	if c.HistoryRetention.D() != 0 && c.HistoryRetention.D() < time.Hour {
		ps.Add("history_retention", "must be 0 (keep forever) or at least 1h, got %s", c.HistoryRetention.D())
	}
	if c.ReportDir != "" {
		if fi, err := os.Stat(c.ReportDir); err != nil {
			ps.Add("report_dir", "%v", err)
		} else if !fi.IsDir() {
			ps.Add("report_dir", "%s is not a directory", c.ReportDir)
		}
	}
	return ps
}
