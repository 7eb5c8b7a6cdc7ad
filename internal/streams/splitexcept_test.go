package streams_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestSplitUsersKeepsExcept: every part of a dispatch split by partition
// leaves out the connections the dispatch leaves out, and is as transient
// as it: a part without the list would be delivered live to them, and
// recorded without it, replayed to them.
func TestSplitUsersKeepsExcept(t *testing.T) {
	d := &proto.Dispatch{Event: "m", Users: usersOnEveryPartition(), Except: []string{"c1", "c2"}, Transient: true}
	parts := streams.SplitUsers(d)
	if len(parts) < 2 {
		t.Fatalf("%d parts, want one per partition", len(parts))
	}
	for i, p := range parts {
		if !slices.Equal(p.Except, d.Except) || !p.Transient {
			t.Errorf("part %d leaves out %q, transient %v; want %q, true", i, p.Except, p.Transient, d.Except)
		}
	}
}

// TestClusterPublishRecordsExcept: streams.Publish on a Redis Cluster
// records the except list in the entry of every user, whatever the
// partition.
func TestClusterPublishRecordsExcept(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect})
	ctx := context.Background()
	users := usersOnEveryPartition()
	except := []string{"c1"}
	pos, _, err := streams.Publish(ctx, rdb, time.Minute,
		&proto.Dispatch{Event: "m", Args: json.RawMessage(`{}`), Users: users, Except: except})
	if err != nil {
		t.Fatal(err)
	}
	qs := make([]streams.Query, len(users))
	for i, u := range users {
		p, _ := proto.ParsePos(pos[i])
		qs[i] = streams.Query{Stream: streams.UserStream, User: u, From: proto.Pos{Epoch: p.Epoch}, After: true, Max: 10}
	}
	res, err := streams.Read(ctx, rdb, qs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if len(r.Entries) != 1 || !slices.Equal(r.Entries[0].Except, except) {
			t.Errorf("%s: entries %+v, want one leaving out %q", users[i], r.Entries, except)
		}
	}
}
