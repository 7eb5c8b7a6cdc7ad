package fanout_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/fanout"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// runCluster starts a per-user Subscriber on a cluster client of c.
func runCluster(t *testing.T, c *testkit.RedisCluster, to fanout.Deliverer, opts ...fanout.Option) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	opts = append([]fanout.Option{fanout.PerUser(time.Minute)}, opts...)
	s := &running{sub: fanout.New(c.Client(nil), to, 0, zap.NewNop(), opts...), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- s.sub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(wait):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	return s
}

// clusterUsers returns a user of every partition.
func clusterUsers() []string {
	users := make([]string, proto.Partitions)
	for i, found := 0, 0; found < proto.Partitions; i++ {
		u := fmt.Sprintf("user-%d", i)
		if p := proto.PartitionOf(u); users[p] == "" {
			users[p] = u
			found++
		}
	}
	return users
}

// sToUser publishes a dispatch for user with SPUBLISH on user's channel,
// as handlers-svc does in per-user mode on a cluster.
func sToUser(t *testing.T, c *redis.ClusterClient, user, event string) {
	t.Helper()
	d := proto.Dispatch{Event: event, Users: []string{user}}
	if err := c.SPublish(context.Background(), proto.UserChannel(user), proto.AppendDispatch(nil, &d)).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestClusterShardsDeliverAndHeal: on a 3-master Redis Cluster in per-user
// mode, users of every partition get what is SPUBLISHed on their channels
// (each partition's sharded subscription on its own master) and the shared
// channel still delivers. Killing one master's pub/sub connections (CLIENT
// KILL TYPE pubsub) takes Live down until every subscription is back, has
// the worker told to heal (OnSubscribed), and delivery goes on.
func TestClusterShardsDeliverAndHeal(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	pub := c.Client(nil)
	in := make(inbox, 64)
	var subscribed atomic.Int32
	s := runCluster(t, c, in, fanout.OnSubscribed(func() { subscribed.Add(1) }))
	waitLive(t, s, true)
	users := clusterUsers()
	for _, u := range users {
		acquire(t, s, u)
	}
	if n := s.sub.UserChannels(); n != len(users) {
		t.Fatalf("UserChannels() = %d, want %d", n, len(users))
	}
	for _, u := range users {
		sToUser(t, pub, u, "to-"+u)
		if got := in.next(t); got.Event != "to-"+u {
			t.Fatalf("got %s, want to-%s", got.Event, u)
		}
	}
	if err := pub.Publish(context.Background(), proto.Channel, `{"event":"all","args":null,"users":[],"conns":[],"broadcast":true}`).Err(); err != nil {
		t.Fatal(err)
	}
	if got := in.next(t); got.Event != "all" {
		t.Fatalf("got %s from the shared channel, want all", got.Event)
	}

	victim := c.NodeOf(proto.UserChannel(users[0]))
	node := redis.NewClient(&redis.Options{Addr: victim.Addr()})
	t.Cleanup(func() { _ = node.Close() })
	before := subscribed.Load()
	resubs := s.sub.Resubscriptions()
	if err := node.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, "the killed subscriptions restored", func() bool {
		return s.sub.Resubscriptions() > resubs && s.sub.Live()
	})
	if subscribed.Load() <= before {
		t.Fatal("OnSubscribed was not called after the resubscription")
	}
	for _, u := range users {
		sToUser(t, pub, u, "again-"+u)
		if got := in.next(t); got.Event != "again-"+u {
			t.Fatalf("after the kill got %s, want again-%s", got.Event, u)
		}
	}
	testkit.Eventually(t, wait, "a probe of the shared channel back", func() bool { return s.sub.Probed() > 0 })
}

// TestClusterShardStallNoticed: a master that stops answering (SIGSTOP)
// stalls the sharded subscriptions of its partitions: their probes stop
// coming back, Live turns false within the contract's 2 s (plus slack for
// the race detector), and once the master answers again every partition
// is subscribed and delivers again.
func TestClusterShardStallNoticed(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	pub := c.Client(nil)
	in := make(inbox, 64)
	s := runCluster(t, c, in)
	waitLive(t, s, true)
	users := clusterUsers()
	for _, u := range users {
		acquire(t, s, u)
	}
	victim := c.NodeOf(proto.UserChannel(users[0]))
	victim.Pause(t)
	paused := time.Now()
	testkit.Eventually(t, wait, "the stall noticed", func() bool { return !s.sub.Live() })
	if d := time.Since(paused); d > 3*time.Second {
		t.Errorf("the stall was noticed after %v", d)
	}
	if s.sub.Stalls() == 0 {
		t.Error("no stall counted")
	}
	victim.Continue()
	waitLive(t, s, true)
	for _, u := range users {
		testkit.Eventually(t, wait, "delivery to "+u, func() bool {
			sToUser(t, pub, u, "to-"+u)
			for {
				select {
				case got := <-in:
					if got.Event == "to-"+u {
						return true
					}
				case <-time.After(100 * time.Millisecond):
					return false
				}
			}
		})
	}
}

// nodeCalls sums how often the cluster's nodes ran cmd.
func nodeCalls(t *testing.T, c *testkit.RedisCluster, cmd string) int {
	t.Helper()
	n := 0
	for _, nd := range c.Nodes {
		rdb := redis.NewClient(&redis.Options{Addr: nd.Addr()})
		n += calls(t, rdb, cmd)
		_ = rdb.Close()
	}
	return n
}

// TestClusterBatchedAndLingering: on a cluster, many users acquired at
// once are subscribed with a few SSUBSCRIBEs per partition, not one each;
// released, their channels leave after the linger, with a few
// SUNSUBSCRIBEs, and a user back afterwards is subscribed anew and served.
func TestClusterBatchedAndLingering(t *testing.T) {
	const users = 1000
	c := testkit.StartRedisCluster(t, 3)
	pub := c.Client(nil)
	in := make(inbox, 16)
	ctx, cancel := context.WithCancel(context.Background())
	s := &running{sub: fanout.New(c.Client(nil), in, 0, zap.NewNop(), fanout.PerUser(50*time.Millisecond)), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- s.sub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-s.done })
	waitLive(t, s, true)
	before := nodeCalls(t, c, "ssubscribe")

	var wg sync.WaitGroup
	var failed atomic.Int32
	// Every Acquire starts at once, as a burst of connects would: started
	// one by one as goroutines are made, they could each find the sender
	// idle on a quiet box, and batching would then depend on the scheduler.
	start := make(chan struct{})
	for i := range users {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if s.sub.Acquire(ctx, fmt.Sprintf("u%d", i)) != nil {
				failed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if failed.Load() > 0 || s.sub.UserChannels() != users {
		t.Fatalf("%d Acquires failed; %d channels live, want %d", failed.Load(), s.sub.UserChannels(), users)
	}
	// Each of the 16 partitions batches on its own, and how much gathers
	// depends on scheduling (CI saw 256 under load): unbatched would be one
	// command per user.
	subs := nodeCalls(t, c, "ssubscribe") - before
	if subs > users/2 {
		t.Fatalf("%d SSUBSCRIBEs for %d users: not batched", subs, users)
	}
	t.Logf("%d SSUBSCRIBEs for %d users", subs, users)
	for i := range users {
		s.sub.Release(fmt.Sprintf("u%d", i))
	}
	testkit.Eventually(t, wait, "every channel released after the linger", func() bool { return s.sub.UserChannels() == 0 })
	if unsubs := nodeCalls(t, c, "sunsubscribe"); unsubs == 0 || unsubs > users/2 {
		t.Fatalf("%d SUNSUBSCRIBEs for %d users", unsubs, users)
	}
	acquire(t, s, "u7")
	sToUser(t, pub, "u7", "back")
	if got := in.next(t); got.Event != "back" {
		t.Fatalf("got %s, want back", got.Event)
	}
}

// TestClusterShardsFollowAFailover: when a replica takes over a master
// (CLUSTER FAILOVER), the sharded subscriptions of that master's
// partitions move to the new master: users of every partition are served
// again, the worker is told to heal, and the subscription is live.
func TestClusterShardsFollowAFailover(t *testing.T) {
	c := testkit.StartRedisClusterWithReplicas(t, 3, 1)
	pub := c.Client(nil)
	in := make(inbox, 64)
	var subscribed atomic.Int32
	s := runCluster(t, c, in, fanout.OnSubscribed(func() { subscribed.Add(1) }))
	waitLive(t, s, true)
	users := clusterUsers()
	for _, u := range users {
		acquire(t, s, u)
	}
	before := subscribed.Load()
	c.Failover(proto.UserChannel(users[0]))
	testkit.Eventually(t, wait, "resubscribed after the failover", func() bool {
		return subscribed.Load() > before && s.sub.Live()
	})
	for _, u := range users {
		testkit.Eventually(t, wait, "delivery to "+u, func() bool {
			sToUser(t, pub, u, "to-"+u)
			for {
				select {
				case got := <-in:
					if got.Event == "to-"+u {
						return true
					}
				case <-time.After(100 * time.Millisecond):
					return false
				}
			}
		})
	}
}
