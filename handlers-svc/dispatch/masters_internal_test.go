package dispatch

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

// TestStaleMasterPublishersPruned: the publisher of an address that is
// no longer a master (a failover, a node replaced) is dropped once a new
// master is seen, so that a long life of layout changes does not pile
// them up; the live masters keep theirs.
func TestStaleMasterPublishersPruned(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
	d := New(rdb, Options{Window: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 64 { // users on every master
		if err := d.ToUsers(ctx, []string{fmt.Sprintf("user-%d", i)}, "warm", nil); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (n int, addrs []string) {
		d.masters.Range(func(a, _ any) bool { n++; addrs = append(addrs, a.(string)); return true })
		return n, addrs
	}
	if n, addrs := count(); n != 3 {
		t.Fatalf("%d publishers (%v), want one per master", n, addrs)
	}
	// A master gone from the layout, and one of the live ones not yet seen
	// (as a promoted replica would be).
	stale := newPublisher(rdb)
	d.masters.Store("127.0.0.1:1", &stale)
	seen := c.NodeOf(proto.RunKey(proto.PartitionOf("alice"))).Addr()
	if _, ok := d.masters.LoadAndDelete(seen); !ok {
		t.Fatalf("no publisher for alice's master %s", seen)
	}
	if err := d.ToUsers(ctx, []string{"alice"}, "message", nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.masters.Load("127.0.0.1:1"); ok {
		t.Error("the publisher of an address that is no master was kept")
	}
	if n, addrs := count(); n != 3 {
		t.Errorf("%d publishers (%v) after the new master, want 3", n, addrs)
	}
}
