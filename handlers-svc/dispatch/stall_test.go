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

// flushing reports whether one of d's publishers has a flush in flight.
func (d *Dispatcher) flushing() bool {
	busy := !d.pub.idle()
	d.masters.Range(func(_, p any) bool {
		busy = busy || !p.(*publisher).idle()
		return !busy
	})
	return busy
}

// usersOn returns n users named prefix and a number whose partitions'
// master is m, each of another partition when distinct is set.
func usersOn(c *testkit.RedisCluster, m *testkit.Redis, prefix string, n int, distinct bool) []string {
	var users []string
	seen := map[int]bool{}
	for i := 0; len(users) < n; i++ {
		u := fmt.Sprintf("%s%d", prefix, i)
		p := proto.PartitionOf(u)
		if (distinct && seen[p]) || c.NodeOf(proto.RunKey(p)) != m {
			continue
		}
		seen[p] = true
		users = append(users, u)
	}
	return users
}

// TestStalledMasterHoldsUpOnlyItsPartitions: on a 3-master Redis Cluster
// with one master stopped (SIGSTOP: it takes what is written and answers
// nothing) while a dispatch to one of its users is in flight, dispatches
// to the users of the other masters, to one partition or to several, are
// answered at once and recorded. With one pipeline in flight for the
// whole cluster, they waited behind the stalled one until their deadline
// and failed, never sent: one stalled master stopped every dispatch, so that every dispatch failed while one master was stalled.
func TestStalledMasterHoldsUpOnlyItsPartitions(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1, ContextTimeoutEnabled: true})
	d := New(rdb, Options{Window: time.Minute})
	ctx := context.Background()
	stalled := c.NodeOf(proto.RunKey(proto.PartitionOf("alice")))
	// bob and carol: users of two other partitions, on masters that answer.
	var bob, carol string
	for i := 0; carol == ""; i++ {
		u := fmt.Sprintf("user-%d", i)
		if p := proto.PartitionOf(u); c.NodeOf(proto.RunKey(p)) != stalled {
			switch {
			case bob == "":
				bob = u
			case p != proto.PartitionOf(bob):
				carol = u
			}
		}
	}
	for _, u := range []string{"alice", bob, carol} { // the slots known, the script loaded
		if err := d.ToUsers(ctx, []string{u}, "warm", nil); err != nil {
			t.Fatal(err)
		}
	}

	// On a busy box the stall may outlast cluster-node-timeout (5 s): the
	// others then mark its master failed, and with full coverage required
	// answer CLUSTERDOWN for every slot. Not what this test is about.
	for _, n := range c.Nodes {
		if n == stalled {
			continue
		}
		nc := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
		err := nc.ConfigSet(ctx, "cluster-require-full-coverage", "no").Err()
		_ = nc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	stalled.Pause(t)
	aliceDone := make(chan error, 1)
	go func() {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		aliceDone <- d.ToUsers(actx, []string{"alice"}, "message", nil)
	}()
	awaitPublisher(t, d.flushing, func() string { return "the dispatch to alice is not in flight" })

	bctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	if err := d.ToUsers(bctx, []string{bob}, "message", nil); err != nil {
		t.Fatalf("dispatch to %s (one partition, master up) while alice's master is stalled: %v", bob, err)
	}
	if err := d.ToUsers(bctx, []string{bob, carol}, "message", nil); err != nil {
		t.Fatalf("dispatch to %s and %s (two partitions, masters up) while alice's master is stalled: %v", bob, carol, err)
	}
	t.Logf("two dispatches beside the stalled master took %v", time.Since(start))
	for u, want := range map[string]int64{bob: 3, carol: 2} {
		if n, err := rdb.XLen(ctx, proto.UserStreamKey(u)).Result(); err != nil || n != want {
			t.Errorf("%s's stream holds %d events (%v), want %d", u, n, err, want)
		}
	}
	stalled.Continue()
	if err := <-aliceDone; err != nil {
		t.Logf("the dispatch to alice: %v", err) // answered late, or cut by go-redis's read timeout: either is right
	}
}
