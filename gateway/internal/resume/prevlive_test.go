package resume_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/switchboard/switchboard/gateway/internal/hub"
	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/proto"
)

// TestPreviousLeftOutLive: a socket that resumed naming a previous
// connection of its client (Previous) gets nothing of a dispatch that
// leaves that connection out, whether the event reaches it from the
// stream (the replay, a gap filled) or live through the hub, before
// Connect ends (held) or after: which way an event comes, a matter of
// timing, must not decide whether the client gets it. The events around
// it come once, in order, without a gap read or a resync.
func TestPreviousLeftOutLive(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	h := hub.New[*resume.Socket](hub.WithPositions())
	deliver := func(event string, except ...string) {
		t.Helper()
		d := &proto.Dispatch{Event: event, Args: json.RawMessage(`{}`), Users: []string{"bob"}, Except: except}
		p := f.publishExcept(t, "bob", event, except...)
		d.Pos = map[string]string{"bob": p.String()}
		h.Deliver(d)
	}
	last := f.publish(t, "bob", "e1")
	f.publishExcept(t, "bob", "e2", "old") // before the resume: in its replay

	c := &conn{id: "new", user: "bob"}
	s := f.res.NewSocket(c)
	h.Add(s) // registered first, as the worker does
	s.Previous([]string{"old"})
	deliver("e3", "old") // live while the socket holds, before its read
	if err := f.res.Connect(context.Background(), s, proto.Connected{}, last.String(), ""); err != nil {
		t.Fatal(err)
	}
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	deliver("e4", "old") // live, after Connect
	deliver("e5")
	deliver("e6", "new")
	deliver("e7")
	if got, want := join(c.events(t)), "e5@5 e7@7"; got != want {
		t.Fatalf("events %q, want %q: a dispatch leaving out the client's previous connection reached it live", got, want)
	}
	if r := f.rec.resyncs(); len(r) != 0 || f.rec.healedN() != 0 {
		t.Fatalf("resyncs %v, %d gaps healed: want none", r, f.rec.healedN())
	}
}

// TestResumeBeforeSkippedAfterWindow reproduces a finding that is not
// fixed: a device left out of the last event of its stream (its own
// message, sent with event.ExceptSender) is never sent anything that
// moves its position past that event. Once the stream's entries expire
// (HISTORY_WINDOW, plus at most 10 s, with nothing newer published for
// the user), its next resume, naming the connection in prev, is
// recovered:false ("missed events expired") although it missed nothing:
// the gateway cannot tell an expired entry it was left out of from one it
// lost. Without except the device would have had the event, and be at the
// top, which always recovers.
func TestResumeBeforeSkippedAfterWindow(t *testing.T) {
	t.Skip("known, not fixed: a skipped last event leaves the client's position behind; see the review report")
	f := newFixture(t, resume.DefaultConfig())
	last := f.publish(t, "bob", "e1")
	f.publishExcept(t, "bob", "e2", "old") // bob's own message, from "old"
	// The window passes: the stream's TTL ends it, the meta stays.
	if err := f.rdb.Del(context.Background(), proto.UserStreamKey("bob")).Err(); err != nil {
		t.Fatal(err)
	}
	c := &conn{id: "new", user: "bob"}
	s := f.res.NewSocket(c)
	s.Previous([]string{"old"})
	if err := f.res.Connect(context.Background(), s, proto.Connected{}, last.String(), ""); err != nil {
		t.Fatal(err)
	}
	var args proto.Connected
	_ = json.Unmarshal(c.got()[0].Args, &args)
	if args.Recovered == nil || !*args.Recovered {
		t.Fatalf("connected %+v (%s): not recovered, though the device missed nothing it was sent", args, f.rec.lastResume())
	}
}
