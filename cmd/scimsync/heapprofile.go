package main

import (
	"context"
	"fmt"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"time"
)

// heapProfileEnv names a file prefix: when set, `sync` and `serve` write a heap profile to
// PREFIX.PID.pprof each time the live heap reaches a new high (in steps of 8 MiB), so the
// profile shows what the peak held, and PREFIX.PID.rss with the highest anonymous and
// file-backed resident memory seen (a bbolt file's pages count in RSS, not in the heap). It is
// for measuring memory (go tool pprof), not for production, and costs nothing when unset.
const heapProfileEnv = "SCIMSYNC_HEAP_PROFILE"

// cpuProfileEnv names a file: when set, `sync` and `serve` write a CPU profile of the whole run there
// (with .PID appended), for the same kind of measuring.
const cpuProfileEnv = "SCIMSYNC_CPU_PROFILE"

// profile starts what the profiling variables ask for; the function it returns stops it.
func profile(ctx context.Context) func() {
	profilePeakHeap(ctx)
	path := os.Getenv(cpuProfileEnv)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", path, os.Getpid()))
	if err != nil {
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

// profilePeakHeap samples the heap every 100 ms until ctx ends.
func profilePeakHeap(ctx context.Context) {
	prefix := os.Getenv(heapProfileEnv)
	if prefix == "" {
		return
	}
	path := fmt.Sprintf("%s.%d.pprof", prefix, os.Getpid())
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	var anon, file int64
	rssPath := fmt.Sprintf("%s.%d.rss", prefix, os.Getpid())
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if a, f := residentKiB(); a > anon || f > file {
				anon, file = max(anon, a), max(file, f)
				_ = os.WriteFile(rssPath, fmt.Appendf(nil, "RssAnon %d kB\nRssFile %d kB\n", anon, file), 0o644)
			}
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak+8<<20 {
				peak = v
				if f, err := os.Create(path); err == nil {
					_ = pprof.Lookup("heap").WriteTo(f, 0)
					_ = f.Close()
				}
			}
		}
	}()
}

// residentKiB reads the process's anonymous and file-backed resident memory (Linux).
func residentKiB() (anon, file int64) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		var n int64
		switch {
		case strings.HasPrefix(line, "RssAnon:"):
			_, _ = fmt.Sscan(strings.TrimPrefix(line, "RssAnon:"), &n)
			anon = n
		case strings.HasPrefix(line, "RssFile:"):
			_, _ = fmt.Sscan(strings.TrimPrefix(line, "RssFile:"), &n)
			file = n
		}
	}
	return anon, file
}
