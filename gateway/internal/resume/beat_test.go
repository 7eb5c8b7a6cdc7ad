package resume_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// beat has s queue its heartbeat and returns the frame queued.
func beat(t *testing.T, s *resume.Socket, c *conn) frame {
	t.Helper()
	if !s.Beat(proto.AppendHeartbeat(nil, c.user)) {
		t.Fatal("Beat did not queue the heartbeat")
	}
	got := c.got()
	f := got[len(got)-1]
	if f.Event != proto.EventHeartbeat || f.ID != c.user {
		t.Fatalf("last frame %+v, want the heartbeat", f)
	}
	return f
}

// TestBeatCarriesSkippedPositions: a socket's heartbeat is the plain frame
// until an event it is left out of moves its place in a stream past the
// last frame that told the client its place; then the next heartbeat
// carries that place (pos for the user's stream, bpos for the broadcast
// stream, only the one that moved so), and the one after is plain again.
// An event sent after a skip tells the place itself; a skip at the end
// of a gap filled from the stream counts as one.
func TestBeatCarriesSkippedPositions(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	c := &conn{id: "c1", user: "bob"}
	s, _ := f.connect(t, c, "", "")
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	check := func(what string, got frame, pos, bpos string) {
		t.Helper()
		if got.Pos != pos || got.BPos != bpos {
			t.Fatalf("%s: heartbeat %+v, want pos %q bpos %q", what, got, pos, bpos)
		}
	}

	check("fresh", beat(t, s, c), "", "")
	e1 := f.publishExcept(t, "bob", "e1", "c1")
	s.Skip(false, &e1)
	check("after a skipped last event", beat(t, s, c), e1.String(), "")
	check("told already", beat(t, s, c), "", "")

	e2 := f.publishExcept(t, "bob", "e2", "c1")
	s.Skip(false, &e2)
	e3 := f.publish(t, "bob", "e3")
	s.Offer(false, &e3, eventFrame("bob", "e3", e3))
	check("an event sent after the skip", beat(t, s, c), "", "")

	pos, _, err := streams.Publish(context.Background(), f.rdb, time.Minute,
		&proto.Dispatch{Event: "b1", Broadcast: true, Except: []string{"c1"}})
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := proto.ParsePos(pos[0])
	s.Skip(true, &b1)
	check("a skipped broadcast", beat(t, s, c), "", b1.String())

	// e4 never arrives live; e5, which leaves c1 out, does: the read
	// that fills the gap sends e4 and moves past e5.
	f.publish(t, "bob", "e4")
	e5 := f.publishExcept(t, "bob", "e5", "c1")
	s.Skip(false, &e5)
	waitEvents(t, c, "$ping $ping@1 $ping e3@3 $ping $ping@b1 e4@4")
	check("a skip at the end of a gap filled", beat(t, s, c), e5.String(), "")

	// Both streams at once.
	e6 := f.publishExcept(t, "bob", "e6", "c1")
	s.Skip(false, &e6)
	pos, _, err = streams.Publish(context.Background(), f.rdb, time.Minute,
		&proto.Dispatch{Event: "b2", Broadcast: true, Except: []string{"c1"}})
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := proto.ParsePos(pos[0])
	s.Skip(true, &b2)
	check("both streams", beat(t, s, c), e6.String(), b2.String())
}

// TestResumeAfterSkippedLastEventExpired: a device left out of the last
// event of its stream (its own message, sent with event.ExceptSender)
// takes its place from the heartbeat that follows, so its resume once
// the stream's entries have expired (HISTORY_WINDOW, with nothing newer
// published for the user) recovers, naming nothing missed. A client
// without heartbeats keeps its place before the event, and such a resume
// cannot be told from one that lost the event: not recovered.
func TestResumeAfterSkippedLastEventExpired(t *testing.T) {
	for _, heartbeats := range []bool{true, false} {
		t.Run(fmt.Sprintf("heartbeats=%v", heartbeats), func(t *testing.T) {
			f := newFixture(t, resume.DefaultConfig())
			f.publish(t, "bob", "e0")
			old := &conn{id: "old", user: "bob"}
			s, _ := f.connect(t, old, "", "")
			e1 := f.publish(t, "bob", "e1")
			s.Offer(false, &e1, eventFrame("bob", "e1", e1))
			e2 := f.publishExcept(t, "bob", "e2", "old") // bob's own message, from "old"
			s.Skip(false, &e2)
			if heartbeats {
				beat(t, s, old)
			}
			// The client's place: the last position it was sent, as
			// client.js keeps it.
			at := ""
			for _, fr := range old.got() {
				if fr.Pos != "" {
					at = fr.Pos
				}
			}
			s.Closed()
			// The window passes: the stream's TTL ends it, the meta stays.
			if err := f.rdb.Del(context.Background(), proto.UserStreamKey("bob")).Err(); err != nil {
				t.Fatal(err)
			}
			c := &conn{id: "new", user: "bob"}
			ns := f.res.NewSocket(c)
			ns.Previous([]string{"old"})
			if err := f.res.Connect(context.Background(), ns, proto.Connected{}, at, ""); err != nil {
				t.Fatal(err)
			}
			var args proto.Connected
			if err := json.Unmarshal(c.got()[0].Args, &args); err != nil {
				t.Fatal(err)
			}
			recovered := args.Recovered != nil && *args.Recovered
			if heartbeats && (!recovered || args.Missed == nil || *args.Missed != 0) {
				t.Fatalf("resumed from %s, the heartbeat's place: connected %+v (%s), want recovered with 0 missed", at, args, f.rec.lastResume())
			}
			if !heartbeats && (recovered || at != e1.String()) {
				t.Fatalf("resumed from %s without heartbeats: connected %+v, want from e1 (%s), not recovered", at, args, e1)
			}
		})
	}
}

// TestBeatOrderedWithEvents: heartbeats queued while events are offered
// and skipped concurrently never carry a place ahead of an event not yet
// queued, nor behind one already queued: in the frames the client gets,
// every heartbeat's position is the offset of the last event before it
// or later, and every event after it is later still.
func TestBeatOrderedWithEvents(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	c := &conn{id: "c1", user: "bob"}
	s, args := f.connect(t, c, "", "")
	top, _ := proto.ParsePos(args.Pos)
	const n = 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		plain := proto.AppendHeartbeat(nil, "bob")
		for {
			select {
			case <-stop:
				return
			default:
				s.Beat(plain)
			}
		}
	}()
	for i := uint64(1); i <= n; i++ {
		p := proto.Pos{Epoch: top.Epoch, MS: 1, Off: top.Off + i}
		if i%3 == 0 {
			s.Offer(false, &p, eventFrame("bob", "e", p))
		} else {
			s.Skip(false, &p) // two of three left out: most heartbeats carry a place
		}
	}
	close(stop)
	wg.Wait()
	s.Beat(proto.AppendHeartbeat(nil, "bob"))
	var last uint64 // the client's offset, as it moves
	beats := 0
	for _, fr := range c.got()[1:] {
		if fr.Pos == "" {
			continue
		}
		p, ok := proto.ParsePos(fr.Pos)
		if !ok || p.Epoch != top.Epoch {
			t.Fatalf("frame %+v: position not of the stream's epoch %s", fr, top.Epoch)
		}
		if p.Off <= last {
			t.Fatalf("frame %+v at offset %d after offset %d: a heartbeat ran ahead of an event queued after it, or an event went backwards", fr, p.Off, last)
		}
		if fr.Event == proto.EventHeartbeat {
			beats++
		}
		last = p.Off
	}
	if last != top.Off+n {
		t.Fatalf("the client ends at offset %d, want %d: the last skips were never told", last, top.Off+n)
	}
	if beats == 0 {
		t.Fatal("no heartbeat carried a place")
	}
}
