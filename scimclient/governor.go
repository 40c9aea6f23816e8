package scimclient

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Pacing after the target throttles.
const (
	minRate       = rate.Limit(0.5) // never slower than one request every 2 s
	floorShare    = 10              // nor slower than a tenth of the configured rate
	decreaseEvery = time.Second     // multiplicative decrease at most this often
	increaseEvery = time.Second     // additive increase at most this often, and not right after a decrease
	rateWindow    = 2 * time.Second // the send rate is measured over this window
)

// governor paces every request of one client, shared by all its workers:
//   - the configured rate and burst (target.requests_per_second, target.burst);
//   - one pause that every worker honours after the target said "too many requests" or
//     "unavailable, retry after": the wait is served once, by everyone together, instead of
//     each worker sleeping and retrying on its own;
//   - additive increase / multiplicative decrease: each throttling event halves the rate the
//     client was really sending at (measured, not configured: halving a limit of 20/s does
//     nothing to a client that sends 3/s), and the burst drops to 1. Each calm second then adds
//     back a twentieth of the throttled rate, so the client stays slower for the rest of the
//     run and creeps back towards the target's limit instead of bursting into it again. The
//     rate never falls below a tenth of the configured one (nor 0.5/s): a target that throttles
//     a share of requests at random would otherwise drive a run to a crawl, and the shared
//     Retry-After pause still protects it.
type governor struct {
	lim *rate.Limiter
	now func() time.Time

	mu           sync.Mutex
	ceiling      rate.Limit // configured; rate.Inf when unlimited
	floor        rate.Limit // the lowest rate a decrease goes to
	step         rate.Limit // additive increase; 0 before any throttling
	pauseUntil   time.Time
	lastDecrease time.Time
	lastIncrease time.Time
	events       int // throttling events so far
	sent         [256]time.Time
	nsent        int // requests ever sent; sent is a ring of the latest
}

func newGovernor(rps float64, burst int, now func() time.Time) *governor {
	g := &governor{ceiling: rate.Inf, floor: minRate, now: now}
	if rps > 0 {
		g.ceiling = rate.Limit(rps)
		g.floor = max(minRate, g.ceiling/floorShare)
	}
	g.lim = rate.NewLimiter(g.ceiling, max(burst, 1))
	return g
}

// wait blocks until the shared pause is over and the limiter grants a request. sleep is the
// client's interruptible sleep.
func (g *governor) wait(ctx context.Context, sleep func(context.Context, time.Duration) error) error {
	for {
		if err := g.waitPause(ctx, sleep); err != nil {
			return err
		}
		// the limiter on the governor's clock and the client's sleep, so an open breaker wakes
		// a worker waiting for its turn, and tests need not wait in real time
		now := g.now()
		res := g.lim.ReserveN(now, 1)
		if !res.OK() {
			return fmt.Errorf("rate limit: no request can be granted")
		}
		if d := res.DelayFrom(now); d > 0 {
			if err := sleep(ctx, d); err != nil {
				res.CancelAt(g.now())
				return err
			}
		}
		g.mu.Lock()
		now = g.now()
		if g.pauseUntil.After(now) {
			// a pause began while this worker waited for its turn: wait it out and queue again,
			// so the workers do not all fire the moment it ends
			g.mu.Unlock()
			continue
		}
		g.sent[g.nsent%len(g.sent)] = now
		g.nsent++
		g.mu.Unlock()
		return nil
	}
}

// waitPause sleeps until the shared pause is over; the pause may be extended meanwhile.
func (g *governor) waitPause(ctx context.Context, sleep func(context.Context, time.Duration) error) error {
	for {
		g.mu.Lock()
		d := g.pauseUntil.Sub(g.now())
		g.mu.Unlock()
		if d <= 0 {
			return nil
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

// measured estimates the send rate from the requests of the last rateWindow: the intervals
// between them over the time they span (at least 100 ms, so a burst reads as fast, not
// infinite). With one request or none there is no rate to speak of: 1/s.
func (g *governor) measured(now time.Time) rate.Limit {
	n := min(g.nsent, len(g.sent))
	in := 0
	oldest := now
	for i := 0; i < n; i++ {
		t := g.sent[(g.nsent-1-i)%len(g.sent)]
		if now.Sub(t) > rateWindow {
			break
		}
		in++
		oldest = t
	}
	if in < 2 {
		return 1
	}
	return rate.Limit(float64(in-1) / max(now.Sub(oldest), 100*time.Millisecond).Seconds())
}

// throttled records that a request sent at sentAt was throttled and that the target asked for
// wait (negative: it named none, and noWait is used). It returns the pause everyone now observes. Several requests
// in flight when the target starts throttling are one event: only a request sent after the last
// decrease, and a second or more after it, lowers the rate again.
func (g *governor) throttled(sentAt time.Time, wait, noWait time.Duration) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if sentAt.After(g.lastDecrease) && now.Sub(g.lastDecrease) >= decreaseEvery {
		g.events++
		base := min(g.lim.Limit(), max(g.measured(now), g.floor))
		g.lim.SetLimitAt(now, max(base/2, g.floor))
		g.lim.SetBurstAt(now, 1)
		g.step = max(minRate, base/20)
		g.lastDecrease = now
	}
	if wait < 0 {
		wait = noWait // no Retry-After: the caller's back-off for this attempt
	}
	if until := now.Add(wait); until.After(g.pauseUntil) {
		g.pauseUntil = until
	}
	return g.pauseUntil.Sub(now)
}

// succeeded lets the rate recover additively after a calm second.
func (g *governor) succeeded() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.step == 0 {
		return
	}
	now := g.now()
	if now.Sub(g.lastDecrease) < increaseEvery || now.Sub(g.lastIncrease) < increaseEvery {
		return
	}
	if cur := g.lim.Limit(); cur < g.ceiling {
		g.lim.SetLimitAt(now, min(cur+g.step, g.ceiling))
		g.lastIncrease = now
	}
}

// rate is the current request rate limit; 0 when unlimited.
func (g *governor) rate() float64 {
	if l := g.lim.Limit(); l != rate.Inf {
		return float64(l)
	}
	return 0
}
