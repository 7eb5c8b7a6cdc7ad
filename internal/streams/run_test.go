package streams_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestRun(t *testing.T) {
	server := "# Server\r\nredis_version:7.0.15\r\nrun_id:4b35682ea8e23d17744fa0d4a718e6093878454d\r\ntcp_port:6379\r\n"
	repl := "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_replid:a8c2b7f1d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8\r\nmaster_replid2:0000000000000000000000000000000000000000\r\n"
	if id, ok := streams.Run(server + repl); !ok || id != "4b35682ea8e23d17a8c2b7f1d3e4f5a6" {
		t.Fatalf("Run = %q, %v", id, ok)
	}
	if id, ok := streams.Run(repl + server); !ok || id != "4b35682ea8e23d17a8c2b7f1d3e4f5a6" {
		t.Fatalf("Run, sections the other way = %q, %v", id, ok)
	}
	if _, ok := streams.Run(server); ok {
		t.Fatal("Run found a run in an answer without a replication id")
	}
	if _, ok := streams.Run("# Server\r\nredis_version:7\r\n" + repl); ok {
		t.Fatal("Run found a run in an answer without a run id")
	}
}

// TestOnConnectFollowsTheServer: a connection records its server's run id;
// after a restart, when the key still holds the old run (as it would after
// an AOF reload), the client's first connection to the new run records it
// before the client's first command runs.
func TestOnConnectFollowsTheServer(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), OnConnect: streams.OnConnect})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	first := runOf(t, rdb)
	if got, err := rdb.Get(ctx, proto.RunKey(proto.BroadcastPartition)).Result(); err != nil || got != first {
		t.Fatalf("%s = %q, %v; want the server's run id %q", proto.RunKey(proto.BroadcastPartition), got, err, first)
	}

	srv.Stop()
	srv.Start()
	plain := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = plain.Close() })
	if err := plain.Set(ctx, proto.RunKey(proto.BroadcastPartition), first, 0).Err(); err != nil { // the old run, as reloaded
		t.Fatal(err)
	}
	got, err := rdb.Get(ctx, proto.RunKey(proto.BroadcastPartition)).Result()
	second := runOf(t, plain)
	if second == first {
		t.Fatal("the restarted server has the same run id")
	}
	if err != nil || got != second {
		t.Fatalf("after the restart %s = %q, %v; want the new run %q", proto.RunKey(proto.BroadcastPartition), got, err, second)
	}
}

func runOf(t *testing.T, rdb *redis.Client) string {
	t.Helper()
	info, err := rdb.Info(context.Background(), "server", "replication").Result()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := streams.Run(info)
	if !ok {
		t.Fatal("no run id")
	}
	return id
}

// TestRunAfterAFlushIsTheServers: a store flushed under open connections
// has no run key; the first script records the server's own run, so a
// connection opened later (whose OnConnect records the run too) does not
// change it again, and the stream started after the flush goes on in its
// epoch rather than starting another.
func TestRunAfterAFlushIsTheServers(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), OnConnect: streams.OnConnect})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	publish(t, rdb, "alice")
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	after := publish(t, rdb, "alice")[0]
	fresh := redis.NewClient(&redis.Options{Addr: srv.Addr(), OnConnect: streams.OnConnect})
	t.Cleanup(func() { _ = fresh.Close() })
	if err := fresh.Ping(ctx).Err(); err != nil { // a new connection: OnConnect runs
		t.Fatal(err)
	}
	next := publish(t, fresh, "alice")[0]
	if next.Epoch != after.Epoch || next.Off != after.Off+1 {
		t.Fatalf("after a new connection %+v, want %+v's epoch continued", next, after)
	}
}
