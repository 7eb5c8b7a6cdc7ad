package modecheck_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/handlers-svc/internal/modecheck"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSharedWorkerFoundAndLoggedOnce: a worker subscribed as in shared
// mode is counted and logged once; one in per_user mode is not; the
// mismatch's end is logged too.
func TestSharedWorkerFoundAndLoggedOnce(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	subscribe := func(chans ...string) *redis.PubSub {
		ps := rdb.Subscribe(ctx, chans...)
		for range chans {
			if _, err := ps.Receive(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return ps
	}
	core, logs := observer.New(zap.InfoLevel)
	c := modecheck.New(rdb, zap.New(core))
	perUser := subscribe(proto.Channel, proto.PerUserMarkerChannel)
	defer func() { _ = perUser.Close() }()
	check := func(want int64) {
		t.Helper()
		if err := c.Check(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.Shared(); got != want {
			t.Fatalf("Shared() = %d, want %d", got, want)
		}
	}
	check(0)
	shared := subscribe(proto.Channel)
	check(1)
	check(1)
	if n := logs.FilterMessageSnippet("run FANOUT_MODE=shared").Len(); n != 1 {
		t.Errorf("the mismatch logged %d times in two checks, want once", n)
	}
	_ = shared.Close()
	testkit.Eventually(t, 5*time.Second, "the shared worker gone", func() bool {
		return c.Check(ctx) == nil && c.Shared() == 0
	})
	if n := logs.FilterMessageSnippet("per_user again").Len(); n != 1 {
		t.Errorf("the mismatch's end logged %d times, want once", n)
	}
}

// TestCountsEveryClusterNode: on a Redis Cluster each node counts only the
// subscribers connected to it; workers subscribed on different nodes are
// all counted.
func TestCountsEveryClusterNode(t *testing.T) {
	cl := testkit.StartRedisCluster(t, 3)
	ctx := context.Background()
	var shared []*redis.PubSub
	for _, n := range cl.Nodes {
		node := redis.NewClient(&redis.Options{Addr: n.Addr()})
		t.Cleanup(func() { _ = node.Close() })
		ps := node.Subscribe(ctx, proto.Channel)
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		shared = append(shared, ps)
	}
	defer func() {
		for _, ps := range shared {
			_ = ps.Close()
		}
	}()
	rdb := cl.Client(nil)
	c := modecheck.New(rdb, zap.NewNop())
	if err := c.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.Shared(); got != 3 {
		t.Fatalf("Shared() = %d, want 3: a worker on each node", got)
	}
}
