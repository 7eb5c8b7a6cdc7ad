package fanout_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/fanout"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestStallDetected: the subscriber's connection freezes while Redis and
// the connection stay up (a proxy holds every byte). The probe notices
// within 2 s, the subscription is no longer live (so /readyz is 503), and
// once the path flows again the worker subscribes anew and is told so
// (OnSubscribed: where it fills the gap from the streams), with the time
// it was down (OnRestored).
func TestStallDetected(t *testing.T) {
	r := testkit.StartRedis(t)
	proxy := testkit.StartProxy(t, r.Addr())
	sub := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
	t.Cleanup(func() { _ = sub.Close() })
	var subscribed, restored atomic.Int32
	in := make(inbox, 16)
	s := fanout.New(sub, in, 0, zap.NewNop(),
		fanout.ProbeWith(client(t, r)),
		fanout.OnSubscribed(func() { subscribed.Add(1) }),
		fanout.OnRestored(func(time.Duration) { restored.Add(1) }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testkit.Eventually(t, wait, "subscribed", func() bool { return s.Live() })

	proxy.Freeze()
	frozen := time.Now()
	testkit.Eventually(t, wait, "the stall noticed", func() bool { return !s.Live() })
	// Measured, not asserted as a hard timing: the contract's 2 s, with
	// room for a loaded test machine.
	if took := time.Since(frozen); took > 4*time.Second {
		t.Errorf("the stall was noticed after %s, want about 1.5 s", took)
	}
	if s.Stalls() != 1 {
		t.Fatalf("Stalls() = %d, want 1", s.Stalls())
	}
	proxy.Thaw()
	testkit.Eventually(t, wait, "subscribed again", func() bool { return s.Live() && subscribed.Load() == 2 })
	if restored.Load() != 1 {
		t.Fatalf("OnRestored called %d times, want 1", restored.Load())
	}
	publish(t, client(t, r), `{"event":"after","broadcast":true}`)
	if got := in.next(t); got.Event != "after" {
		t.Fatalf("got %+v, want after", got)
	}
	if s.Stalls() != 1 {
		t.Fatalf("Stalls() = %d after the path flowed again, want 1", s.Stalls())
	}
}

// TestQuietChannelIsNoStall: a subscription that delivers its probes is
// never taken for stalled, however quiet the dispatch channel.
func TestQuietChannelIsNoStall(t *testing.T) {
	r := testkit.StartRedis(t)
	s := run(t, r, make(inbox, 1))
	waitLive(t, s, true)
	testkit.Eventually(t, wait, "three probes back", func() bool { return s.sub.Probed() >= 3 })
	if n := s.sub.Stalls(); n != 0 || !s.sub.Live() {
		t.Fatalf("a quiet, healthy subscription: %d stalls, live %v", n, s.sub.Live())
	}
}

// TestFrozenRedisIsAStall: a Redis that stops answering altogether (its
// process stopped) accepts no probe either; the subscription is still
// taken down within 2 s, and comes back when Redis does.
func TestFrozenRedisIsAStall(t *testing.T) {
	r := testkit.StartRedis(t)
	s := run(t, r, make(inbox, 1))
	waitLive(t, s, true)
	testkit.Eventually(t, wait, "a probe back", func() bool { return s.sub.Probed() >= 1 })
	r.Pause(t)
	testkit.Eventually(t, wait, "the frozen Redis noticed", func() bool { return !s.sub.Live() })
	if s.sub.Stalls() != 1 {
		t.Fatalf("Stalls() = %d, want 1", s.sub.Stalls())
	}
	r.Continue()
	waitLive(t, s, true)
}
