package resume_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// publishExcept is publish for a dispatch that leaves the connections
// except out.
func (f *fixture) publishExcept(t *testing.T, user, event string, except ...string) proto.Pos {
	t.Helper()
	pos, _, err := streams.Publish(context.Background(), f.rdb, time.Minute,
		&proto.Dispatch{Event: event, Args: json.RawMessage(`{}`), Users: []string{user}, Except: except})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := proto.ParsePos(pos[0])
	return p
}

// waitEvents waits until c's events after connected are want, or fails.
func waitEvents(t *testing.T, c *conn, want string) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, "events "+want, func() bool { return join(c.events(t)) == want })
	if got := join(c.events(t)); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
}

// TestSkipLive: a socket left out of an event (Skip) is sent nothing of
// it and carries on at the next offset, with no gap read, no resync and
// no duplicate; a left-out event that ends a gap is not sent by the read
// that fills the gap (its entry names the socket), and the events before
// it are; the skipped event offered again is dropped.
func TestSkipLive(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	c := &conn{id: "c1", user: "bob"}
	s, _ := f.connect(t, c, "", "")
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })

	e1 := f.publishExcept(t, "bob", "e1", "c1")
	s.Skip(false, &e1)
	e2 := f.publish(t, "bob", "e2")
	s.Offer(false, &e2, eventFrame("bob", "e2", e2))
	if got, want := join(c.events(t)), "e2@2"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if f.rec.healedN() != 0 {
		t.Fatalf("a skipped event read as a gap: %d healed", f.rec.healedN())
	}

	// e3 never arrives live; e4, which leaves c1 out, does: a gap.
	f.publish(t, "bob", "e3")
	e4 := f.publishExcept(t, "bob", "e4", "other", "c1")
	s.Skip(false, &e4)
	waitEvents(t, c, "e2@2 e3@3")
	e5 := f.publish(t, "bob", "e5")
	s.Offer(false, &e5, eventFrame("bob", "e5", e5))
	s.Offer(false, &e4, eventFrame("bob", "e4", e4)) // a late copy
	waitEvents(t, c, "e2@2 e3@3 e5@5")
	// A skip while the socket holds (a gap being read) is held in order.
	f.publish(t, "bob", "e6")
	e7 := f.publishExcept(t, "bob", "e7", "c1")
	e8 := f.publish(t, "bob", "e8")
	s.Skip(false, &e7)
	s.Offer(false, &e8, eventFrame("bob", "e8", e8))
	waitEvents(t, c, "e2@2 e3@3 e5@5 e6@6 e8@8")
	if r := f.rec.resyncs(); len(r) != 0 {
		t.Fatalf("resyncs %v for skipped events", r)
	}
	f.rec.mu.Lock()
	dups := f.rec.dups
	f.rec.mu.Unlock()
	// The late e4, and e8, held while the read that sent it ran; the
	// skips held are no duplicates.
	if dups != 2 {
		t.Fatalf("%d duplicates counted, want 2 (the late e4, the held e8)", dups)
	}
}

// TestSkipBroadcastAndTransient: a skipped broadcast moves the socket in
// the broadcast stream; a skipped transient event is simply not sent.
func TestSkipBroadcastAndTransient(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	c := &conn{id: "c1", user: "bob"}
	s, _ := f.connect(t, c, "", "")
	pos, _, err := streams.Publish(context.Background(), f.rdb, time.Minute,
		&proto.Dispatch{Event: "b1", Broadcast: true, Except: []string{"c1"}},
		&proto.Dispatch{Event: "b2", Broadcast: true})
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := proto.ParsePos(pos[0])
	b2, _ := proto.ParsePos(pos[1])
	s.Skip(true, &b1)
	s.Skip(false, nil)
	s.Offer(true, &b2, proto.AppendEventAt(nil, "b2", "bob", json.RawMessage(`{}`), proto.KeyBPos, b2.Append(nil)))
	if got, want := join(c.events(t)), "b2@b2"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
}

// TestResumeSkipsLeftOut: a resume that names a previous connection
// (Previous) is not replayed the events that left it out, the last one
// included, and missed counts what is sent; live, the next offset follows
// without a gap. A resume from the same place without it (another
// device, or a malformed prev) gets them all.
func TestResumeSkipsLeftOut(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	last := f.publish(t, "bob", "e1")
	f.publishExcept(t, "bob", "e2", "old")
	f.publish(t, "bob", "e3")
	f.publishExcept(t, "bob", "e4", "older", "old")

	c := &conn{id: "c2", user: "bob"}
	s := f.res.NewSocket(c)
	s.Previous([]string{"x", "old"})
	if err := f.res.Connect(context.Background(), s, proto.Connected{}, last.String(), ""); err != nil {
		t.Fatal(err)
	}
	var args proto.Connected
	_ = json.Unmarshal(c.got()[0].Args, &args)
	if args.Recovered == nil || !*args.Recovered || *args.Missed != 1 {
		t.Fatalf("connected %+v, want recovered with 1 missed", args)
	}
	if got, want := join(c.events(t)), "e3@3"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if f.rec.replayedN() != 1 {
		t.Fatalf("%d replayed, want 1", f.rec.replayedN())
	}
	e5 := f.publish(t, "bob", "e5")
	s.Offer(false, &e5, eventFrame("bob", "e5", e5))
	if got, want := join(c.events(t)), "e3@3 e5@5"; got != want {
		t.Fatalf("events %q, want %q: the skipped e4 left a gap", got, want)
	}

	for name, prev := range map[string][]string{"no prev": nil, "malformed prev": proto.ParsePrev("old,,x")} {
		c := &conn{id: "c3", user: "bob"}
		s := f.res.NewSocket(c)
		s.Previous(prev)
		if err := f.res.Connect(context.Background(), s, proto.Connected{}, last.String(), ""); err != nil {
			t.Fatal(err)
		}
		var args proto.Connected
		_ = json.Unmarshal(c.got()[0].Args, &args)
		if args.Recovered == nil || !*args.Recovered || *args.Missed != 4 {
			t.Fatalf("%s: connected %+v, want recovered with 4 missed", name, args)
		}
		if got, want := join(c.events(t)), "e2@2 e3@3 e4@4 e5@5"; got != want {
			t.Fatalf("%s: events %q, want %q", name, got, want)
		}
	}
}
