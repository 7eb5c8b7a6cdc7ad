package resume_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// whileReadingNewEpoch arms a hook on f's client: after the next read,
// user's stream starts a new epoch (its metadata evicted, as
// docs/operations.md says maxmemory with eviction may do), an event is
// recorded in it, and the fan-out offers that event to s, all before the
// read is applied. It returns the new event's position once the hook has
// run.
func (f *fixture) whileReadingNewEpoch(t *testing.T, s *resume.Socket, user, event string) <-chan proto.Pos {
	t.Helper()
	got := make(chan proto.Pos, 1)
	h := &afterRead{}
	h.fire = func() {
		if err := f.rdb.Del(context.Background(), proto.UserMetaKey(user)).Err(); err != nil {
			t.Error(err)
		}
		p := f.publish(t, user, event)
		s.Offer(false, &p, eventFrame(user, event, p))
		got <- p
	}
	f.rdb.AddHook(h)
	h.armed.Store(true)
	return got
}

// lastResync returns the args of the last resync frame c got, and false
// when it got none.
func (c *conn) lastResync(t *testing.T) (proto.Resync, bool) {
	t.Helper()
	frames := c.got()
	for i := len(frames) - 1; i >= 0; i-- {
		if frames[i].Event != "resync" {
			continue
		}
		var r proto.Resync
		if err := json.Unmarshal(frames[i].Args, &r); err != nil {
			t.Fatal(err)
		}
		return r, true
	}
	return proto.Resync{}, false
}

// TestNewEpochDuringFillIsNotDropped: while a live socket's gap is being
// read, its stream starts a new epoch and the first event of that epoch
// arrives. The read found the old epoch, but the event is newer than the
// read, not a message delayed past a reset: the socket must not drop it
// as a duplicate and carry on in the old epoch, where no later event
// would ever come to reveal the loss. It reads again and either sends
// the event or announces the new epoch with a resync.
func TestNewEpochDuringFillIsNotDropped(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	c := &conn{id: "c1", user: "bob"}
	s, _ := f.connect(t, c, "", "")
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	f.publish(t, "bob", "e1")
	e2 := f.publish(t, "bob", "e2")
	newer := f.whileReadingNewEpoch(t, s, "bob", "n1")
	s.Offer(false, &e2, eventFrame("bob", "e2", e2)) // e1 lost on the way: a fill
	n1 := <-newer
	testkit.Eventually(t, 3*time.Second, "n1 sent, or its epoch announced", func() bool {
		if r, ok := c.lastResync(t); ok {
			return r.Pos == n1.String()
		}
		got := c.events(t)
		return len(got) > 0 && got[len(got)-1] == "n1@1"
	})
	if got := c.events(t); len(got) < 2 || got[0] != "e1@1" || got[1] != "e2@2" {
		t.Fatalf("events %v, want e1@1 e2@2 first", got)
	}
}

// TestNewEpochDuringConnectIsNotDropped: likewise while a new socket's
// connect read is in flight.
func TestNewEpochDuringConnectIsNotDropped(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	c := &conn{id: "c1", user: "bob"}
	f.publish(t, "bob", "e1")
	s := f.res.NewSocket(c)
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	newer := f.whileReadingNewEpoch(t, s, "bob", "n1")
	if err := f.res.Connect(context.Background(), s, proto.Connected{Worker: 0}, "", ""); err != nil {
		t.Fatal(err)
	}
	n1 := <-newer
	testkit.Eventually(t, 3*time.Second, "n1 sent, or its epoch announced", func() bool {
		if r, ok := c.lastResync(t); ok {
			return r.Pos == n1.String()
		}
		got := c.events(t)
		return len(got) > 0 && got[len(got)-1] == "n1@1"
	})
}

// TestOldEpochFrameDroppedAfterResync: a frame of the epoch the store
// lost, delayed past the reset and held while the new epoch is read, is
// dropped after the resync, and the socket goes live in the new epoch.
func TestOldEpochFrameDroppedAfterResync(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	c := &conn{id: "c1", user: "bob"}
	s, _ := f.connect(t, c, "", "")
	p1 := f.publish(t, "bob", "e1")
	s.Offer(false, &p1, eventFrame("bob", "e1", p1))
	late := proto.Pos{Epoch: p1.Epoch, MS: p1.MS, Off: 2} // published before the reset, delayed
	f.rdb.FlushAll(context.Background())                  // Redis restarted empty
	f.publish(t, "bob", "n1")
	n2 := f.publish(t, "bob", "n2")
	s.Offer(false, &n2, eventFrame("bob", "n2", n2)) // n1 missed, in a new epoch: a read
	s.Offer(false, &late, eventFrame("bob", "e2", late))
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	testkit.Eventually(t, 5*time.Second, "a resync", func() bool { return len(f.rec.resyncs()) == 1 })
	// Live again, the socket sends the next event as it is offered. (It
	// is not in the stream, so no read could send it instead.)
	n3 := proto.Pos{Epoch: n2.Epoch, MS: n2.MS, Off: 3}
	s.Offer(false, &n3, eventFrame("bob", "n3", n3))
	if got := join(c.events(t)); got != "e1@1 resync n3@3" {
		t.Fatalf("events %q, want e1@1 resync n3@3: the socket is not live", got)
	}
}
