package streams_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// usersOnEveryPartition returns one user id per partition.
func usersOnEveryPartition() []string {
	users := make([]string, proto.Partitions)
	found := 0
	for i := 0; found < proto.Partitions; i++ {
		u := fmt.Sprintf("user-%d", i)
		if p := proto.PartitionOf(u); users[p] == "" {
			users[p] = u
			found++
		}
	}
	return users
}

// TestClusterPublishAndRead: on a 3-master Redis Cluster a dispatch to a
// user of every partition is recorded (one call per partition), the
// positions come back in target order and the reads continue them; a
// per-user unit published with SPUBLISH reaches a sharded subscriber of
// its user's channel.
func TestClusterPublishAndRead(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect})
	ctx := context.Background()
	users := usersOnEveryPartition()
	for _, k := range []string{proto.UserStreamKey(users[5]), proto.RunKey(9), proto.BroadcastMetaKey, "foo"} {
		if got, err := rdb.ClusterKeySlot(ctx, k).Result(); err != nil || got != int64(proto.Slot(k)) {
			t.Fatalf("CLUSTER KEYSLOT %s = %d, %v; proto.Slot says %d", k, got, err, proto.Slot(k))
		}
	}
	d := &proto.Dispatch{Event: "message", Args: json.RawMessage(`{"n":1}`), Users: users}
	first, _, err := streams.Publish(ctx, rdb, time.Minute, d)
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := streams.Publish(ctx, rdb, time.Minute, d, &proto.Dispatch{Event: "news", Broadcast: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(users) || len(second) != len(users)+1 {
		t.Fatalf("%d and %d positions for %d users", len(first), len(second), len(users))
	}
	qs := make([]streams.Query, len(users))
	for i, u := range users {
		p, _ := proto.ParsePos(first[i])
		qs[i] = streams.Query{Stream: streams.UserStream, User: u, From: p, After: true, Max: 10}
	}
	res, err := streams.Read(ctx, rdb, qs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		want, _ := proto.ParsePos(second[i])
		if r.Top != want || len(r.Entries) != 1 || r.Entries[0].Pos != want {
			t.Fatalf("%s: top %+v, %d entries; want one at %+v", users[i], r.Top, len(r.Entries), want)
		}
	}
	metas := make([]string, len(users))
	for i, u := range users {
		metas[i] = proto.UserMetaKey(u)
	}
	tops, err := streams.Tops(ctx, rdb, metas)
	if err != nil {
		t.Fatal(err)
	}
	for i := range users {
		if tops[i] != res[i].Top {
			t.Fatalf("Tops[%d] = %+v, want %+v", i, tops[i], res[i].Top)
		}
	}

	// SPUBLISH in the script reaches a sharded subscriber.
	u := users[3]
	ps := rdb.SSubscribe(ctx, proto.UserChannel(u))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	unit := streams.NewPerUserUnit(&proto.Dispatch{Event: "message", Args: json.RawMessage(`{}`), Users: []string{u}}, true).Shard()
	p, _ := unit.Partition()
	keys, args := streams.PartitionCall(p, []*streams.Unit{unit}, time.Minute, streams.MetaTTL)
	if err := streams.PublishScript.Run(ctx, rdb, keys, args...).Err(); err != nil {
		t.Fatal(err)
	}
	msg, err := ps.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Channel != proto.UserChannel(u) || !strings.Contains(msg.Payload, `"pos"`) {
		t.Fatalf("got %+v", msg)
	}
}

// TestClusterRestartedMasterStartsNewEpochs: when one master restarts
// with its data lost, the streams of its partitions start new epochs (a
// resume from an old position cannot be recovered) while the other
// masters' streams go on.
func TestClusterRestartedMasterStartsNewEpochs(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
	ctx := context.Background()
	users := usersOnEveryPartition()
	d := &proto.Dispatch{Event: "message", Args: json.RawMessage(`{}`), Users: users}
	before, _, err := streams.Publish(ctx, rdb, time.Minute, d)
	if err != nil {
		t.Fatal(err)
	}
	victim := c.NodeOf(proto.RunKey(0))
	victim.Stop()
	victim.Start()
	c.AwaitOK()
	// Its data is gone (no persistence): a write finds neither meta nor
	// run, and must not continue an old epoch.
	var after []string
	testkit.Eventually(t, 10*time.Second, "publish after the restart", func() bool {
		after, _, err = streams.Publish(ctx, rdb, time.Minute, d)
		return err == nil
	})
	moved := 0
	for i, u := range users {
		b, _ := proto.ParsePos(before[i])
		a, _ := proto.ParsePos(after[i])
		onVictim := c.NodeOf(proto.UserMetaKey(u)) == victim
		if onVictim {
			moved++
			if a.Epoch == b.Epoch {
				t.Errorf("%s, on the restarted master: epoch %s kept", u, a.Epoch)
			}
		} else if a.Epoch != b.Epoch || a.Off != b.Off+1 {
			t.Errorf("%s: %+v does not continue %+v", u, a, b)
		}
	}
	if moved == 0 {
		t.Fatal("no partition on the restarted master")
	}
}

// TestClusterOnConnectSetsEveryPartition: after a stale run id was left
// in every partition's run key, a client's connections to each master
// set the run key of every partition that master serves.
func TestClusterOnConnectSetsEveryPartition(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	plain := c.Client(nil)
	ctx := context.Background()
	for p := range proto.Partitions {
		if err := plain.Set(ctx, proto.RunKey(p), "stale", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect})
	if err := rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.Ping(ctx).Err() }); err != nil {
		t.Fatal(err)
	}
	for p := range proto.Partitions {
		got, err := rdb.Get(ctx, proto.RunKey(p)).Result()
		if err != nil || got == "stale" || len(got) != 32 {
			t.Errorf("partition %d's run key = %q, %v; want its master's run (streams.Run)", p, got, err)
		}
	}
}

// TestClusterFailoverStartsNewEpochs: when a replica takes over a master
// (CLUSTER FAILOVER), it is another run of Redis: the streams of the
// partitions it now serves start new epochs at their next write, even
// though it has every event (a replica promoted by force may not), while
// the streams on the other masters go on. Never an old epoch continued on
// a server that may have lost its last writes.
func TestClusterFailoverStartsNewEpochs(t *testing.T) {
	c := testkit.StartRedisClusterWithReplicas(t, 3, 1)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
	ctx := context.Background()
	users := usersOnEveryPartition()
	d := &proto.Dispatch{Event: "message", Args: json.RawMessage(`{}`), Users: users}
	before, _, err := streams.Publish(ctx, rdb, time.Minute, d)
	if err != nil {
		t.Fatal(err)
	}
	promoted := c.Failover(proto.RunKey(0))
	var after []string
	testkit.Eventually(t, 10*time.Second, "publish after the failover", func() bool {
		after, _, err = streams.Publish(ctx, rdb, time.Minute, d)
		return err == nil
	})
	assertNewEpochsOn(t, c, promoted, users, before, after)
}

// assertNewEpochsOn checks the positions of one dispatch to users before
// and after a change of master: the users whose streams node now serves
// have new epochs, the others' streams go on.
func assertNewEpochsOn(t *testing.T, c *testkit.RedisCluster, node *testkit.Redis, users, before, after []string) {
	t.Helper()
	moved := 0
	for i, u := range users {
		b, _ := proto.ParsePos(before[i])
		a, _ := proto.ParsePos(after[i])
		if c.NodeOf(proto.UserMetaKey(u)) == node {
			moved++
			if a.Epoch == b.Epoch {
				t.Errorf("%s, on %s: epoch %s kept", u, node.Addr(), a.Epoch)
			}
		} else if a.Epoch != b.Epoch || a.Off != b.Off+1 {
			t.Errorf("%s: %+v does not continue %+v", u, a, b)
		}
	}
	if moved == 0 {
		t.Fatalf("no partition on %s", node.Addr())
	}
}

// TestClusterFailbackStartsNewEpochs: a master that hands over to its
// replica and takes over again (a failback, as after maintenance) keeps
// its run id, but it has followed another master meanwhile and may have
// lost its last writes to it: the streams it serves again start new
// epochs, even those nothing was written to in between.
func TestClusterFailbackStartsNewEpochs(t *testing.T) {
	c := testkit.StartRedisClusterWithReplicas(t, 3, 1)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
	ctx := context.Background()
	users := usersOnEveryPartition()
	d := &proto.Dispatch{Event: "message", Args: json.RawMessage(`{}`), Users: users}
	before, _, err := streams.Publish(ctx, rdb, time.Minute, d)
	if err != nil {
		t.Fatal(err)
	}
	first := c.NodeOf(proto.RunKey(0))
	c.Failover(proto.RunKey(0)) // nothing written while the replica serves
	if back := c.Failover(proto.RunKey(0)); back != first {
		t.Fatalf("the failback promoted %s, want the first master %s", back.Addr(), first.Addr())
	}
	var after []string
	testkit.Eventually(t, 10*time.Second, "publish after the failback", func() bool {
		after, _, err = streams.Publish(ctx, rdb, time.Minute, d)
		return err == nil
	})
	assertNewEpochsOn(t, c, first, users, before, after)
}

// TestSplitUsersSkipsOtherParts: the part that carries the connections
// names the users of the other parts as skip_users, so a socket named both
// as a connection and through its user gets the event once.
func TestSplitUsersSkipsOtherParts(t *testing.T) {
	users := usersOnEveryPartition()[:3]
	d := &proto.Dispatch{Event: "e", Users: users, Conns: []string{"c1"}, SkipUsers: []string{"x"}}
	parts := streams.SplitUsers(d)
	if len(parts) != 3 {
		t.Fatalf("%d parts, want 3", len(parts))
	}
	if !slices.Equal(parts[0].Conns, d.Conns) || !slices.Equal(parts[0].SkipUsers, []string{"x", users[1], users[2]}) {
		t.Fatalf("first part %+v", parts[0])
	}
	for _, p := range parts[1:] {
		if p.Conns != nil || p.SkipUsers != nil {
			t.Fatalf("part %+v carries connections or skip_users", p)
		}
	}
	if parts := streams.SplitUsers(&proto.Dispatch{Event: "e", Users: users}); parts[0].SkipUsers != nil {
		t.Fatalf("without connections, first part %+v has skip_users", parts[0])
	}
}
