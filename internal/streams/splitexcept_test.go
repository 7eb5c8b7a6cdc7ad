package streams_test

import (
	"context"
	"encoding/json"
	"fmt"
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

// TestExceptUnreadable: an entry whose field x is not a JSON array of
// strings leaves no connection out, rather than those of its strings that
// decoded before the bad value (encoding/json keeps them).
func TestExceptUnreadable(t *testing.T) {
	ctx := context.Background()
	rdb := client(t)
	first := publish(t, rdb, "bob")[0]
	// A second entry, with an x that does not read, as the script would
	// number it.
	id := fmt.Sprintf("%d-2", first.MS)
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: proto.UserStreamKey("bob"), ID: id,
		Values: []any{"e", "message", "a", "{}", "x", `["c1",1]`}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, proto.UserMetaKey("bob"), "s", 2).Err(); err != nil {
		t.Fatal(err)
	}
	r := read(t, rdb, streams.Query{Stream: streams.UserStream, User: "bob", From: first, After: true, Max: 10})
	if len(r.Entries) != 1 || r.Entries[0].Pos.Off != 2 {
		t.Fatalf("entries %+v, want the one at offset 2", r.Entries)
	}
	if got := r.Entries[0].Except; got != nil {
		t.Fatalf("an unreadable x leaves out %q, want none", got)
	}
}
