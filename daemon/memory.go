package daemon

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
)

// runMemoryBudget is how much memory a sync run in the daemon may add to what the process
// held when the run began, before the collector works harder: the size of the soft limit a
// one-shot sync runs under in all (scimsync sync's 100 MiB), on top of the daemon's own use.
const runMemoryBudget = 100 << 20

// limitRunMemory sets a soft memory limit of the memory the process holds now plus budget, at
// most the limit already in force (GOMEMLIMIT, such as the packaged unit's 1800MiB). The
// function it returns puts the earlier limit back, returns to the operating system what the
// run freed and calls release (which drops the state file's mapped pages), so an idle daemon
// does not keep the peak of its last run resident. The limit is left alone when GOGC is set in
// the environment: the administrator tuned the collector.
//
// Before it (and before updateManaged stopped holding every link), a full reconcile of 100,000
// users in scimsync run peaked at 311 MiB and the daemon held 312 MiB after it; the same run
// as a one-shot sync peaks at 120 MiB (go run ./bench sync -n 100000).
func limitRunMemory(budget int64, release func()) (restore func()) {
	if os.Getenv("GOGC") != "" {
		return release
	}
	runtime.GC() // what the process holds, not what it has yet to collect
	prev := debug.SetMemoryLimit(-1)
	limit := heldMemory() + budget
	if prev < limit {
		limit = prev
	}
	debug.SetMemoryLimit(limit)
	return func() {
		debug.SetMemoryLimit(prev)
		debug.FreeOSMemory()
		release()
	}
}

// heldMemory is the memory the Go runtime holds from the operating system, as its memory limit
// counts it: everything mapped, less what was returned.
func heldMemory() int64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	rtmetrics.Read(s)
	total, released := s[0].Value.Uint64(), s[1].Value.Uint64()
	if total < released || total-released > math.MaxInt64 {
		return 0
	}
	return int64(total - released)
}
