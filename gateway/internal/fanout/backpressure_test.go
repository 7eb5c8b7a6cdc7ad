package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/fanout"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestFullQueueIsNoStall: a worker that is merely behind, its queue full
// for longer than StallAfter (1.5 s), keeps its healthy subscription.
// Before the fix it was taken for stalled: the reader waits to queue a
// message, so it reads no probe either, and the prober closed the
// connection. What
// Redis and the socket buffers held (the room operations.md sizes
// client-output-buffer-limit for: "about 850,000 dispatches") is dropped,
// /readyz turns 503, the stall counter and its log blame the network, and
// the worker sweeps every socket against its streams while it is
// overloaded. Transient dispatches of that window are lost for good; here
// 40 broadcasts are published, and not all of them arrive once the
// deliverer catches up.
func TestFullQueueIsNoStall(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	g := newGated()
	s := runQueue(t, r, g, 16) // the reader blocks once 16 wait and 1 is delivered
	waitLive(t, s, true)
	testkit.Eventually(t, wait, "a probe back", func() bool { return s.sub.Probed() >= 1 })
	const burst = 40
	for i := range burst {
		publish(t, pub, fmt.Sprintf(`{"event":"e%d","broadcast":true}`, i))
	}
	testkit.Eventually(t, wait, "the queue is full", func() bool { return s.sub.Backlog() >= 16 })
	// The deliverer is slow for twice StallAfter: the scenario itself, not
	// a wait for a condition. Redis and the connection are healthy
	// throughout.
	deadline := time.Now().Add(2 * fanout.StallAfter)
	for time.Now().Before(deadline) {
		if s.sub.Stalls() > 0 || !s.sub.Live() {
			t.Errorf("a slow deliverer taken for a stalled subscription: stalls %d, live %v after %s of a full queue",
				s.sub.Stalls(), s.sub.Live(), 2*fanout.StallAfter-time.Until(deadline))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(g.step)
	testkit.Eventually(t, wait, "the backlog drains", func() bool { return s.sub.Backlog() == 0 && s.sub.Live() })
	// A probe published after the drain comes back on the connection
	// after anything still on its way, which is then delivered.
	p := s.sub.Probed()
	testkit.Eventually(t, wait, "a probe back after the drain", func() bool { return s.sub.Probed() > p })
	testkit.Eventually(t, wait, "the backlog drains again", func() bool { return s.sub.Backlog() == 0 })
	got := g.events()
	if len(got) != burst {
		t.Errorf("delivered %d of %d broadcasts published to a live, healthy subscription (stalls %d, resubscriptions %d)",
			len(got), burst, s.sub.Stalls(), s.sub.Resubscriptions())
	}
}

// TestByteBoundIsLagging: a reader held at the queue's byte bound
// (QueueBytes; large dispatches) is Lagging. Before the fix it was not: the count of
// queued messages stays under the high mark, so envelopes keep being
// accepted (forward's Overloaded) and, in per_user mode, Acquire of a new
// user does not answer ErrLagging at once but waits for a confirmation
// that the blocked reader never reads, until the socket's own deadline
// (resumeTimeout, 5 s in the worker, which then closes it as "recovery
// store unavailable"). With the defaults (32,768 messages, 64 MiB, high
// mark 4,096) any dispatches averaging over 16 KiB reach the byte bound
// first.
func TestByteBoundIsLagging(t *testing.T) {
	r := testkit.StartRedis(t)
	h := held{release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	s := fanout.New(client(t, r), h, 1000, zap.NewNop(), fanout.QueueBytes(100<<10), fanout.PerUser(time.Minute))
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		close(h.release)
		<-done
	})
	testkit.Eventually(t, wait, "subscribed", s.Live)
	pub := client(t, r)
	big := `{"event":"big","args":"` + strings.Repeat("x", 40<<10) + `","broadcast":true}`
	for range 10 {
		publish(t, pub, big)
	}
	testkit.Eventually(t, wait, "the queue at its byte bound", func() bool { return s.BacklogBytes() >= 80<<10 })
	// The reader gets to the third message, which the bound holds, a
	// moment after the second is queued: awaited, not assumed.
	testkit.Eventually(t, wait, "Lagging with the reader held at the byte bound", s.Lagging)
	actx, acancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer acancel()
	start := time.Now()
	err := s.Acquire(actx, "bob")
	s.Release("bob")
	if !errors.Is(err, fanout.ErrLagging) {
		t.Errorf("Acquire(bob) with the reader held at the byte bound: %v after %s, want ErrLagging at once",
			err, time.Since(start).Round(time.Millisecond))
	}
}
