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

// TestFailedBeforeWritingIsNotDelivered: a dispatch that Redis fails
// inside the publish script before any of it was recorded or published
// (WRONGTYPE on the meta key of its one user) is handler_error, as any
// failure inside the script, but NotDelivered: a retry is safe, and its
// idempotency key is freed rather than left unknown for IdempotencyTTL,
// so that the retry dispatches once the key is mended. One that failed
// after writing some of it (alice recorded before bob's key failed) is
// not NotDelivered.
func TestFailedBeforeWritingIsNotDelivered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb := documentedClient(t)
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	if err := rdb.Set(ctx, proto.UserMetaKey("bob"), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	m := dispatch.Message{Event: "e", Users: []string{"bob"}, IdempotencyKey: "e/bob"}
	_, err := d.Dispatch(ctx, m)
	if w := event.WireError(err); w == nil || w.Code != proto.CodeHandlerError || !dispatch.NotDelivered(err) {
		t.Fatalf("dispatch failing before it wrote: %v (%v), want handler_error and NotDelivered", err, w)
	}
	if err := rdb.Del(ctx, proto.UserMetaKey("bob")).Err(); err != nil {
		t.Fatal(err)
	}
	if pos, err := d.Dispatch(ctx, m); err != nil || pos.Replayed || pos.Users["bob"] == "" {
		t.Fatalf("retry with the key once bob's meta is mended: %+v, %v; want it dispatched", pos, err)
	}

	if err := rdb.Set(ctx, proto.UserMetaKey("carol"), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err = d.Dispatch(ctx, dispatch.Message{Event: "e", Users: []string{"alice", "carol"}})
	if w := event.WireError(err); w == nil || w.Code != proto.CodeHandlerError || dispatch.NotDelivered(err) {
		t.Fatalf("dispatch failing after alice's write: %v (%v), want handler_error, not NotDelivered", err, w)
	}
	if n := rdb.XLen(ctx, proto.UserStreamKey("alice")).Val(); n != 1 {
		t.Fatalf("alice's stream holds %d events, want the one written before carol's failed", n)
	}
}

// TestClusterFailedPartitionAlone: on a Redis Cluster, a dispatch whose
// call to one partition Redis fails before it wrote anything, while the
// other partitions' calls ran, is handler_error and not NotDelivered (the
// others delivered it); a dispatch to that partition's failing user alone
// is NotDelivered.
func TestClusterFailedPartitionAlone(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	users := spreadUsers(20)
	broken := users[0]
	if err := rdb.Set(ctx, proto.UserMetaKey(broken), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := d.Dispatch(ctx, dispatch.Message{Event: "e", Users: []string{broken}})
	if w := event.WireError(err); w == nil || w.Code != proto.CodeHandlerError || !dispatch.NotDelivered(err) {
		t.Fatalf("dispatch to %s alone: %v, want handler_error and NotDelivered", broken, err)
	}
	_, err = d.Dispatch(ctx, dispatch.Message{Event: "e", Users: users})
	if w := event.WireError(err); w == nil || w.Code != proto.CodeHandlerError || dispatch.NotDelivered(err) {
		t.Fatalf("dispatch to every partition: %v, want handler_error, not NotDelivered", err)
	}
	var other string // a user of another partition
	for _, u := range users {
		if proto.PartitionOf(u) != proto.PartitionOf(broken) {
			other = u
			break
		}
	}
	if n, err := rdb.XLen(ctx, proto.UserStreamKey(other)).Result(); n != 1 || (err != nil && !errors.Is(err, redis.Nil)) {
		t.Fatalf("%s's stream holds %d events (%v), want 1", other, n, err)
	}
}
