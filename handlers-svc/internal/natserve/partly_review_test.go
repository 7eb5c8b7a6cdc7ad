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

// TestClusterPartlyDeliveredThenUnavailableIsNotUnavailable (review,
// failing): on a Redis Cluster one of whose masters refuses writes (OOM),
// a handler notifies alice and bob (one call per master: bob's runs,
// alice's is refused, partly delivered), goes on as a best-effort
// notification allows, then fails on a dispatch to alice alone
// (unavailable: refused, nothing ran) and returns that error. Bob got the
// first event, so the request must be answered timeout and its key kept,
// as TestUnsentAfterDeliveredIsNotUnavailable has it for one Redis.
// Found: the partly delivered dispatch did not mark the request's
// late.Effects (its error wraps the OOM refusal, which outcomeOf reads as
// not run), so natserve answers unavailable ("nothing was done, retry"),
// frees the key, and the client's repeat runs the handler again: bob gets
// the notification twice.
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
