package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestAnotherBackendAcrossARedisRestart: a service that dispatches with
// the package, its client made as the package documents, never reuses
// the position of an event Redis lost in a restart. Redis restarts from a
// snapshot taken before bob's second event: without a new epoch, his next
// event would get that event's position, and a device that had it would
// resume from there, recovered:true, without ever getting the new one.
func TestAnotherBackendAcrossARedisRestart(t *testing.T) {
	srv := testkit.StartRedis(t)
	ctx := context.Background()
	// As doc.go and docs/handlers.md ("From Go") show it.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true, OnConnect: dispatch.OnConnect})
	t.Cleanup(func() { _ = rdb.Close() })
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	send := func() proto.Pos {
		t.Helper()
		var pos dispatch.Positions
		var err error
		// The first call after the restart may still meet the dead
		// connection; a dispatch that never reached Redis is retried.
		for range 3 {
			if pos, err = d.Dispatch(ctx, dispatch.Message{Event: "e", Users: []string{"bob"}}); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		return mustPos(t, pos.Users["bob"])
	}
	send()
	if err := rdb.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	lost := send() // after the snapshot: lost in the restart
	srv.Stop()
	srv.Start() // loads the snapshot
	if n := rdb.XLen(ctx, proto.UserStreamKey("bob")).Val(); n != 1 {
		t.Fatalf("bob's stream holds %d events after the restart, want the snapshot's 1", n)
	}
	next := send()
	if next.Epoch == lost.Epoch {
		t.Fatalf("the event after the restart is offset %d of epoch %s, the lost one's (offset %d): want a new epoch",
			next.Off, next.Epoch, lost.Off)
	}
}
