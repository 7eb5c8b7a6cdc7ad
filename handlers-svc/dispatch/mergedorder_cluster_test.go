package dispatch_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestClusterNothingDeliveredEitherOrder found by review (fixed): on a Redis Cluster, a dispatch to two partitions where
// one partition's master refuses the call (OOM: nothing runs) and the
// other's call fails its unit before writing anything (WRONGTYPE on the
// meta key) delivered nothing at all. With the failed unit's partition
// first, clusterResult answers handler_error and NotDelivered; with the
// refused partition first, it answers timeout "dispatch partly
// delivered", not NotDelivered (reached is set by the other partition's
// handler_error, which ran nothing): the same outcome is told two ways by
// the order of the users, and with an idempotency key the key is marked
// unknown, so the message can never be sent with it until it expires.
func TestClusterNothingDeliveredEitherOrder(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	// full's partition's master will refuse writes; broken's, on another
	// master, has a damaged meta key.
	users := spreadUsers(50)
	full := users[0]
	fullNode := c.NodeOf(proto.UserStreamKey(full))
	var broken string
	for _, u := range users[1:] {
		if c.NodeOf(proto.UserStreamKey(u)).Addr() != fullNode.Addr() {
			broken = u
			break
		}
	}
	if broken == "" {
		t.Fatal("no user on another master")
	}
	// Warm up: the run keys recorded and connections open before full's
	// master is full.
	if _, err := d.Dispatch(ctx, dispatch.Message{Event: "warm", Users: []string{full, broken}}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, proto.UserMetaKey(broken), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	node := redis.NewClient(&redis.Options{Addr: fullNode.Addr()})
	defer node.Close()
	if err := node.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := node.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	defer node.ConfigSet(context.Background(), "maxmemory", "0")

	lens := func() (int64, int64) {
		a, err := rdb.XLen(ctx, proto.UserStreamKey(full)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		b, err := rdb.XLen(ctx, proto.UserStreamKey(broken)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		return a, b
	}
	fa, fb := lens()
	for _, order := range [][]string{{broken, full}, {full, broken}} {
		_, err := d.Dispatch(ctx, dispatch.Message{Event: "e", Users: order})
		if a, b := lens(); a != fa || b != fb {
			t.Fatalf("users %v: streams grew to %d, %d from %d, %d; want nothing recorded", order, a, b, fa, fb)
		}
		if err == nil {
			t.Fatalf("users %v: no error", order)
		}
		if !dispatch.NotDelivered(err) {
			t.Errorf("users %v: %v (%v): nothing was recorded or published, want NotDelivered", order, err, event.WireError(err))
		}
	}
}
