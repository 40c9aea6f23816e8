package daemon

import (
	"runtime/debug"
	"testing"
)

// TestLimitRunMemory: a run's soft limit is what the process holds plus the budget, never
// above the limit already in force, and the earlier limit is back afterwards.
func TestLimitRunMemory(t *testing.T) {
	t.Setenv("GOGC", "") // an empty GOGC is unset for the collector and for limitRunMemory
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)

	const budget = 64 << 20
	released := 0
	restore := limitRunMemory(budget, func() { released++ })
	during := debug.SetMemoryLimit(-1)
	held := heldMemory()
	restore()
	if released != 1 {
		t.Errorf("release called %d times after the run, want once", released)
	}
	if during <= held || during > held+budget {
		t.Errorf("limit during the run %d, want above the %d held and at most %d", during, held, held+budget)
	}
	if after := debug.SetMemoryLimit(-1); after != prev {
		t.Errorf("limit after the run %d, want the earlier %d", after, prev)
	}

	// a lower limit already in force (GOMEMLIMIT) stays the cap
	low := heldMemory() + budget/4
	debug.SetMemoryLimit(low)
	restore = limitRunMemory(budget, func() {})
	if during := debug.SetMemoryLimit(-1); during != low {
		t.Errorf("limit during the run %d, want the lower one in force, %d", during, low)
	}
	restore()
	if after := debug.SetMemoryLimit(-1); after != low {
		t.Errorf("limit after the run %d, want %d", after, low)
	}

	// GOGC in the environment: the administrator tuned the collector; nothing changes
	t.Setenv("GOGC", "200")
	debug.SetMemoryLimit(prev)
	limitRunMemory(budget, func() {})()
	if got := debug.SetMemoryLimit(-1); got != prev {
		t.Errorf("with GOGC set the limit became %d, want %d", got, prev)
	}
}
