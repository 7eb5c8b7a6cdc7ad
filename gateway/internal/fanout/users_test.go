package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/fanout"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// runPerUser starts a per-user Subscriber with linger on its own client
// of r; it is stopped when the test ends.
func runPerUser(t *testing.T, r *testkit.Redis, to fanout.Deliverer, linger time.Duration, opts ...fanout.Option) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	opts = append([]fanout.Option{fanout.PerUser(linger)}, opts...)
	s := &running{sub: fanout.New(client(t, r), to, 0, zap.NewNop(), opts...), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- s.sub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(wait):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	return s
}

// acquire is Acquire within wait, failing the test on an error.
func acquire(t *testing.T, s *running, user string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.sub.Acquire(ctx, user); err != nil {
		t.Fatalf("Acquire(%s): %v", user, err)
	}
}

// subscribers returns how many clients Redis has subscribed to channel.
func subscribers(t *testing.T, c *redis.Client, channel string) int64 {
	t.Helper()
	n, err := c.PubSubNumSub(context.Background(), channel).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n[channel]
}

// calls returns how often Redis ran cmd (INFO commandstats).
func calls(t *testing.T, c *redis.Client, cmd string) int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

// toUser publishes a dispatch for user on user's channel, as handlers-svc
// does in per-user mode.
func toUser(t *testing.T, c *redis.Client, user, event string) {
	t.Helper()
	d := proto.Dispatch{Event: event, Users: []string{user}}
	if err := c.Publish(context.Background(), proto.UserChannel(user), proto.AppendDispatch(nil, &d)).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestSubscribedBeforeAcquireReturns: Acquire returns only once Redis has
// the user's channel subscribed, so the first dispatch published right
// after it is delivered; a user without a socket here gets nothing here,
// while the shared channel keeps delivering.
func TestSubscribedBeforeAcquireReturns(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	in := make(inbox, 16)
	s := runPerUser(t, r, in, time.Minute)
	waitLive(t, s, true)

	acquire(t, s, "alice")
	if n := subscribers(t, pub, proto.UserChannel("alice")); n != 1 {
		t.Fatalf("alice's channel has %d subscribers after Acquire, want 1", n)
	}
	toUser(t, pub, "bob", "for-bob") // no socket of bob here
	toUser(t, pub, "alice", "for-alice")
	publish(t, pub, `{"event":"news","broadcast":true}`)
	for _, want := range []string{"for-alice", "news"} {
		if got := in.next(t); got.Event != want {
			t.Fatalf("got %s, want %s (and nothing for bob)", got.Event, want)
		}
	}
	if s.sub.UserChannels() != 1 {
		t.Fatalf("UserChannels() = %d, want 1", s.sub.UserChannels())
	}
}

// TestLingerReusesTheSubscription: a socket that comes back within the
// linger finds the channel still subscribed; no (un)subscription is sent.
func TestLingerReusesTheSubscription(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	in := make(inbox, 16)
	s := runPerUser(t, r, in, time.Minute)
	waitLive(t, s, true)

	acquire(t, s, "alice")
	subs, unsubs := calls(t, pub, "subscribe"), calls(t, pub, "unsubscribe")
	s.sub.Release("alice")
	acquire(t, s, "alice")
	acquire(t, s, "alice") // a second device
	s.sub.Release("alice")
	if got, got2 := calls(t, pub, "subscribe"), calls(t, pub, "unsubscribe"); got != subs || got2 != unsubs {
		t.Fatalf("SUBSCRIBE ran %d times and UNSUBSCRIBE %d times more; want none", got-subs, got2-unsubs)
	}
	toUser(t, pub, "alice", "still")
	if got := in.next(t); got.Event != "still" {
		t.Fatalf("got %s, want still", got.Event)
	}
}

// TestLingerExpiry: the channel is released once the linger passed after
// the last Release, and a socket that comes later subscribes it anew and
// gets what is published from then on; in between, a dispatch reaches
// this worker no more (the stream has it, for the resume).
func TestLingerExpiry(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	in := make(inbox, 16)
	s := runPerUser(t, r, in, 50*time.Millisecond)
	waitLive(t, s, true)

	acquire(t, s, "alice")
	s.sub.Release("alice")
	testkit.Eventually(t, wait, "alice's channel released", func() bool {
		return subscribers(t, pub, proto.UserChannel("alice")) == 0 && s.sub.UserChannels() == 0
	})
	toUser(t, pub, "alice", "while-away")
	acquire(t, s, "alice")
	toUser(t, pub, "alice", "back")
	publish(t, pub, `{"event":"marker","broadcast":true}`)
	for _, want := range []string{"back", "marker"} {
		if got := in.next(t); got.Event != want {
			t.Fatalf("got %s, want %s", got.Event, want)
		}
	}
}

// TestAcquireWhileLeaving: a socket that comes back while the channel's
// UNSUBSCRIBE is in flight waits for the channel to be subscribed again.
// Raced many times over a short linger, Acquire never returns with the
// channel unsubscribed.
func TestAcquireWhileLeaving(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	in := make(inbox, 1024)
	s := runPerUser(t, r, in, time.Millisecond)
	waitLive(t, s, true)
	for i := range 50 {
		acquire(t, s, "alice")
		if n := subscribers(t, pub, proto.UserChannel("alice")); n != 1 {
			t.Fatalf("round %d: alice's channel has %d subscribers after Acquire, want 1", i, n)
		}
		s.sub.Release("alice")
		if i%2 == 1 {
			// No longer live: its UNSUBSCRIBE is being written or was
			// just written, so the next Acquire lands on a leaving
			// channel (or, at times, one just gone).
			testkit.Eventually(t, wait, "alice's channel leaving", func() bool { return s.sub.UserChannels() == 0 })
		}
	}
}

// TestSubscriptionsBatched: many sockets of different users connecting at
// once cost a few SUBSCRIBE commands, not one each, and all are
// subscribed when their Acquires return; released, a few UNSUBSCRIBEs.
func TestSubscriptionsBatched(t *testing.T) {
	const users = 2000
	r := testkit.StartRedis(t)
	pub := client(t, r)
	in := make(inbox, 16)
	s := runPerUser(t, r, in, 10*time.Millisecond)
	waitLive(t, s, true)
	before := calls(t, pub, "subscribe")

	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if s.sub.Acquire(ctx, fmt.Sprintf("u%d", i)) != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d Acquires failed", failed.Load())
	}
	if n := s.sub.UserChannels(); n != users {
		t.Fatalf("UserChannels() = %d, want %d", n, users)
	}
	n, err := pub.PubSubNumSub(context.Background(), proto.UserChannel("u0"), proto.UserChannel(fmt.Sprint("u", users-1))).Result()
	if err != nil || n[proto.UserChannel("u0")] != 1 || n[proto.UserChannel(fmt.Sprint("u", users-1))] != 1 {
		t.Fatalf("NUMSUB %v, %v", n, err)
	}
	subs := calls(t, pub, "subscribe") - before
	// At least users/512 commands; how many more depends on how the
	// Acquires spread over time, never on one per user.
	if subs < users/512 || subs > users/4 {
		t.Fatalf("%d SUBSCRIBE commands for %d users, want a few batches", subs, users)
	}
	t.Logf("%d users subscribed with %d SUBSCRIBE commands", users, subs)

	unsubBefore := calls(t, pub, "unsubscribe")
	for i := range users {
		s.sub.Release(fmt.Sprintf("u%d", i))
	}
	testkit.Eventually(t, wait, "every channel released", func() bool { return s.sub.UserChannels() == 0 })
	if unsubs := calls(t, pub, "unsubscribe") - unsubBefore; unsubs > users/4 {
		t.Fatalf("%d UNSUBSCRIBE commands for %d users, want a few batches", unsubs, users)
	}
}

// TestUserChannelsResubscribedAfterRedisRestart: after the connection is
// lost, every user channel still wanted is subscribed again, and the
// subscription counts as established (OnSubscribed, when the worker sweeps
// its sockets against the streams) only once they all are.
func TestUserChannelsResubscribedAfterRedisRestart(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	in := make(inbox, 16)
	var allAtSweep atomic.Bool
	var subscribed atomic.Int32
	var sub atomic.Pointer[fanout.Subscriber]
	s := runPerUser(t, r, in, time.Minute, fanout.OnSubscribed(func() {
		// Runs on the reader: what a sweep started now would find.
		if s := sub.Load(); s != nil {
			allAtSweep.Store(s.UserChannels() == 3)
		}
		subscribed.Add(1)
	}))
	sub.Store(s.sub)
	waitLive(t, s, true)
	for _, u := range []string{"alice", "bob", "carol"} {
		acquire(t, s, u)
	}

	r.Stop()
	waitLive(t, s, false)
	if n := s.sub.UserChannels(); n != 0 {
		t.Fatalf("UserChannels() = %d with Redis down, want 0", n)
	}
	r.Start()
	waitLive(t, s, true)
	if subscribed.Load() != 2 || !allAtSweep.Load() {
		t.Fatalf("OnSubscribed called %d times; every user channel live then: %v", subscribed.Load(), allAtSweep.Load())
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		toUser(t, pub, u, "to-"+u)
		if got := in.next(t); got.Event != "to-"+u {
			t.Fatalf("got %s, want to-%s", got.Event, u)
		}
	}
}

// TestAcquireWaitsForRedis: with Redis down, Acquire returns ctx's error;
// Release still balances it.
func TestAcquireWaitsForRedis(t *testing.T) {
	r := testkit.StartRedis(t)
	in := make(inbox, 16)
	s := runPerUser(t, r, in, time.Minute)
	waitLive(t, s, true)
	r.Stop()
	waitLive(t, s, false)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.sub.Acquire(ctx, "alice"); err == nil {
		t.Fatal("Acquire succeeded with Redis down")
	}
	s.sub.Release("alice")
	r.Start()
	waitLive(t, s, true)
	if n := s.sub.UserChannels(); n != 0 {
		t.Fatalf("UserChannels() = %d, want 0", n)
	}
}

// TestStallProbeCoversUserChannels: in per-user mode the probe still
// notices a stalled connection; once the path flows again, the user
// channels are subscribed anew on the new connection and deliver.
func TestStallProbeCoversUserChannels(t *testing.T) {
	r := testkit.StartRedis(t)
	proxy := testkit.StartProxy(t, r.Addr())
	sub := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
	t.Cleanup(func() { _ = sub.Close() })
	pub := client(t, r)
	in := make(inbox, 16)
	s := fanout.New(sub, in, 0, zap.NewNop(), fanout.PerUser(time.Minute), fanout.ProbeWith(pub))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testkit.Eventually(t, wait, "subscribed", func() bool { return s.Live() })
	actx, acancel := context.WithTimeout(ctx, wait)
	defer acancel()
	if err := s.Acquire(actx, "alice"); err != nil {
		t.Fatal(err)
	}

	proxy.Freeze()
	testkit.Eventually(t, wait, "the stall noticed", func() bool { return !s.Live() })
	if s.Stalls() != 1 {
		t.Fatalf("Stalls() = %d, want 1", s.Stalls())
	}
	proxy.Thaw()
	testkit.Eventually(t, wait, "subscribed again, alice's channel too", func() bool {
		return s.Live() && s.UserChannels() == 1
	})
	toUser(t, pub, "alice", "after")
	if got := in.next(t); got.Event != "after" {
		t.Fatalf("got %s, want after", got.Event)
	}
}

// TestAcquireWaitsForAnUnsubscribeInFlight: the linger ended and the
// channel's UNSUBSCRIBE is on its way (held here by a frozen path) when a
// socket of the user comes back. Acquire does not return on the old
// subscription, which Redis is about to drop: it returns once the
// UNSUBSCRIBE was confirmed and a new SUBSCRIBE confirmed after it, and
// the channel delivers.
func TestAcquireWaitsForAnUnsubscribeInFlight(t *testing.T) {
	r := testkit.StartRedis(t)
	proxy := testkit.StartProxy(t, r.Addr())
	sub := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
	t.Cleanup(func() { _ = sub.Close() })
	pub := client(t, r)
	in := make(inbox, 16)
	s := fanout.New(sub, in, 0, zap.NewNop(), fanout.PerUser(time.Millisecond), fanout.ProbeWith(pub))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testkit.Eventually(t, wait, "subscribed", func() bool { return s.Live() })
	actx, acancel := context.WithTimeout(ctx, wait)
	defer acancel()
	if err := s.Acquire(actx, "alice"); err != nil {
		t.Fatal(err)
	}

	proxy.Freeze()
	s.Release("alice")
	// Not live any more: the UNSUBSCRIBE is written, and held.
	testkit.Eventually(t, wait, "alice's channel leaving", func() bool { return s.UserChannels() == 0 })
	acquired := make(chan error, 1)
	go func() { acquired <- s.Acquire(actx, "alice") }()
	select {
	case err := <-acquired:
		t.Fatalf("Acquire returned (%v) while the channel's UNSUBSCRIBE was unconfirmed", err)
	case <-time.After(100 * time.Millisecond): // a non-event: waited for, briefly
	}
	proxy.Thaw()
	if err := <-acquired; err != nil {
		t.Fatal(err)
	}
	if n := subscribers(t, pub, proto.UserChannel("alice")); n != 1 {
		t.Fatalf("alice's channel has %d subscribers after Acquire, want 1", n)
	}
	toUser(t, pub, "alice", "back")
	if got := in.next(t); got.Event != "back" {
		t.Fatalf("got %s, want back", got.Event)
	}
	if s.Stalls() != 0 {
		t.Fatalf("Stalls() = %d: the freeze was taken for a stall", s.Stalls())
	}
}

// TestAcquireRefusedWhileLagging: while the fan-out is behind its backlog,
// a user whose channel is not subscribed yet is refused at once
// (ErrLagging) instead of waiting for a confirmation queued behind it; a
// user whose channel is live is not; once the backlog drains, Acquire
// works again.
func TestAcquireRefusedWhileLagging(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	g := newGated()
	ctx, cancel := context.WithCancel(context.Background())
	s := &running{sub: fanout.New(client(t, r), g, 128, zap.NewNop(), fanout.PerUser(time.Minute)), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- s.sub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		close(g.step)
		<-s.done
	})
	waitLive(t, s, true)
	acquire(t, s, "alice")
	for i := range 40 {
		publish(t, pub, fmt.Sprintf(`{"event":"e%d","broadcast":true}`, i))
	}
	testkit.Eventually(t, wait, "lagging", s.sub.Lagging)
	if err := s.sub.Acquire(context.Background(), "bob"); !errors.Is(err, fanout.ErrLagging) {
		t.Fatalf("Acquire(bob) while lagging: %v, want ErrLagging", err)
	}
	s.sub.Release("bob")
	if err := s.sub.Acquire(context.Background(), "alice"); err != nil {
		t.Fatalf("Acquire(alice), live already, while lagging: %v", err)
	}
	s.sub.Release("alice")
	for range 40 {
		g.step <- struct{}{}
	}
	testkit.Eventually(t, wait, "not lagging", func() bool { return !s.sub.Lagging() })
	acquire(t, s, "bob")
}

// TestAcquireEndsWhenLaggingStarts: Acquire of a new user found the
// fan-out not lagging and waits for Redis's confirmation, which comes
// after 40 dispatches published just before it; the reader queues 16,
// turns Lagging on and waits for the deliverer (held here), with the
// confirmation still unread. Before the fix Acquire went on waiting for
// it until its context ended (the socket's 5 s deadline in the worker,
// which then closes the socket as "recovery store unavailable"), where a
// socket that had come a moment earlier was told ErrLagging at once
// (1013, come back later). Now the wait ends when Lagging turns on.
func TestAcquireEndsWhenLaggingStarts(t *testing.T) {
	r := testkit.StartRedis(t)
	proxy := testkit.StartProxy(t, r.Addr())
	sub := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
	t.Cleanup(func() { _ = sub.Close() })
	pub := client(t, r)
	g := newGated()
	ctx, cancel := context.WithCancel(context.Background())
	s := &running{sub: fanout.New(sub, g, 16, zap.NewNop(), fanout.PerUser(time.Minute)), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- s.sub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		close(g.step)
		<-s.done
	})
	waitLive(t, s, true)

	// Frozen, the path holds the dispatches, and bob's SUBSCRIBE behind
	// them: Redis confirms it only after it has sent them all.
	proxy.Freeze()
	for i := range 40 {
		publish(t, pub, fmt.Sprintf(`{"event":"e%d","broadcast":true}`, i))
	}
	actx, acancel := context.WithTimeout(context.Background(), wait)
	defer acancel()
	acquired := make(chan error, 1)
	start := time.Now()
	go func() { acquired <- s.sub.Acquire(actx, "bob") }()
	t.Cleanup(func() { s.sub.Release("bob") })
	testkit.Eventually(t, wait, "Acquire(bob) waiting for Redis's confirmation", func() bool {
		return waitingInAcquire()
	})
	if s.sub.Lagging() {
		t.Fatal("setup: lagging before the path thawed")
	}
	proxy.Thaw()
	testkit.Eventually(t, wait, "lagging", s.sub.Lagging)
	if err := <-acquired; !errors.Is(err, fanout.ErrLagging) {
		t.Fatalf("Acquire(bob), waiting when the fan-out started lagging: %v after %s, want ErrLagging at once",
			err, time.Since(start).Round(time.Millisecond))
	}
}

// waitingInAcquire reports whether a goroutine waits in Acquire's select.
func waitingInAcquire() bool {
	buf := make([]byte, 1<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "[select") && strings.Contains(g, "fanout.(*Subscriber).Acquire(") {
			return true
		}
	}
	return false
}
