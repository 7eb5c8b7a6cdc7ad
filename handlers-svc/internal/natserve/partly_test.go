package natserve_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/natserve"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestUnsentAfterDeliveredIsNotUnavailable: a handler that delivered one
// dispatch, ran out of time and returned its second dispatch's error,
// unavailable (that one was never sent), is answered timeout, and its
// idempotency key is kept: the client's repeat is refused instead of
// running the handler again and delivering the first event twice. Before,
// the key was freed and the repeat ran it (a review's reproduction).
func TestUnsentAfterDeliveredIsNotUnavailable(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, srv := idemStore(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	d := dispatch.New(rdb, dispatch.Options{})
	var calls, delivered atomic.Int32
	h := event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
		calls.Add(1)
		if _, err := d.Dispatch(ctx, dispatch.Message{Event: "first", Users: []string{"bob"}}); err != nil {
			return err
		}
		delivered.Add(1)
		<-ctx.Done() // out of time before the second dispatch
		_, err := d.Dispatch(ctx, dispatch.Message{Event: "second", Users: []string{"bob"}})
		if !dispatch.NotDelivered(err) {
			t.Errorf("the second dispatch: %v, want an error saying it was not sent", err)
		}
		return err // as handlers.md allows: the dispatch's error, unchanged
	})
	serve(t, ns, h, zap.NewNop(), natserve.Config{Idem: store, Timeout: 200 * time.Millisecond})
	nc := connect(t, ns)
	first := keyed(t, nc, "alice", "send", `{}`, "k1")
	if !strings.Contains(first, `"code":"timeout"`) || !strings.Contains(first, "some of its events may have been delivered") {
		t.Fatalf("first reply %s, want timeout: an event may have been delivered", first)
	}
	again := keyed(t, nc, "alice", "send", `{}`, "k1")
	if !strings.Contains(again, `"code":"timeout"`) {
		t.Errorf("the repeat: %s, want timeout (outcome unknown)", again)
	}
	if c, n := calls.Load(), delivered.Load(); c != 1 || n != 1 {
		t.Errorf("the handler ran %d times and its first dispatch was delivered %d times, want once each", c, n)
	}

	// Without an idempotency key the answer is the same: unavailable
	// would tell the client that nothing was done.
	plain := keyed(t, nc, "alice", "send", `{}`, "")
	if !strings.Contains(plain, `"code":"timeout"`) {
		t.Errorf("without a key: %s, want timeout", plain)
	}
}

// TestClusterPartlyDeliveredThenUnavailableIsNotUnavailable: on a Redis
// Cluster one of whose masters refuses writes (OOM), a handler notifies
// alice and bob (one call per master: bob's runs,
// alice's is refused, partly delivered), goes on as a best-effort
// notification allows, then fails on a dispatch to alice alone
// (unavailable: refused, nothing ran) and returns that error. Bob got the
// first event, so the request must be answered timeout and its key kept,
// as TestUnsentAfterDeliveredIsNotUnavailable has it for one Redis.
// Found: the partly delivered dispatch did not mark the request's
// late.Effects (its error wraps the OOM refusal, which outcomeOf reads as
// not run), so natserve answers unavailable ("nothing was done, retry"),
// frees the key, and the client's repeat runs the handler again: bob gets
// the notification twice. Now a partly delivered dispatch marks it
// (outcomeOf reads it as unknown).
func TestClusterPartlyDeliveredThenUnavailableIsNotUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := testkit.StartNATS(t)
	store, _ := idemStore(t)
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: dispatch.OnConnect, MaxRetries: -1})
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	full := c.NodeOf(proto.UserStreamKey("alice")).Addr()
	bob := ""
	for i := 0; bob == ""; i++ {
		if u := fmt.Sprintf("bob%d", i); c.NodeOf(proto.UserStreamKey(u)).Addr() != full {
			bob = u
		}
	}
	if _, err := d.Dispatch(ctx, dispatch.Message{Event: "warm", Users: []string{"alice", bob}}); err != nil {
		t.Fatal(err)
	}
	node := redis.NewClient(&redis.Options{Addr: full})
	defer node.Close()
	if err := node.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := node.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	defer node.ConfigSet(context.Background(), "maxmemory", "0")

	var calls atomic.Int32
	h := event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
		calls.Add(1)
		if _, err := d.Dispatch(ctx, dispatch.Message{Event: "notice", Users: []string{"alice", bob}}); err != nil &&
			!errors.Is(err, dispatch.ErrPartlyDelivered) {
			return err
		}
		_, err := d.Dispatch(ctx, dispatch.Message{Event: "for-alice", Users: []string{"alice"}})
		return err
	})
	serve(t, ns, h, zap.NewNop(), natserve.Config{Idem: store, Timeout: 5 * time.Second})
	nc := connect(t, ns)
	before := rdb.XLen(ctx, proto.UserStreamKey(bob)).Val()

	first := keyed(t, nc, "carol", "send", `{}`, "k1")
	if n := rdb.XLen(ctx, proto.UserStreamKey(bob)).Val(); n != before+1 {
		t.Fatalf("bob's stream %d from %d after the first request (%s): the fault did not reproduce", n, before, first)
	}
	if strings.Contains(first, `"code":"unavailable"`) {
		t.Errorf("first reply %s: unavailable tells the client nothing was done, though bob got the notice", first)
	}
	again := keyed(t, nc, "carol", "send", `{}`, "k1")
	if n := rdb.XLen(ctx, proto.UserStreamKey(bob)).Val(); calls.Load() != 1 || n != before+1 {
		t.Errorf("the repeat with the same key (%s): the handler ran %d times, bob has %d new events; want once each", again, calls.Load(), n-before)
	}
}
