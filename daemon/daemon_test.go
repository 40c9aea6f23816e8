package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/scimsync/scimsync/sync"
)

func TestValidateSchedule(t *testing.T) {
	tests := []struct {
		spec, tz string
		ok       bool
	}{
		{"@every 2s", "", true},
		{"@hourly", "", true},
		{"30 2 * * *", "Europe/Paris", true},
		{"CRON_TZ=UTC 0 3 * * *", "", true},
		{"TZ=UTC", "", false}, // robfig/cron panics on this; it must be an error
		{"* * *", "", false},
		{"@every 2s", "Mars/Olympus", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if err := ValidateSchedule(tt.spec, tt.tz); (err == nil) != tt.ok {
			t.Errorf("ValidateSchedule(%q, %q) = %v", tt.spec, tt.tz, err)
		}
	}
}

func TestAdminConfigValidate(t *testing.T) {
	c := DefaultAdminConfig()
	if ps := c.Validate(); len(ps) != 0 {
		t.Fatalf("defaults invalid: %v", ps)
	}
	c.Listen, c.ShutdownTimeout = "nope", 0
	if ps := c.Validate(); len(ps) != 2 {
		t.Fatalf("want 2 problems, got %v", ps)
	}
}

func TestContactTracksWhatWasReached(t *testing.T) {
	tests := []struct {
		name         string
		err          error
		ldap, target string
	}{
		{"success", nil, "ok", "ok"},
		{"directory down", fmt.Errorf("x: %w", sync.ErrSourceFailed), "failed at the last sync", "not contacted yet"},
		{"empty read stops before the target", fmt.Errorf("x: %w", sync.ErrEmptySource), "ok", "not contacted yet"},
		{"target down", errors.New("scim: GET /ServiceProviderConfig: connection refused"), "ok", "failed at the last sync"},
	}
	for _, tt := range tests {
		d := &Daemon{}
		d.contact(tt.err)
		if got := contactWord(d.ldapOK); got != tt.ldap {
			t.Errorf("%s: ldap %q, want %q", tt.name, got, tt.ldap)
		}
		if got := contactWord(d.targetOK); got != tt.target {
			t.Errorf("%s: target %q, want %q", tt.name, got, tt.target)
		}
	}
}

func TestPanickingSyncIsRecoveredAndCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	d := &Daemon{log: zap.NewNop(), m: newMetrics(reg, BuildInfo{})}
	calls := 0
	d.runSync = func(context.Context, SyncOptions) (*Outcome, error) {
		calls++
		panic("boom")
	}
	for i := 0; i < 2; i++ { // the second call proves the lock was released
		if _, err := d.SyncNow(context.Background(), SyncOptions{DryRun: true}); err == nil || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if calls != 2 || testutil.ToFloat64(d.m.panics) != 2 || d.running.Load() {
		t.Fatalf("calls %d, panics %v, running %v", calls, testutil.ToFloat64(d.m.panics), d.running.Load())
	}
}
