package main

import (
	"os"
	"runtime"
)

// minProcs is the fewest Go processors (Ps) scimsync runs with, whatever number of CPUs it is
// given. Both the SCIM server and the sync write through a group-commit loop that waits in
// fdatasync while the next batch is prepared. A goroutine in a system call keeps its P until the
// runtime's monitor takes it back, which can take up to 10 ms when the monitor has been idle. With
// a single P, nothing else runs during that fsync, so each fsync carries one write and request
// handling stops while it runs. Measured with `scimsync serve` on one CPU (go run ./bench server)
// and 32 clients, PATCHes dropped from 6,300/s with a p99 of 14–17 ms at two Ps to 2,100–3,600/s
// with a p99 of 60–340 ms at one. A second P lets the other goroutines run while the commit loop's
// thread waits on the disk, and costs one OS thread.
const minProcs = 2

// procsFor returns the GOMAXPROCS to set, or 0 to leave the runtime's choice alone: an explicit
// GOMAXPROCS in the environment is the administrator's, and more than minProcs needs nothing.
func procsFor(env string, current int) int {
	if env != "" || current >= minProcs {
		return 0
	}
	return minProcs
}

// raiseProcs applies procsFor to this process. It runs before any command starts.
func raiseProcs() {
	if n := procsFor(os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0)); n > 0 {
		runtime.GOMAXPROCS(n)
	}
}
