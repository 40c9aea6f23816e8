package main

import (
	"context"
	"fmt"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"time"
)

// heapProfileEnv names a file prefix: when set, `sync` writes a heap profile to
// PREFIX.PID.pprof each time the live heap reaches a new high (in steps of 8 MiB), so the
// profile shows what the peak held. It is for measuring memory (go tool pprof), not for
// production, and costs nothing when unset.
const heapProfileEnv = "SCIMSYNC_HEAP_PROFILE"

// profilePeakHeap samples the heap every 100 ms until ctx ends.
func profilePeakHeap(ctx context.Context) {
	prefix := os.Getenv(heapProfileEnv)
	if prefix == "" {
		return
	}
	path := fmt.Sprintf("%s.%d.pprof", prefix, os.Getpid())
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
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
