package streams_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// twoPartitionUsers returns a user of partition 0 and one of another
// partition on another master of c.
func twoPartitionUsers(t *testing.T, c *testkit.RedisCluster) (first, second string) {
	t.Helper()
	for i := 0; first == ""; i++ {
		if u := fmt.Sprintf("first-%d", i); proto.PartitionOf(u) == 0 {
			first = u
		}
	}
	node := c.NodeOf(proto.UserStreamKey(first)).Addr()
	for i := 0; second == ""; i++ {
		if u := fmt.Sprintf("second-%d", i); c.NodeOf(proto.UserStreamKey(u)).Addr() != node {
			second = u
		}
	}
	return first, second
}

// TestClusterPublishUnitErrorNamesTheDispatch: on one Redis, Publish's
// *UnitError names the dispatch that failed (its Unit is the dispatch's
// index: one unit each). Found by review: on a Redis Cluster Publish
// makes one call per partition and returned the failing call's UnitError
// as it was, Unit being the index in that partition's call: with ds = [to
// first (ran), to second (failed)], the error named the dispatch to
// first, which was delivered. Unit is the index in ds.
func TestClusterPublishUnitErrorNamesTheDispatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
	first, second := twoPartitionUsers(t, c)
	if err := rdb.Set(ctx, proto.UserMetaKey(second), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	args := json.RawMessage(`{}`)
	_, _, err := streams.Publish(ctx, rdb, time.Minute,
		&proto.Dispatch{Event: "e", Args: args, Users: []string{first}},
		&proto.Dispatch{Event: "e", Args: args, Users: []string{second}})
	if n := rdb.XLen(ctx, proto.UserStreamKey(first)).Val(); n != 1 {
		t.Fatalf("%s's stream holds %d events, want the 1 its partition's call recorded", first, n)
	}
	ue, ok := errors.AsType[*streams.UnitError](err)
	if !ok {
		t.Fatalf("Publish: %v, want a *UnitError", err)
	}
	if ue.Unit != 1 {
		t.Errorf("Publish: %v: names unit %d, the dispatch to %s, which was delivered; want 1, the dispatch to %s that failed", err, ue.Unit, first, second)
	}
}

// TestClusterPublishPartlyDeliveredIsTold: on a Redis Cluster, Publish
// runs one call per partition, one after the other. Found by review: a
// later partition refused (OOM: nothing ran there) after an earlier one
// recorded and published its part gave the very error the same refusal
// gives when nothing at all was delivered, and no positions. The error
// wraps ErrPartlyPublished and the positions of the part that ran come
// with it.
func TestClusterPublishPartlyDeliveredIsTold(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
	first, second := twoPartitionUsers(t, c)
	args := json.RawMessage(`{}`)
	if _, _, err := streams.Publish(ctx, rdb, time.Minute, &proto.Dispatch{Event: "warm", Args: args, Users: []string{first, second}}); err != nil {
		t.Fatal(err)
	}
	node := redis.NewClient(&redis.Options{Addr: c.NodeOf(proto.UserStreamKey(second)).Addr()})
	defer node.Close()
	if err := node.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := node.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	defer node.ConfigSet(context.Background(), "maxmemory", "0")

	// Nothing delivered: the refused partition alone.
	_, _, none := streams.Publish(ctx, rdb, time.Minute, &proto.Dispatch{Event: "e", Args: args, Users: []string{second}})
	// Partly delivered: first's partition (0) runs first, then second's
	// is refused.
	pos, _, partly := streams.Publish(ctx, rdb, time.Minute, &proto.Dispatch{Event: "e", Args: args, Users: []string{first, second}})
	if n := rdb.XLen(ctx, proto.UserStreamKey(first)).Val(); n != 2 {
		t.Fatalf("%s's stream holds %d events, want 2 (warm-up, and the partly delivered one)", first, n)
	}
	if none == nil || partly == nil {
		t.Fatalf("errors %v, %v: want both to fail", none, partly)
	}
	if none.Error() == partly.Error() && len(pos) == 0 {
		t.Errorf("nothing delivered and partly delivered give the same error %q and no positions: the caller cannot tell that %s got it", partly, first)
	}
	if errors.Is(none, streams.ErrPartlyPublished) || !errors.Is(partly, streams.ErrPartlyPublished) {
		t.Errorf("errors %v, %v: want only the second to wrap ErrPartlyPublished", none, partly)
	}
	if len(pos) != 2 || pos[0] == "" || pos[1] != "" {
		t.Errorf("partly delivered: positions %q, want %s's (it has it) and \"\" for %s", pos, first, second)
	}
}

// TestClusterPublishTriesEveryPartition: a partition whose call fails
// does not stop the calls of the partitions after it, as handlers-svc's
// dispatcher sends them all: with the failing dispatch first, the one
// after it is still recorded, and the error says so.
func TestClusterPublishTriesEveryPartition(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
	first, second := twoPartitionUsers(t, c)
	if err := rdb.Set(ctx, proto.UserMetaKey(second), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	args := json.RawMessage(`{}`)
	pos, _, err := streams.Publish(ctx, rdb, time.Minute,
		&proto.Dispatch{Event: "e", Args: args, Users: []string{second}},
		&proto.Dispatch{Event: "e", Args: args, Users: []string{first}})
	if n := rdb.XLen(ctx, proto.UserStreamKey(first)).Val(); n != 1 {
		t.Fatalf("%s's stream holds %d events, want 1: its partition's call comes after the failed one, and must still run", first, n)
	}
	ue, ok := errors.AsType[*streams.UnitError](err)
	if !ok || ue.Unit != 0 || !errors.Is(err, streams.ErrPartlyPublished) {
		t.Fatalf("Publish: %v, want dispatch 0's *UnitError, wrapping ErrPartlyPublished", err)
	}
	if len(pos) != 2 || pos[0] != "" || pos[1] == "" {
		t.Errorf("positions %q: want \"\" for %s and one for %s", pos, second, first)
	}
}

// TestPublishFailedAfterRecordingNamesWhoHasIt: on one Redis, a dispatch
// whose one unit Redis fails after it recorded some of its users (alice,
// before WRONGTYPE on bad's meta) is partly published: alice has it, so
// Publish's error wraps ErrPartlyPublished and her position comes with
// it, the event's in her stream; the users after bad get "".
func TestPublishFailedAfterRecordingNamesWhoHasIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb := client(t)
	if err := rdb.Set(ctx, proto.UserMetaKey("bad"), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	pos, _, err := streams.Publish(ctx, rdb, time.Minute,
		&proto.Dispatch{Event: "e", Args: json.RawMessage(`{}`), Users: []string{"alice", "bad", "bob"}})
	if ue, ok := errors.AsType[*streams.UnitError](err); !errors.Is(err, streams.ErrPartlyPublished) || !ok || !ue.Wrote {
		t.Fatalf("Publish: %v, want partly published, a unit that wrote", err)
	}
	last, lerr := rdb.XRevRangeN(ctx, proto.UserStreamKey("alice"), "+", "-", 1).Result()
	if lerr != nil || len(last) != 1 || len(pos) != 3 || !strings.HasSuffix(pos[0], "."+last[0].ID) || pos[1] != "" || pos[2] != "" {
		t.Errorf("positions %q, alice's stream %v (%v): want alice's event's, then none", pos, last, lerr)
	}
	if n := rdb.XLen(ctx, proto.UserStreamKey("bob")).Val(); n != 0 {
		t.Errorf("bob's stream holds %d events, want none: the unit failed before him", n)
	}
}
