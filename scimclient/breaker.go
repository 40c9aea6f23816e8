package scimclient

import (
	"fmt"
	"sync"
)

// breaker ends a run against a target that keeps failing: after max consecutive calls failed
// for a reason that is not the request's own, or at once when the target asks to be left alone
// longer than the run may wait, it opens and stays open for the client's life (one run). Every
// call then fails fast with ErrCircuitOpen, and every sleep in progress wakes up, so the engine
// stops dispatching within one request's time instead of working through its queue.
type breaker struct {
	max int

	mu       sync.Mutex
	failures int
	err      error // non-nil once open
	done     chan struct{}
}

func newBreaker(max int) *breaker { return &breaker{max: max, done: make(chan struct{})} }

// check returns the open circuit's error, nil while closed.
func (b *breaker) check() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// failed records a call that failed with cause (already redacted and sanitised).
func (b *breaker) failed(cause error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return
	}
	b.failures++
	if b.failures >= b.max {
		b.openLocked(fmt.Errorf("%w: %d calls in a row failed (target.max_consecutive_failures), the last: %w", ErrCircuitOpen, b.failures, cause))
	}
}

// succeeded records a call the target answered properly (a success, or a refusal of that one
// request such as 400 or 409): the target is alive.
func (b *breaker) succeeded() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = 0
}

// trip opens the circuit at once with err (which wraps ErrCircuitOpen).
func (b *breaker) trip(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.openLocked(err)
	}
}

func (b *breaker) openLocked(err error) {
	b.err = err
	close(b.done)
}
