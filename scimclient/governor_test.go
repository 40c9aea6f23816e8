package scimclient

import (
	"context"
	"testing"
	"time"
)

func TestGovernorAIMD(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	g := newGovernor(20, 2, clock.now)
	ctx := context.Background()
	send := func(n int) time.Time {
		var at time.Time
		for range n {
			if err := g.wait(ctx, clock.sleep); err != nil {
				t.Fatal(err)
			}
			at = clock.now()
		}
		return at
	}
	// 20/s with a burst of 2: 21 requests take one second
	start := clock.now()
	send(21)
	if d := clock.now().Sub(start); d < 950*time.Millisecond || d > 1050*time.Millisecond {
		t.Fatalf("21 requests at 20/s took %s", d)
	}
	at := send(1)
	// throttled at ~20/s: halved, burst 1, one pause for everyone
	if p := g.throttled(at, 2*time.Second, time.Hour); p != 2*time.Second {
		t.Fatalf("pause %s", p)
	}
	if r := g.rate(); r < 9 || r > 11 {
		t.Fatalf("rate after one event: %v", r)
	}
	// requests in flight when the throttling began are the same event
	g.throttled(at, time.Second, time.Hour)
	if r := g.rate(); r < 9 || r > 11 {
		t.Fatalf("rate after a second 429 of the same event: %v", r)
	}
	before := clock.now()
	send(1)
	if d := clock.now().Sub(before); d < 2*time.Second {
		t.Fatalf("the pause was not honoured: %s", d)
	}
	// calm seconds add back a twentieth of the throttled rate each, up to the ceiling
	for range 5 {
		clock.sleep(ctx, time.Second)
		g.succeeded()
	}
	if r := g.rate(); r < 14 || r > 16 {
		t.Fatalf("rate after 5 calm seconds: %v", r)
	}
	for range 100 {
		clock.sleep(ctx, time.Second)
		g.succeeded()
	}
	if r := g.rate(); r != 20 {
		t.Fatalf("rate never goes above the configured one: %v", r)
	}
}

func TestGovernorUnlimitedIsMeasured(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	g := newGovernor(0, 2, clock.now)
	for range 10 {
		_ = g.wait(context.Background(), clock.sleep)
		clock.sleep(context.Background(), 100*time.Millisecond) // 10/s
	}
	g.throttled(clock.now(), -1, 0)
	if r := g.rate(); r < 4 || r > 6 {
		t.Fatalf("an unlimited client sending 10/s goes to half of that, got %v", r)
	}
	// without a Retry-After the pause is the caller's back-off; the rate has a floor
	for i := range 12 {
		clock.sleep(context.Background(), time.Minute)
		if p := g.throttled(clock.now(), -1, 3*time.Second); p != 3*time.Second {
			t.Fatalf("event %d: pause %s", i, p)
		}
	}
	if r := g.rate(); r != float64(minRate) {
		t.Fatalf("the rate has a floor: %v", r)
	}
}

func TestGovernorFloorIsATenthOfTheConfiguredRate(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	g := newGovernor(20, 2, clock.now)
	for i := range 20 {
		_ = g.wait(context.Background(), clock.sleep)
		g.throttled(clock.now(), 0, 0)
		clock.sleep(context.Background(), 2*time.Second)
		if i > 0 && g.rate() < 2 {
			t.Fatalf("rate %v below a tenth of 20/s", g.rate())
		}
	}
	if g.rate() != 2 {
		t.Fatalf("rate %v", g.rate())
	}
}
