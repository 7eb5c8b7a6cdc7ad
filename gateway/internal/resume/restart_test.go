package resume_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestSweepAfterRestartThatLostEvents: Redis restarts from a snapshot
// older than its last writes (persistence that loses the last second, as
// AOF every second or RDB do). A live socket had every event up to the
// snapshot's top; the event after it was recorded, never delivered (the
// subscription went down with Redis), and lost. The socket's position is
// the restored stream's top, but of a stream written on another run: the
// store may have lost events after it. The sweep that follows the
// resubscription must tell the socket (a resync of each stream), not
// leave it in the old epoch until some later event of its user reveals
// the loss.
func TestSweepAfterRestartThatLostEvents(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), OnConnect: streams.OnConnect})
	t.Cleanup(func() { _ = rdb.Close() })
	f := fixtureOn(rdb, resume.DefaultConfig())
	c := &conn{id: "c1", user: "bob"}
	s, _ := f.connect(t, c, "", "")
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	p1 := f.publish(t, "bob", "e1")
	s.Offer(false, &p1, eventFrame("bob", "e1", p1))
	ctx := context.Background()
	if err := rdb.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	f.publish(t, "bob", "lost2") // recorded after the snapshot, never delivered
	srv.Stop()
	srv.Start() // from the snapshot
	if top, err := rdb.HGet(ctx, proto.UserMetaKey("bob"), "s").Result(); err != nil || top != "1" {
		t.Fatalf("bob's stream after the restart: top %q, %v; want 1, the snapshot's", top, err)
	}
	f.res.RequestSweep() // as the fan-out does once it has subscribed again
	testkit.Eventually(t, 3*time.Second, "a resync of each stream", func() bool { return len(f.rec.resyncs()) == 2 })
	for _, reason := range f.rec.resyncs() {
		if reason != resume.ReasonStoreLost {
			t.Fatalf("resyncs %v, want each saying the store lost events", f.rec.resyncs())
		}
	}
	if got := join(c.events(t)); got != "e1@1 resync resync" {
		t.Fatalf("events %q, want e1@1 and a resync of each stream", got)
	}
}
