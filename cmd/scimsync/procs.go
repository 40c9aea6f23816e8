package main

import (
	"os"
	"runtime"
	"strconv"
)

// minProcs is the fewest Go processors (Ps) scimsync runs with. Go gives a process that may run
// on one CPU only (a 1-vCPU VM, a taskset or cpuset of one CPU; a cgroup CPU quota is rounded up
// to at least two) GOMAXPROCS=1. Both the SCIM server and the sync write through a group-commit
// loop that waits in fdatasync while the next batch is prepared. A goroutine in a system call
// keeps its P until the runtime's monitor takes it back on a later tick, which can take tens of
// milliseconds once the monitor has backed off. With a single P, nothing else runs during that
// fsync, not even the network poller, so each fsync carries one write and request handling
// stops while it runs. Measured with `scimsync serve` alone on one CPU and 32 clients
// (go run ./bench server), PATCHes ran at 6,278–6,319/s with a p99 of 14–17 ms at two Ps (two
// runs) against 2,121–3,564/s with a p99 of 26–342 ms at one (four runs). A second P lets other
// goroutines run while the commit loop's thread waits on the disk.
const minProcs = 2

// procsFor returns the GOMAXPROCS to set, or 0 to leave the runtime's choice alone: a
// GOMAXPROCS in the environment that the runtime obeys (a whole number above 0) is the
// administrator's, and minProcs or more needs nothing.
func procsFor(env string, current int) int {
	if n, err := strconv.Atoi(env); (err == nil && n > 0) || current >= minProcs {
		return 0
	}
	return minProcs
}

// raiseProcs applies procsFor to this process before any command starts. Setting GOMAXPROCS
// stops the runtime from following later changes of the CPUs the process may use; that only
// happens here when the process had a single CPU.
func raiseProcs() {
	if n := procsFor(os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0)); n > 0 {
		runtime.GOMAXPROCS(n)
	}
}
