package seqcheck

import (
	"reflect"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/proto"
)

// pos returns the position of offset off in epoch "e1" (user streams) or
// "b1" (broadcast, when the epoch is given).
func pos(off int, epoch ...string) string {
	e := "e1"
	if len(epoch) > 0 {
		e = epoch[0]
	}
	return proto.Pos{Epoch: e, MS: 1000 + uint64(off), Off: uint64(off)}.String()
}

func connected(p, bp string, recovered *bool, missed int) proto.Connected {
	c := proto.Connected{Conn: "c", Pos: p, BPos: bp, Recovered: recovered}
	if recovered != nil {
		c.Missed = &missed
	}
	return c
}

var yes, no = func() *bool { b := true; return &b }(), func() *bool { b := false; return &b }()

// step is one thing a scenario does to a Checker.
type step func(c *Checker)

func send(id string, users ...string) step {
	return func(c *Checker) {
		sts := make([]Stream, len(users))
		for i, u := range users {
			sts[i] = UserStream(u)
			if u == "*" {
				sts[i] = Broadcast
			}
		}
		c.Dispatching(id, sts...)
		c.Acked(id)
	}
}

func sendFailed(id string, user string) step {
	return func(c *Checker) { c.Dispatching(id, UserStream(user)); c.Failed(id) }
}

func conn(dev string, off int) step {
	return func(c *Checker) { c.Connected(dev, "", "", connected(pos(off), pos(0, "b1"), nil, 0)) }
}

func resume(dev string, from int, recovered *bool, at int) step {
	return func(c *Checker) {
		c.Connected(dev, pos(from), pos(0, "b1"), connected(pos(at), pos(0, "b1"), recovered, 0))
	}
}

func ev(dev string, off int, id string) step {
	return func(c *Checker) { c.Event(dev, false, pos(off), id) }
}

func evIn(dev, epoch string, off int, id string) step {
	return func(c *Checker) { c.Event(dev, false, pos(off, epoch), id) }
}

func resync(dev string, p string) step {
	return func(c *Checker) { c.Resync(dev, proto.Resync{Pos: p, Reason: "store lost events"}) }
}

func TestChecker(t *testing.T) {
	cases := []struct {
		name    string
		steps   []step
		pending int    // events Pending must report
		err     string // a violation's text, "" for none
	}{
		{name: "every event once, in order",
			steps: []step{conn("a1", 0), conn("a2", 0), send("p1", "alice"), send("p2", "alice"),
				ev("a1", 1, "p1"), ev("a1", 2, "p2"), ev("a2", 1, "p1"), ev("a2", 2, "p2")}},
		{name: "a skipped offset is a gap",
			steps:   []step{conn("a1", 0), send("p1", "alice"), send("p2", "alice"), ev("a1", 2, "p2")},
			pending: 1, err: "1 events skipped"},
		{name: "an offset twice is a duplicate",
			steps: []step{conn("a1", 0), send("p1", "alice"), ev("a1", 1, "p1"), ev("a1", 1, "p1")},
			err:   "duplicate or out of order"},
		{name: "an older offset is out of order",
			steps: []step{conn("a1", 0), send("p1", "alice"), send("p2", "alice"),
				ev("a1", 1, "p1"), ev("a1", 2, "p2"), ev("a1", 1, "p1")},
			err: "duplicate or out of order"},
		{name: "one event at two offsets is a duplicate",
			steps: []step{conn("a1", 0), send("p1", "alice"), ev("a1", 1, "p1"), ev("a1", 2, "p1")},
			err:   "event p1 again"},
		{name: "a recovered resume continues the chain",
			steps: []step{conn("a1", 0), send("p1", "alice"), ev("a1", 1, "p1"),
				func(c *Checker) { c.Disconnected("a1") },
				send("p2", "alice"), send("p3", "alice"),
				resume("a1", 1, yes, 1), ev("a1", 2, "p2"), ev("a1", 3, "p3")}},
		{name: "a recovered resume that skips a missed event is a gap",
			steps: []step{conn("a1", 0), send("p1", "alice"), ev("a1", 1, "p1"),
				send("p2", "alice"), send("p3", "alice"),
				resume("a1", 1, yes, 1), ev("a1", 3, "p3")},
			pending: 1, err: "gap"},
		{name: "a recovered resume whose tail never comes leaves it pending",
			steps: []step{conn("a1", 0), send("p1", "alice"), ev("a1", 1, "p1"),
				send("p2", "alice"), resume("a1", 1, yes, 1)},
			pending: 1},
		{name: "a recovered resume that lost the store's events leaves them pending",
			// The store lost p2 without a new epoch, the gateway said
			// recovered and went on from the new top: the offsets look
			// contiguous, the ack truth does not.
			steps: []step{conn("a1", 0), send("p1", "alice"), ev("a1", 1, "p1"),
				send("p2", "alice"), send("p3", "alice"),
				resume("a1", 1, yes, 1), ev("a1", 2, "p3")},
			pending: 1},
		{name: "a recovered resume must start at the asked position",
			steps: []step{conn("a1", 0), send("p1", "alice"), ev("a1", 1, "p1"), resume("a1", 1, yes, 0)},
			err:   "starts at"},
		{name: "a resume from a position the device had not reached",
			steps: []step{conn("a1", 0), send("p1", "alice"), send("p2", "alice"), ev("a1", 1, "p1"),
				resume("a1", 2, yes, 2)},
			pending: 1, err: "had processed up to"},
		{name: "recovered false starts a new chain",
			steps: []step{conn("a1", 0), send("p1", "alice"), send("p2", "alice"), ev("a1", 1, "p1"),
				resume("a1", 1, no, 2), send("p3", "alice"), ev("a1", 3, "p3")}},
		{name: "after recovered false, later events are still due",
			steps:   []step{conn("a1", 0), send("p1", "alice"), resume("a1", 0, no, 1), send("p2", "alice")},
			pending: 1},
		{name: "a resync starts a new chain",
			steps: []step{conn("a1", 0), send("p1", "alice"), resync("a1", pos(4, "e2")),
				send("p2", "alice"), evIn("a1", "e2", 5, "p2")}},
		{name: "another epoch without resync is a gap",
			steps: []step{conn("a1", 0), send("p1", "alice"), evIn("a1", "e2", 1, "p1")},
			err:   "another epoch"},
		{name: "an event of another user is misrouted",
			steps: []step{conn("a1", 0), send("p1", "bob"), ev("a1", 1, "p1")},
			err:   "never dispatched to user:alice"},
		{name: "an event nobody dispatched",
			steps: []step{conn("a1", 0), ev("a1", 1, "p9")},
			err:   "never dispatched"},
		{name: "two events at one position",
			steps: []step{conn("a1", 0), conn("a2", 0), send("p1", "alice"), send("p2", "alice"),
				ev("a1", 1, "p1"), ev("a2", 1, "p2")},
			pending: 2, err: "another device had p1"},
		{name: "an unconfirmed event may come or not",
			steps: []step{conn("a1", 0), conn("a2", 0), sendFailed("p1", "alice"), send("p2", "alice"),
				ev("a1", 1, "p1"), ev("a1", 2, "p2"), resync("a2", pos(1)), ev("a2", 2, "p2")}},
		{name: "events dispatched before the chain began are not due",
			steps: []step{send("p1", "alice"), conn("a1", 1)}},
		{name: "an event before connected",
			steps: []step{send("p1", "alice"), ev("a1", 1, "p1")},
			err:   "before connected"},
		{name: "a broadcast reaches every user's devices",
			steps: []step{conn("a1", 0), conn("b1", 0), send("x1", "*"),
				func(c *Checker) { c.Event("a1", true, pos(1, "b1"), "x1"); c.Event("b1", true, pos(1, "b1"), "x1") }}},
		{name: "a broadcast missing on one device",
			steps:   []step{conn("a1", 0), conn("b1", 0), send("x1", "*"), func(c *Checker) { c.Event("a1", true, pos(1, "b1"), "x1") }},
			pending: 1},
		{name: "recovered without a resume",
			steps: []step{func(c *Checker) { c.Connected("a1", "", "", connected(pos(0), pos(0, "b1"), yes, 0)) }},
			err:   "without a resume"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			for _, d := range []struct{ dev, user string }{{"a1", "alice"}, {"a2", "alice"}, {"b1", "bob"}} {
				c.AddDevice(d.dev, d.user)
			}
			for _, s := range tc.steps {
				s(c)
			}
			n, missing := c.Pending(10)
			if n != tc.pending || len(missing) != n {
				t.Errorf("pending %d %v, want %d", n, missing, tc.pending)
			}
			err := c.Err()
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("unexpected violation: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("got %v, want a violation with %q", err, tc.err)
			}
		})
	}
}

func TestStats(t *testing.T) {
	c := New()
	c.AddDevice("a1", "alice")
	conn("a1", 0)(c)
	send("p1", "alice")(c)
	sendFailed("p2", "alice")(c)
	ev("a1", 1, "p1")(c)
	ev("a1", 1, "p1")(c)
	c.Connected("a1", pos(1), pos(0, "b1"), connected(pos(1), pos(0, "b1"), yes, 3))
	resume("a1", 1, no, 2)(c)
	resync("a1", pos(2))(c)
	s := c.Stats()
	want := Stats{Dispatched: 2, Acked: 1, Failed: 1, Events: 1, Connects: 3, Resumes: 2, Recovered: 1,
		Replayed: 3, NotRecovered: 1, Duplicates: 1, Violations: 1}
	if s.Resynced() != 1 || s.Resyncs["store lost events"] != 1 {
		t.Errorf("resyncs %v", s.Resyncs)
	}
	s.Resyncs = nil
	if !reflect.DeepEqual(s, want) {
		t.Errorf("stats %+v, want %+v", s, want)
	}
}

func TestBehind(t *testing.T) {
	c := New()
	c.AddDevice("a1", "alice")
	c.AddDevice("a2", "alice")
	conn("a1", 0)(c)
	conn("a2", 0)(c)
	send("p1", "alice")(c)
	ev("a1", 1, "p1")(c)
	c.Disconnected("a2")
	top, _ := proto.ParsePos(pos(1))
	got := c.Behind(map[Stream]proto.Pos{UserStream("alice"): top})
	if len(got) != 1 || !strings.Contains(got[0], "a2 is not connected") {
		t.Fatalf("behind %q", got)
	}
	resume("a2", 0, yes, 0)(c)
	got = c.Behind(map[Stream]proto.Pos{UserStream("alice"): top})
	if len(got) != 1 || !strings.Contains(got[0], "a2 is at") {
		t.Fatalf("behind %q", got)
	}
	ev("a2", 1, "p1")(c)
	if got := c.Behind(map[Stream]proto.Pos{UserStream("alice"): top}); len(got) != 0 {
		t.Fatalf("behind %q", got)
	}
}

func TestLagging(t *testing.T) {
	c := New()
	c.AddDevice("a1", "alice")
	conn("a1", 0)(c)
	send("p1", "alice")(c)
	send("p2", "alice")(c)
	top, _ := proto.ParsePos(pos(1))
	tops := map[Stream]proto.Pos{UserStream("alice"): top}
	if got := c.Lagging(tops); len(got) != 1 {
		t.Fatalf("lagging %q, want a1", got)
	}
	ev("a1", 1, "p1")(c)
	if got := c.Lagging(tops); len(got) != 0 {
		t.Fatalf("lagging %q at the top", got)
	}
	ev("a1", 2, "p2")(c)
	if got := c.Lagging(tops); len(got) != 0 {
		t.Fatalf("lagging %q past the top", got)
	}
	other, _ := proto.ParsePos(pos(1, "e9"))
	if got := c.Lagging(map[Stream]proto.Pos{UserStream("alice"): other}); len(got) != 1 {
		t.Fatalf("lagging %q, want a1 in another epoch", got)
	}
}

func TestDriverMistakes(t *testing.T) {
	c := New()
	c.AddDevice("a1", "alice")
	c.AddDevice("a1", "alice")
	c.Dispatching("p1", UserStream("alice"))
	c.Dispatching("p1", UserStream("alice"))
	c.Acked("p9")
	c.Failed("p9")
	c.Event("zz", false, pos(1), "p1")
	c.Invalid("a1", "not JSON")
	if s := c.Stats(); s.Violations != 6 {
		t.Fatalf("violations %d, want 6: %v", s.Violations, c.Err())
	}
}
