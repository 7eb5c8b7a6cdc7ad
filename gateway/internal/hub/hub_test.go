package hub_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/switchboard/switchboard/gateway/internal/hub"
	"github.com/switchboard/switchboard/proto"
)

// conn is a socket as the hub sees it: it records the frames it is
// offered, and the positions that came with them.
type conn struct {
	id, user string
	refuse   bool // Offer reports a full queue

	mu     sync.Mutex
	frames [][]byte
	offers []offer
	skips  []offer // Skip's, in order
}

type offer struct {
	broadcast bool
	pos       *proto.Pos
}

func (c *conn) ID() string   { return c.id }
func (c *conn) User() string { return c.user }
func (c *conn) Offer(broadcast bool, pos *proto.Pos, data []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse {
		return false
	}
	var p *proto.Pos
	if pos != nil {
		cp := *pos
		p = &cp
	}
	c.frames = append(c.frames, data)
	c.offers = append(c.offers, offer{broadcast, p})
	return true
}

func (c *conn) Skip(broadcast bool, pos *proto.Pos) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var p *proto.Pos
	if pos != nil {
		cp := *pos
		p = &cp
	}
	c.skips = append(c.skips, offer{broadcast, p})
}

func (c *conn) received() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.frames...)
}

func TestAddRemoveLen(t *testing.T) {
	h := hub.New[*conn]()
	a1 := &conn{id: "a1", user: "alice"}
	a2 := &conn{id: "a2", user: "alice"}
	b1 := &conn{id: "b1", user: "bob"}
	type counts struct{ all, alice, bob int }
	steps := []struct {
		name string
		do   func()
		want counts
	}{
		{"empty", func() {}, counts{0, 0, 0}},
		{"add a1", func() { h.Add(a1) }, counts{1, 1, 0}},
		{"add a2", func() { h.Add(a2) }, counts{2, 2, 0}},
		{"add b1", func() { h.Add(b1) }, counts{3, 2, 1}},
		{"add a1 again", func() { h.Add(a1) }, counts{3, 2, 1}},
		{"remove a1", func() { h.Remove(a1) }, counts{2, 1, 1}},
		{"remove a1 again", func() { h.Remove(a1) }, counts{2, 1, 1}},
		{"remove unknown", func() { h.Remove(&conn{id: "x", user: "alice"}) }, counts{2, 1, 1}},
		{"remove a2", func() { h.Remove(a2) }, counts{1, 0, 1}},
		{"remove b1", func() { h.Remove(b1) }, counts{0, 0, 0}},
		{"add a1 back", func() { h.Add(a1) }, counts{1, 1, 0}},
	}
	for _, s := range steps {
		s.do()
		got := counts{h.Len(), h.UserLen("alice"), h.UserLen("bob")}
		if got != s.want {
			t.Fatalf("after %s: Len, UserLen(alice), UserLen(bob) = %v, want %v", s.name, got, s.want)
		}
		var ids []string
		for _, c := range h.Snapshot() {
			ids = append(ids, c.ID())
		}
		if len(ids) != got.all {
			t.Fatalf("after %s: Snapshot has %v, want %d sockets", s.name, ids, got.all)
		}
		n := 0
		h.Each(func(*conn) { n++ })
		if n != got.all {
			t.Fatalf("after %s: Each visited %d sockets, want %d", s.name, n, got.all)
		}
	}
	if h.UserLen("nobody") != 0 {
		t.Error("UserLen of an unknown user is not 0")
	}
}

// TestRemoveAfterUserGone checks that a user's index entry goes with its
// last socket, so a later socket of the same user is indexed afresh.
func TestRemoveAfterUserGone(t *testing.T) {
	h := hub.New[*conn]()
	a1 := &conn{id: "a1", user: "alice"}
	h.Add(a1)
	h.Remove(a1)
	a2 := &conn{id: "a2", user: "alice"}
	h.Add(a2)
	if n := h.Deliver(&proto.Dispatch{Event: "e", Users: []string{"alice"}}); n != 1 {
		t.Fatalf("Deliver = %d, want 1", n)
	}
	if len(a1.received()) != 0 || len(a2.received()) != 1 {
		t.Errorf("a1 got %d frames, a2 %d; want 0 and 1", len(a1.received()), len(a2.received()))
	}
}

func TestDeliver(t *testing.T) {
	args := json.RawMessage(`{"text":"hi","n":1}`)
	tests := []struct {
		name  string
		d     proto.Dispatch
		want  map[string]int // conn id -> frames it must get; others get none
		count int            // Deliver's result
	}{
		{name: "one user, all of its sockets",
			d:    proto.Dispatch{Users: []string{"alice"}},
			want: map[string]int{"a1": 1, "a2": 1}, count: 2},
		{name: "two users",
			d:    proto.Dispatch{Users: []string{"alice", "bob"}},
			want: map[string]int{"a1": 1, "a2": 1, "b1": 1}, count: 3},
		{name: "user listed twice",
			d:    proto.Dispatch{Users: []string{"alice", "alice"}},
			want: map[string]int{"a1": 1, "a2": 1}, count: 2},
		{name: "user listed twice among others",
			d:    proto.Dispatch{Users: []string{"alice", "bob", "alice", "bob"}},
			want: map[string]int{"a1": 1, "a2": 1, "b1": 1}, count: 3},
		{name: "one conn",
			d:    proto.Dispatch{Conns: []string{"a2"}},
			want: map[string]int{"a2": 1}, count: 1},
		{name: "two conns of two users",
			d:    proto.Dispatch{Conns: []string{"a1", "c1"}},
			want: map[string]int{"a1": 1, "c1": 1}, count: 2},
		{name: "conn listed twice",
			d:    proto.Dispatch{Conns: []string{"b1", "b1"}},
			want: map[string]int{"b1": 1}, count: 1},
		{name: "conn via its user and directly",
			d:    proto.Dispatch{Users: []string{"alice"}, Conns: []string{"a1"}},
			want: map[string]int{"a1": 1, "a2": 1}, count: 2},
		{name: "conn via its user and directly twice",
			d:    proto.Dispatch{Users: []string{"alice"}, Conns: []string{"a1", "a1", "a2"}},
			want: map[string]int{"a1": 1, "a2": 1}, count: 2},
		{name: "user and another user's conn",
			d:    proto.Dispatch{Users: []string{"bob"}, Conns: []string{"a1"}},
			want: map[string]int{"b1": 1, "a1": 1}, count: 2},
		{name: "user and another user's conn twice",
			d:    proto.Dispatch{Users: []string{"bob"}, Conns: []string{"a1", "a1"}},
			want: map[string]int{"b1": 1, "a1": 1}, count: 2},
		{name: "unknown users and conns ignored",
			d:    proto.Dispatch{Users: []string{"ghost", "alice", "nobody"}, Conns: []string{"zz", "c1", "yy"}},
			want: map[string]int{"a1": 1, "a2": 1, "c1": 1}, count: 3},
		{name: "only unknown targets",
			d:    proto.Dispatch{Users: []string{"ghost"}, Conns: []string{"zz"}},
			want: map[string]int{}, count: 0},
		{name: "conn whose user another message reaches",
			d:    proto.Dispatch{Users: []string{"bob"}, Conns: []string{"a1", "c1"}, SkipUsers: []string{"alice"}},
			want: map[string]int{"b1": 1, "c1": 1}, count: 2},
		{name: "conn whose user is not skipped",
			d:    proto.Dispatch{Conns: []string{"a1", "c1"}, SkipUsers: []string{"bob", "dave"}},
			want: map[string]int{"a1": 1, "c1": 1}, count: 2},
		{name: "conns and a long skip list",
			d:    proto.Dispatch{Conns: []string{"a1", "b1", "c1"}, SkipUsers: append(manyUsers(40), "carol", "alice")},
			want: map[string]int{"b1": 1}, count: 1},
		{name: "skip list alone reaches no one",
			d:    proto.Dispatch{SkipUsers: []string{"alice", "bob"}},
			want: map[string]int{}, count: 0},
		{name: "no targets",
			d:    proto.Dispatch{},
			want: map[string]int{}, count: 0},
		{name: "broadcast",
			d:    proto.Dispatch{Broadcast: true},
			want: map[string]int{"a1": 1, "a2": 1, "b1": 1, "c1": 1}, count: 4},
		{name: "broadcast with targets too",
			d:    proto.Dispatch{Broadcast: true, Users: []string{"alice"}, Conns: []string{"a1", "b1"}},
			want: map[string]int{"a1": 1, "a2": 1, "b1": 1, "c1": 1}, count: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := hub.New[*conn]()
			conns := []*conn{
				{id: "a1", user: "alice"}, {id: "a2", user: "alice"},
				{id: "b1", user: "bob"}, {id: "c1", user: "carol"},
			}
			for _, c := range conns {
				h.Add(c)
			}
			d := tt.d
			d.Event, d.Args = "message", args
			if n := h.Deliver(&d); n != tt.count {
				t.Errorf("Deliver = %d, want %d", n, tt.count)
			}
			for _, c := range conns {
				got := c.received()
				if len(got) != tt.want[c.id] {
					t.Errorf("%s got %d frames %q, want %d", c.id, len(got), got, tt.want[c.id])
					continue
				}
				for _, data := range got {
					var f proto.Frame
					if err := json.Unmarshal(data, &f); err != nil {
						t.Fatalf("%s got invalid JSON %q: %v", c.id, data, err)
					}
					if f.Event != "message" || f.ID != c.user || string(f.Args) != string(args) || f.Ref != "" {
						t.Errorf("%s got %s, want event message, id %s, args %s", c.id, data, c.user, args)
					}
				}
			}
		})
	}
}

// manyUsers returns n user ids no test socket has.
func manyUsers(n int) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprint("other-", i)
	}
	return users
}

func TestDeliverWithoutArgs(t *testing.T) {
	h := hub.New[*conn]()
	c := &conn{id: "a1", user: "alice"}
	h.Add(c)
	h.Deliver(&proto.Dispatch{Event: "ping", Users: []string{"alice"}})
	got := c.received()
	if len(got) != 1 || string(got[0]) != `{"event":"ping","id":"alice"}` {
		t.Errorf("frames = %q, want one {\"event\":\"ping\",\"id\":\"alice\"}", got)
	}
}

// TestDeliverEscapesUserID checks the frame stays valid JSON whatever the
// user id holds.
func TestDeliverEscapesUserID(t *testing.T) {
	h := hub.New[*conn]()
	user := "we\"ird\\ <user>\n"
	c := &conn{id: "x", user: user}
	h.Add(c)
	h.Deliver(&proto.Dispatch{Event: "e", Args: json.RawMessage(`1`), Conns: []string{"x"}})
	got := c.received()
	if len(got) != 1 {
		t.Fatalf("got %d frames, want 1", len(got))
	}
	var f proto.Frame
	if err := json.Unmarshal(got[0], &f); err != nil || f.ID != user {
		t.Errorf("frame %q: id %q, err %v; want id %q", got[0], f.ID, err, user)
	}
}

// TestDeliverCountsOnlyQueued checks that a socket whose queue refuses the
// frame is not counted, and does not keep the others from getting it.
func TestDeliverCountsOnlyQueued(t *testing.T) {
	h := hub.New[*conn]()
	full := &conn{id: "a1", user: "alice", refuse: true}
	ok := &conn{id: "a2", user: "alice"}
	other := &conn{id: "b1", user: "bob"}
	for _, c := range []*conn{full, ok, other} {
		h.Add(c)
	}
	if n := h.Deliver(&proto.Dispatch{Event: "e", Users: []string{"alice"}, Conns: []string{"b1"}}); n != 2 {
		t.Errorf("Deliver = %d, want 2 (one socket refused)", n)
	}
	if len(ok.received()) != 1 || len(other.received()) != 1 {
		t.Errorf("a2 got %d, b1 got %d frames; want 1 each", len(ok.received()), len(other.received()))
	}
}

// TestConcurrent runs Add, Remove, Deliver, Each and the counters at once;
// run it with -race.
func TestConcurrent(t *testing.T) {
	h := hub.New[*conn]()
	const users, perUser, rounds = 8, 4, 200
	var wg sync.WaitGroup
	all := make([][]*conn, users)
	for u := range users {
		for i := range perUser {
			all[u] = append(all[u], &conn{id: fmt.Sprintf("u%d-c%d", u, i), user: fmt.Sprintf("u%d", u)})
		}
	}
	for u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				for _, c := range all[u] {
					h.Add(c)
				}
				for _, c := range all[u][:perUser/2] {
					h.Remove(c)
				}
			}
		}()
	}
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				switch (g + i) % 4 {
				case 0:
					h.Deliver(&proto.Dispatch{Event: "e", Users: []string{"u0", "u1", "u0"}, Conns: []string{"u2-c3"}})
				case 1:
					h.Deliver(&proto.Dispatch{Event: "e", Broadcast: true})
				case 2:
					h.Each(func(c *conn) { _ = c.ID() })
					_ = h.Snapshot()
				case 3:
					_, _ = h.Len(), h.UserLen("u3")
				}
			}
		}()
	}
	wg.Wait()
	// Every user ends with the second half of its sockets registered.
	if h.Len() != users*perUser/2 {
		t.Errorf("Len = %d, want %d", h.Len(), users*perUser/2)
	}
	var ids []string
	for _, c := range h.Snapshot() {
		ids = append(ids, c.ID())
	}
	sort.Strings(ids)
	var want []string
	for u := range users {
		for _, c := range all[u][perUser/2:] {
			want = append(want, c.id)
		}
		if n := h.UserLen(fmt.Sprintf("u%d", u)); n != perUser/2 {
			t.Errorf("UserLen(u%d) = %d, want %d", u, n, perUser/2)
		}
	}
	sort.Strings(want)
	if !slices.Equal(ids, want) {
		t.Errorf("registered %v, want %v", ids, want)
	}
	// A final delivery reaches each registered socket exactly once more.
	before := map[string]int{}
	for _, cs := range all {
		for _, c := range cs {
			before[c.id] = len(c.received())
		}
	}
	if n := h.Deliver(&proto.Dispatch{Event: "last", Broadcast: true}); n != len(want) {
		t.Errorf("final broadcast reached %d sockets, want %d", n, len(want))
	}
	for _, cs := range all {
		for i, c := range cs {
			wantMore := 0
			if i >= perUser/2 {
				wantMore = 1
			}
			if got := len(c.received()) - before[c.id]; got != wantMore {
				t.Errorf("%s got %d frames from the final broadcast, want %d", c.id, got, wantMore)
			}
		}
	}
}

// TestDeliverCountedDropped: sockets that refuse a frame are counted as
// dropped, for users, connections and broadcasts alike, and never twice.
func TestDeliverCountedDropped(t *testing.T) {
	h := hub.New[*conn]()
	a1 := &conn{id: "a1", user: "alice"}
	a2 := &conn{id: "a2", user: "alice", refuse: true}
	b1 := &conn{id: "b1", user: "bob", refuse: true}
	c1 := &conn{id: "c1", user: "carol"}
	for _, c := range []*conn{a1, a2, b1, c1} {
		h.Add(c)
	}
	tests := []struct {
		name          string
		d             proto.Dispatch
		sent, dropped int
	}{
		{"users", proto.Dispatch{Event: "e", Users: []string{"alice", "bob", "nobody"}}, 1, 2},
		{"conns", proto.Dispatch{Event: "e", Conns: []string{"b1", "c1", "b1"}}, 1, 1},
		{"user and its conn", proto.Dispatch{Event: "e", Users: []string{"alice"}, Conns: []string{"a2"}}, 1, 1},
		{"broadcast", proto.Dispatch{Event: "e", Broadcast: true}, 2, 2},
	}
	for _, tt := range tests {
		sent, dropped := h.DeliverCounted(&tt.d)
		if sent != tt.sent || dropped != tt.dropped {
			t.Errorf("%s: DeliverCounted = %d sent, %d dropped; want %d, %d", tt.name, sent, dropped, tt.sent, tt.dropped)
		}
		if n := h.Deliver(&tt.d); n != tt.sent {
			t.Errorf("%s: Deliver = %d, want %d", tt.name, n, tt.sent)
		}
	}
}

// TestDeliverPositions: with positions on, each user's event carries that
// user's position, in the frame and to Offer; a broadcast its bpos; an
// event to a connection none. With positions off, none does.
func TestDeliverPositions(t *testing.T) {
	for _, on := range []bool{true, false} {
		var opts []hub.Option
		if on {
			opts = append(opts, hub.WithPositions())
		}
		h := hub.New[*conn](opts...)
		a, b, c := &conn{id: "a", user: "alice"}, &conn{id: "b", user: "bob"}, &conn{id: "c", user: "carol"}
		h.Add(a)
		h.Add(b)
		h.Add(c)
		h.Deliver(&proto.Dispatch{Event: "m", Args: json.RawMessage(`1`), Users: []string{"alice", "bob"},
			Pos: map[string]string{"alice": "ea.5-1", "bob": "eb.5-7"}})
		h.Deliver(&proto.Dispatch{Event: "n", Broadcast: true, BPos: "bb.6-3"})
		h.Deliver(&proto.Dispatch{Event: "p", Conns: []string{"c"}})
		check := func(cn *conn, i int, key, want string, broadcast bool) {
			t.Helper()
			var f map[string]any
			if err := json.Unmarshal(cn.received()[i], &f); err != nil {
				t.Fatal(err)
			}
			o := cn.offers[i]
			if !on {
				if f["pos"] != nil || f["bpos"] != nil || o.pos != nil {
					t.Errorf("positions off: %s frame %d = %v, offer %+v", cn.id, i, f, o.pos)
				}
				return
			}
			if f[key] != want || o.pos == nil || o.pos.String() != want || o.broadcast != broadcast {
				t.Errorf("%s frame %d = %v, offer %+v (broadcast %v), want %s %s", cn.id, i, f, o.pos, o.broadcast, key, want)
			}
		}
		check(a, 0, "pos", "ea.5-1", false)
		check(b, 0, "pos", "eb.5-7", false)
		check(a, 1, "bpos", "bb.6-3", true)
		check(c, 0, "bpos", "bb.6-3", true)
		if o := c.offers[1]; o.pos != nil || o.broadcast {
			t.Errorf("an event to a connection was offered with %+v", o)
		}
	}
}

// TestDeliverDecodedPositions: a dispatch as a worker decodes it
// (proto.DecodeDispatchLazy), in the publisher's form (read by a direct
// scan) and in another (encoding/json), or as DecodeDispatch does, gives
// each local user its own position, and a user the body names twice with
// two positions gets one frame, at the last, as encoding/json's map gives
// it.
func TestDeliverDecodedPositions(t *testing.T) {
	for _, body := range []string{
		`{"event":"m","args":1,"users":["alice","zed","bob","alice"],"conns":[],"broadcast":false,` +
			`"pos":{"alice":"ea.5-1","zed":"ez.5-1","bob":"eb.5-7","alice":"ea.5-2"}}`,
		`{"pos":{"bob":"eb.5-7","alice":"ea.5-1","zed":"ez.5-1","alice":"ea.5-2"},` +
			`"event":"m","args":1,"users":["alice","zed","bob","alice"]}`,
	} {
		for _, decode := range []func([]byte) (proto.Dispatch, error){proto.DecodeDispatchLazy, proto.DecodeDispatch} {
			d, err := decode([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			deliverDecodedPositions(t, body, &d)
		}
	}
}

// deliverDecodedPositions delivers d, of body, to alice's two sockets and
// bob's, and checks each got one frame at its user's position.
func deliverDecodedPositions(t *testing.T, body string, d *proto.Dispatch) {
	t.Helper()
	h := hub.New[*conn](hub.WithPositions())
	a1, a2, b := &conn{id: "a1", user: "alice"}, &conn{id: "a2", user: "alice"}, &conn{id: "b", user: "bob"}
	h.Add(a1)
	h.Add(a2)
	h.Add(b)
	if n := h.Deliver(d); n != 3 {
		t.Fatalf("%s: queued for %d sockets, want 3", body, n)
	}
	for c, want := range map[*conn]string{a1: "ea.5-2", a2: "ea.5-2", b: "eb.5-7"} {
		var f struct{ Pos string }
		if len(c.offers) != 1 || json.Unmarshal(c.received()[0], &f) != nil || f.Pos != want ||
			c.offers[0].pos == nil || c.offers[0].pos.String() != want {
			t.Errorf("%s: %s got %q, want one frame at %s", body, c.id, c.received(), want)
		}
	}
}

// TestDeliverSplitDispatchOnce: a dispatch published as two messages, the
// first naming bob and the connections a (alice's) and c (carol's), with
// alice in its skip_users, the second naming alice: a gets the event once,
// through alice, with her position; c, whose user no message names, gets
// it transient from the first.
func TestDeliverSplitDispatchOnce(t *testing.T) {
	h := hub.New[*conn](hub.WithPositions())
	a, b, c := &conn{id: "a", user: "alice"}, &conn{id: "b", user: "bob"}, &conn{id: "c", user: "carol"}
	h.Add(a)
	h.Add(b)
	h.Add(c)
	if n := h.Deliver(&proto.Dispatch{Event: "m", Users: []string{"bob"}, Conns: []string{"a", "c"}, SkipUsers: []string{"alice"},
		Pos: map[string]string{"bob": "eb.5-7"}}); n != 2 {
		t.Fatalf("first message queued for %d sockets, want 2 (b, c)", n)
	}
	if n := h.Deliver(&proto.Dispatch{Event: "m", Users: []string{"alice"}, Pos: map[string]string{"alice": "ea.5-1"}}); n != 1 {
		t.Fatalf("second message queued for %d sockets, want 1 (a)", n)
	}
	if len(a.offers) != 1 || a.offers[0].pos == nil || a.offers[0].pos.String() != "ea.5-1" {
		t.Fatalf("a got %q, want one frame at ea.5-1", a.received())
	}
	if len(c.offers) != 1 || c.offers[0].pos != nil {
		t.Fatalf("c got %q, want one transient frame", c.received())
	}
}

func TestMatching(t *testing.T) {
	h := hub.New[*conn]()
	a1 := &conn{id: "a1", user: "alice"}
	a2 := &conn{id: "a2", user: "alice"}
	b1 := &conn{id: "b1", user: "bob"}
	c1 := &conn{id: "c1", user: "carol"}
	for _, c := range []*conn{a1, a2, b1, c1} {
		h.Add(c)
	}
	ids := func(cs []*conn) []string {
		out := make([]string, 0, len(cs))
		for _, c := range cs {
			out = append(out, c.id)
		}
		sort.Strings(out)
		return out
	}
	for _, tc := range []struct {
		users, conns []string
		want         []string
	}{
		{nil, nil, []string{}},
		{[]string{"alice"}, nil, []string{"a1", "a2"}},
		{[]string{"alice", "alice", "nobody"}, []string{"a1", "b1", "b1", "gone"}, []string{"a1", "a2", "b1"}},
		{nil, []string{"c1"}, []string{"c1"}},
	} {
		if got := ids(h.Matching(tc.users, tc.conns)); !slices.Equal(got, tc.want) {
			t.Errorf("Matching(%q, %q) = %q, want %q", tc.users, tc.conns, got, tc.want)
		}
	}
}

// TestDeliverExcept: a socket a dispatch leaves out (Except) is offered
// nothing of it and told to skip it, with its position, as a user's
// device, through a broadcast or as a connection named; the user's other
// devices and the other targets get it; the count leaves it out.
func TestDeliverExcept(t *testing.T) {
	h := hub.New[*conn](hub.WithPositions())
	a1, a2, b := &conn{id: "a1", user: "alice"}, &conn{id: "a2", user: "alice"}, &conn{id: "b", user: "bob"}
	h.Add(a1)
	h.Add(a2)
	h.Add(b)
	if n := h.Deliver(&proto.Dispatch{Event: "m", Users: []string{"alice", "bob"}, Except: []string{"a1"},
		Pos: map[string]string{"alice": "ea.5-1", "bob": "eb.5-7"}}); n != 2 {
		t.Fatalf("queued for %d sockets, want 2 (a2, b)", n)
	}
	if n := h.Deliver(&proto.Dispatch{Event: "n", Broadcast: true, BPos: "bb.6-3", Except: []string{"a1", "b"}}); n != 1 {
		t.Fatalf("broadcast queued for %d sockets, want 1 (a2)", n)
	}
	if n := h.Deliver(&proto.Dispatch{Event: "p", Conns: []string{"a1", "a2"}, Except: []string{"a1"}}); n != 1 {
		t.Fatalf("to connections queued for %d sockets, want 1 (a2)", n)
	}
	if got := len(a1.received()); got != 0 {
		t.Fatalf("a1, left out, got %d frames", got)
	}
	if got := len(a2.received()); got != 3 {
		t.Fatalf("a2 got %d frames, want 3", got)
	}
	if got := len(b.received()); got != 1 {
		t.Fatalf("b got %d frames, want 1 (m)", got)
	}
	want := []string{"ea.5-1", "bb.6-3", ""}
	if len(a1.skips) != len(want) {
		t.Fatalf("a1 told to skip %d events, want %d", len(a1.skips), len(want))
	}
	for i, w := range want {
		got := ""
		if p := a1.skips[i].pos; p != nil {
			got = p.String()
		}
		if got != w || a1.skips[i].broadcast != (i == 1) {
			t.Errorf("a1 skip %d at %q (broadcast %v), want %q", i, got, a1.skips[i].broadcast, w)
		}
	}
	if len(b.skips) != 1 || b.skips[0].pos == nil || b.skips[0].pos.String() != "bb.6-3" {
		t.Errorf("b's skips: %+v, want the broadcast's", b.skips)
	}
}

// resumedConn is a conn whose client named previous connections.
type resumedConn struct {
	*conn
	prev []string
}

func (c resumedConn) PrevConns() []string { return c.prev }

// TestDeliverExceptPrevious: a socket whose client named a connection
// left out of a dispatch as a previous one (hub.Resumed) is left out too,
// as a user's device and through a broadcast; one that named others gets
// the event.
func TestDeliverExceptPrevious(t *testing.T) {
	h := hub.New[hub.Conn](hub.WithPositions())
	a := resumedConn{&conn{id: "a2", user: "alice"}, []string{"x", "a1"}}
	b := resumedConn{&conn{id: "b2", user: "bob"}, []string{"b1"}}
	h.Add(a)
	h.Add(b)
	if n := h.Deliver(&proto.Dispatch{Event: "m", Users: []string{"alice", "bob"}, Except: []string{"a1"},
		Pos: map[string]string{"alice": "ea.5-1", "bob": "eb.5-7"}}); n != 1 {
		t.Fatalf("queued for %d sockets, want 1 (b2)", n)
	}
	if n := h.Deliver(&proto.Dispatch{Event: "n", Broadcast: true, BPos: "bb.6-3", Except: []string{"a1"}}); n != 1 {
		t.Fatalf("broadcast queued for %d sockets, want 1 (b2)", n)
	}
	if got := len(a.received()); got != 0 {
		t.Fatalf("a2, whose previous connection a1 is left out, got %d frames", got)
	}
	if len(a.skips) != 2 || len(b.skips) != 0 || len(b.received()) != 2 {
		t.Fatalf("a2 skipped %d, b2 skipped %d and got %d; want 2, 0, 2", len(a.skips), len(b.skips), len(b.received()))
	}
}
