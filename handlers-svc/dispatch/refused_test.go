package dispatch_test

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestRevokeRefusedByRedisIsUnavailable: a revoking disconnect that
// Redis refuses before it runs anything, out of memory (maxmemory with
// noeviction) or because REDIS_URL names a read-only replica, recorded
// nothing and published nothing: it fails unavailable, which tells the
// caller so and that a retry is safe, with Redis's reason, not timeout
// ("it may have been"), which sends an operator looking for a slow Redis.
func TestRevokeRefusedByRedisIsUnavailable(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, rdb *redis.Client, want string) {
		t.Helper()
		d := dispatch.New(rdb, dispatch.Options{})
		_, err := d.Disconnect(ctx, dispatch.Disconnect{Users: []string{"alice"}, Revoke: true})
		if w := event.WireError(err); w.Code != proto.CodeUnavailable || !strings.Contains(err.Error(), want) {
			t.Fatalf("revoke refused by Redis: %v (code %s), want unavailable with Redis's %s", err, w.Code, want)
		}
		if n := rdb.Exists(ctx, proto.RevokedKey).Val(); n != 0 {
			t.Errorf("the refused revoke was recorded")
		}
	}
	t.Run("out of memory", func(t *testing.T) {
		rdb := documentedClient(t)
		// Something to be over 1 byte with, and a stale field for the
		// script to delete first.
		if err := rdb.Set(ctx, "filler", strings.Repeat("x", 1000), 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rdb.ConfigSet(context.Background(), "maxmemory", "0").Err() })
		check(t, rdb, "OOM")
	})
	t.Run("read-only replica", func(t *testing.T) {
		master, replica := testkit.StartRedis(t), testkit.StartRedis(t)
		rdb := newClient(t, replica.Addr())
		host, port, _ := strings.Cut(master.Addr(), ":")
		if err := rdb.ReplicaOf(ctx, host, port).Err(); err != nil {
			t.Fatal(err)
		}
		check(t, rdb, "READONLY")
	})
}
