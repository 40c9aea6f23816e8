package daemon

import "testing"

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
