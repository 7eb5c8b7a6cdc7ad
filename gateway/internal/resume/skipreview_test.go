package resume_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestReviewChunkedReplaySkipsNotUTF8: a replay read in parts (a queue of
// 4 frames) through events whose args are not UTF-8, at the cut of a part
// and as the last event: every good event once, in order, none bad; the
// replayed count is the good ones; a heartbeat then names the top.
func TestReviewChunkedReplaySkipsNotUTF8(t *testing.T) {
	cfg := resume.DefaultConfig()
	cfg.QueueFrames = 8
	f := newFixture(t, cfg)
	from := f.publish(t, "bob", "e0")
	var good []uint64
	var top proto.Pos
	for i := 1; i <= 30; i++ {
		if i%3 == 0 || i == 30 {
			top = f.publishNotUTF8(t, "bob", fmt.Sprintf("bad%d", i))
			continue
		}
		top = f.publish(t, "bob", fmt.Sprintf("e%d", i))
		good = append(good, top.Off)
	}
	c := &utf8Conn{conn: &conn{id: "c1", user: "bob", maxFrames: 8}}
	var s *resume.Socket
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	s, args := f.connect(t, c.conn, from.String(), "")
	_ = args
	drainAll(t, c.conn, func() bool { return len(c.offsets(false)) == len(good) })
	// The last entry (bad) is skipped after the last good one: the
	// heartbeat names it.
	testkit.Eventually(t, 5*time.Second, "a heartbeat at the top", func() bool {
		c.drain()
		p := beat(t, s, c.conn).Pos
		c.drain()
		return p == top.String()
	})
	var offs []uint64
	for _, fr := range c.got()[1:] {
		if p, ok := proto.ParsePos(fr.Pos); ok && fr.Event != proto.EventHeartbeat {
			offs = append(offs, p.Off)
		}
	}
	if got := fmt.Sprint(offs); got != fmt.Sprint(good) {
		t.Fatalf("offsets %s, want %s", got, fmt.Sprint(good))
	}
	if n := f.rec.replayedN(); n != len(good) {
		t.Errorf("replayed %d, want %d", n, len(good))
	}
	next := f.publish(t, "bob", "live")
	if !s.Offer(false, &next, eventFrame("bob", "live", next)) {
		q, _ := c.Queued()
		t.Fatalf("live not taken: closed %d queued %d offs %v", c.closeCode(), q, c.offsets(false))
	}
	testkit.Eventually(t, 5*time.Second, "live sent", func() bool {
		evs := c.events(t)
		return strings.HasPrefix(evs[len(evs)-1], "live@")
	})
	if c.drain(); len(f.rec.resyncs()) != 0 || f.rec.healedN() != 0 {
		t.Fatalf("resyncs %v healed %d", f.rec.resyncs(), f.rec.healedN())
	}
	for _, b := range c.notUTF8() {
		t.Errorf("sent %q", b)
	}
}

// TestReviewBeatAfterSkippedNotUTF8Last: a gap fill whose last entry is
// not UTF-8 moves the place past it, and the next heartbeat says so.
func TestReviewBeatAfterSkippedNotUTF8Last(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	c := &conn{id: "c1", user: "bob"}
	s, _ := f.connect(t, c, "", "")
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	f.publish(t, "bob", "e1") // never offered
	bad := f.publishNotUTF8(t, "bob", "bad")
	e3 := f.publish(t, "bob", "e3")
	_ = e3
	// the resumer is told of a gap by a sweep
	if err := f.res.Sweep(context.Background(), []*resume.Socket{s}); err != nil {
		t.Fatal(err)
	}
	waitEvents(t, c, "e1@1 e3@3")
	_ = bad
	bad2 := f.publishNotUTF8(t, "bob", "bad2")
	if err := f.res.Sweep(context.Background(), []*resume.Socket{s}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "heartbeat with the skipped place", func() bool {
		return beat(t, s, c).Pos == bad2.String()
	})
	// The live path: the next event is next; an offer of the skipped one
	// is a duplicate.
	e5 := f.publish(t, "bob", "e5")
	if !s.Offer(false, &e5, eventFrame("bob", "e5", e5)) {
		t.Fatal("e5 not sent")
	}
	if s.Offer(false, &bad2, eventFrame("bob", "bad2", bad2)) {
		t.Fatal("the skipped one sent live")
	}
}

// TestReviewReplayReservedEvent: the fan-out drops a live dispatch naming
// one of the gateway's own events (proto.Reserved: connected, ack, error,
// resync), from any publisher (docs/protocol.md: "a gateway worker drops,
// logs and counts one that arrives anyway"). The same dispatch is in the
// user's stream, recorded by that publisher (streams.Publish checks no
// event name against Reserved), and a resume replays it, as a gap fill
// does one event later: a second "connected" or a forged "resync" reaches
// the client, which 262f277 stops for args that are not UTF-8 but not for
// this, the fan-out's other drop.
func TestReviewReplayReservedEvent(t *testing.T) {
	for _, ev := range []string{proto.EventConnected, proto.EventResync} {
		t.Run(ev, func(t *testing.T) {
			f := newFixture(t, resume.DefaultConfig())
			from := f.publish(t, "bob", "e0")
			if _, _, err := streams.Publish(context.Background(), f.rdb, time.Minute,
				&proto.Dispatch{Event: ev, Args: json.RawMessage(`{"conn":"forged","reason":"forged"}`), Users: []string{"bob"}}); err != nil {
				t.Fatal(err)
			}
			f.publish(t, "bob", "e2")
			c := &conn{id: "c1", user: "bob"}
			_, args := f.connect(t, c, from.String(), "")
			for _, fr := range c.got()[1:] {
				if proto.Reserved(fr.Event) {
					t.Errorf("the replay sent a %q frame from the stream (args %s): the fan-out drops it live", fr.Event, fr.Args)
				}
			}
			if args.Missed == nil || *args.Missed != 1 {
				t.Errorf("connected %+v (missed %d), want 1 missed (e2)", args, *args.Missed)
			}
		})
	}
}
