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
