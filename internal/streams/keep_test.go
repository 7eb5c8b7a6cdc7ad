package streams_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestKeepMetas: KeepMetas sets the TTL of every meta it is given, over
// more than one batch and, on a Redis Cluster, over every partition, and
// makes none that is missing.
func TestKeepMetas(t *testing.T) {
	t.Run("one", func(t *testing.T) { testKeepMetas(t, client(t)) })
	t.Run("cluster", func(t *testing.T) {
		c := testkit.StartRedisCluster(t, 3)
		testKeepMetas(t, c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect}))
	})
}

func testKeepMetas(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	// Past one batch, and on every partition.
	users := usersOnEveryPartition()
	for i := len(users); i < 600; i++ {
		users = append(users, fmt.Sprintf("keep-%d", i))
	}
	qs := []streams.Query{{Stream: streams.BroadcastStream, Max: 1}}
	for _, u := range users {
		qs = append(qs, streams.Query{Stream: streams.UserStream, User: u, Max: 1})
	}
	if _, err := streams.Read(ctx, rdb, qs); err != nil { // makes every meta
		t.Fatal(err)
	}
	metas := []string{proto.BroadcastMetaKey}
	for _, u := range users {
		metas = append(metas, proto.UserMetaKey(u))
	}
	short := 10 * time.Second
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range metas {
			p.PExpire(ctx, k, short)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	missing := []string{proto.UserMetaKey("never-1"), proto.UserMetaKey("never-2")}
	if err := streams.KeepMetas(ctx, rdb, append(metas, missing...), time.Hour); err != nil {
		t.Fatal(err)
	}
	ttls := make([]*redis.DurationCmd, len(metas)+len(missing))
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range append(metas, missing...) {
			ttls[i] = p.PTTL(ctx, k)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, k := range metas {
		if got := ttls[i].Val(); got <= short || got > time.Hour {
			t.Fatalf("%s: TTL %v after KeepMetas, want over %v, at most 1h", k, got, short)
		}
	}
	for i, k := range missing {
		// PTTL of a missing key is -2 (go-redis returns it as is, in ns).
		if got := ttls[len(metas)+i].Val(); got != -2 {
			t.Fatalf("%s: TTL %v after KeepMetas, want -2: a missing meta stays missing", k, got)
		}
	}
}
