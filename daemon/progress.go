package daemon

import (
	"fmt"
	gosync "sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Progress reports a long run while it goes: every interval a log line and, through status, a
// systemd STATUS= with what is done, the rate and the time left. Its methods are cheap enough to
// call for every directory entry and every write, and safe from several goroutines.
type Progress struct {
	log      *zap.Logger
	status   func(string) // systemd STATUS=; nil outside the daemon
	bar      func(done, total int)
	interval time.Duration
	now      func() time.Time

	read     atomic.Int64 // directory entries read so far
	activity atomic.Int64 // unix nanos of the last sign of life, for the watchdog

	mu        gosync.Mutex
	started   time.Time
	applyFrom time.Time
	last      time.Time
}

// NewProgress reports to log (and to status when not nil) every interval.
func NewProgress(log *zap.Logger, status func(string), interval time.Duration) *Progress {
	p := &Progress{log: log, status: status, interval: interval, now: time.Now}
	p.started = p.now()
	p.last = p.started
	p.Touch()
	return p
}

// WithBar sends every apply step to bar (a terminal progress bar) instead of the periodic
// log lines, which would tear it.
func (p *Progress) WithBar(bar func(done, total int)) *Progress {
	p.bar = bar
	return p
}

// Touch records a sign of life (a SCIM request answered, a page read).
func (p *Progress) Touch() { p.activity.Store(p.now().UnixNano()) }

// LastActivity is when the run last showed a sign of life.
func (p *Progress) LastActivity() time.Time { return time.Unix(0, p.activity.Load()) }

// Read counts one directory entry read.
func (p *Progress) Read() {
	n := p.read.Add(1)
	p.Touch()
	if p.bar != nil || !p.due() {
		return
	}
	msg := fmt.Sprintf("reading the directory: %d entries", n)
	p.log.Info("sync progress", zap.String("phase", "read"), zap.Int64("entries", n))
	if p.status != nil {
		p.status("syncing: " + msg)
	}
}

// Apply is a sync.Progress: done of total writes are finished.
func (p *Progress) Apply(done, total int) {
	p.Touch()
	if p.bar != nil {
		p.bar(done, total)
		return
	}
	p.mu.Lock()
	if p.applyFrom.IsZero() {
		p.applyFrom = p.now()
	}
	from := p.applyFrom
	p.mu.Unlock()
	if done < total && !p.due() {
		return
	}
	elapsed := p.now().Sub(from)
	rate, eta := Rate(done, total, elapsed)
	line := fmt.Sprintf("%d/%d changes applied, %.1f/s, ETA %s", done, total, rate, eta)
	p.log.Info("sync progress", zap.String("phase", "apply"), zap.Int("done", done), zap.Int("total", total),
		zap.Float64("per_second", rate), zap.Duration("eta", eta))
	if p.status != nil {
		p.status("syncing: " + line)
	}
}

// due reports (once per interval) that a line is due.
func (p *Progress) due() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if now.Sub(p.last) < p.interval {
		return false
	}
	p.last = now
	return true
}

// Rate is done per second over elapsed, and the time left for the rest at that rate, rounded to
// the second.
func Rate(done, total int, elapsed time.Duration) (float64, time.Duration) {
	if done <= 0 || elapsed <= 0 {
		return 0, 0
	}
	rate := float64(done) / elapsed.Seconds()
	left := time.Duration(float64(total-done) / rate * float64(time.Second))
	return rate, left.Round(time.Second)
}
