package streams_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestPromotedReplicaOnAnOldConnectionStartsNewEpochs shows a hole in the
// run check on one Redis (not a cluster). The scripts there trust the run
// key (liveRun is empty off a cluster), on the assumption (publish.go,
// liveRun) that every connection to the server that writes was opened to
// it as it runs now. A connection opened while the server was a replica
// breaks it: its OnConnect could not write the run key (READONLY,
// ignored), go-redis keeps it as long as it only read, and it is used
// after the replica is promoted, when the run key still holds the old
// master's run, replicated. The promoted replica lost the old master's
// last event (asynchronous replication) but continues its epoch: a device
// that missed that event resumes recovered:true with nothing missed
// (streams.Read, the gateway's path), and the next event is handed the
// lost one's epoch and offset (a live device that had the lost event drops
// it as a duplicate). A fresh connection does start a new epoch.
//
// REDIS_URL naming a host that moves to the promoted server (DNS, a VIP,
// a proxy) with connections that outlive the role change, or a failback
// to a server whose old connections stayed open while it replicated,
// gets this.
func TestPromotedReplicaOnAnOldConnectionStartsNewEpochs(t *testing.T) {
	ctx := context.Background()
	master, replica := testkit.StartRedis(t), testkit.StartRedis(t)
	onMaster := redis.NewClient(&redis.Options{Addr: master.Addr(), OnConnect: streams.OnConnect})
	t.Cleanup(func() { _ = onMaster.Close() })
	// The client of the replica, as handlers-svc's or a gateway's would be
	// when REDIS_URL names it: its connections opened while it replicates.
	onReplica := redis.NewClient(&redis.Options{Addr: replica.Addr(), OnConnect: streams.OnConnect, PoolSize: 1})
	t.Cleanup(func() { _ = onReplica.Close() })

	if err := onReplica.ReplicaOf(ctx, "127.0.0.1", strconv.Itoa(master.Port)).Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the replica is in sync", func() bool {
		info, err := onReplica.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})

	pub := func(rdb *redis.Client) proto.Pos {
		t.Helper()
		pos, _, err := streams.Publish(ctx, rdb, time.Minute,
			&proto.Dispatch{Event: "message", Args: json.RawMessage(`{"n":1}`), Users: []string{"alice"}})
		if err != nil {
			t.Fatal(err)
		}
		p, ok := proto.ParsePos(pos[0])
		if !ok {
			t.Fatalf("position %q", pos[0])
		}
		return p
	}
	seen := pub(onMaster) // every device of alice had it
	if n, err := onMaster.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT: %d replicas have the first event, %v", n, err)
	}

	// The replica loses its link (its master is unreachable to it), and
	// the master writes one more event that it never gets.
	if err := onReplica.ReplicaOf(ctx, "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	lost := pub(onMaster)
	if lost.Off != seen.Off+1 {
		t.Fatalf("lost %+v after %+v", lost, seen)
	}
	// While it replicates, the clients of the replica only read (as a
	// sweep's HMGETs, a probe's PUBLISH): go-redis keeps such connections,
	// where it drops one that a replica refused a write (READONLY). Here
	// one of its main pool (single commands, the publish script's Run) and
	// one of its pipeline pool (streams.Read).
	if err := onReplica.HMGet(ctx, proto.UserMetaKey("alice"), "e", "s").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := onReplica.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HMGet(ctx, proto.UserMetaKey("alice"), "e", "s")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	conns := func() string {
		t.Helper()
		info, err := onReplica.Info(ctx, "stats").Result()
		if err != nil {
			t.Fatal(err)
		}
		_, v, _ := strings.Cut(info, "total_connections_received:")
		n, _, _ := strings.Cut(v, "\r\n")
		return n
	}
	opened := conns()
	// Failover: the replica is promoted; the connections stay.
	if err := onReplica.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}

	// A device whose last event is seen, which missed lost, resumes on the
	// promoted server. The store lost an event: the epoch must change, or
	// the gateway answers recovered:true with nothing missed.
	res, err := streams.Read(ctx, onReplica, []streams.Query{{Stream: streams.UserStream, User: "alice", From: seen, After: true, Max: 100}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Top.Epoch == seen.Epoch {
		t.Errorf("read on a connection opened before the promotion: top %s, in the epoch of %s; %s was lost, "+
			"and a device at %s would resume recovered with nothing missed", res[0].Top, seen, lost, seen)
	}
	// The next event, published there: it must be in a new epoch. It is
	// given the lost event's epoch and offset: a live device that had the
	// lost event drops it as a duplicate.
	next := pub(onReplica)
	if next.Epoch == lost.Epoch && next.Off == lost.Off {
		t.Errorf("published on a connection opened before the promotion: %s, the lost event's epoch and offset (%s)", next, lost)
	}
	if now := conns(); now != opened {
		t.Fatalf("the client opened connections after the promotion (%s, then %s): the test needs the old ones", opened, now)
	}

	// The same server on a fresh connection: the run is checked.
	fresh := redis.NewClient(&redis.Options{Addr: replica.Addr(), OnConnect: streams.OnConnect})
	t.Cleanup(func() { _ = fresh.Close() })
	if after := pub(fresh); after.Epoch == seen.Epoch {
		t.Errorf("a fresh connection to the promoted replica continued epoch %s (%s)", seen.Epoch, after)
	}
}
