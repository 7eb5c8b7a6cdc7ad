package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// TestDispatchPositions: Dispatch returns the very positions the gateway
// is told and the streams hold: per user (rooms resolved to their members,
// each user once) and the broadcast stream's for a broadcast.
func TestDispatchPositions(t *testing.T) {
	r := newRecorder(t, time.Minute)
	ctx := context.Background()
	for _, u := range []string{"carol", "dave"} {
		if _, _, err := r.d.Join(ctx, "general", u); err != nil {
			t.Fatal(err)
		}
	}
	pos, err := r.d.Dispatch(ctx, dispatch.Message{
		Event: "post_updated", Args: json.RawMessage(`{"post":"p1"}`),
		Users: []string{"bob", "carol", "bob"}, Conns: []string{"c9"}, Rooms: []string{"general"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := r.next(t)
	if got.Event != "post_updated" || string(got.Args) != `{"post":"p1"}` ||
		!slices.Equal(got.Users, []string{"bob", "carol", "dave"}) || !slices.Equal(got.Conns, []string{"c9"}) {
		t.Fatalf("published %+v", got)
	}
	if len(pos.Users) != 3 || pos.Broadcast != "" {
		t.Fatalf("positions %+v, want one per user", pos)
	}
	for _, u := range got.Users {
		if pos.Users[u] == "" || pos.Users[u] != got.Pos[u] {
			t.Errorf("%s: Dispatch says %q, the gateway is told %q", u, pos.Users[u], got.Pos[u])
		}
		p := mustPos(t, pos.Users[u])
		if e := r.entries(t, proto.UserStreamKey(u)); len(e) != 1 || !strings.HasPrefix(e[0], p.ID()+" post_updated") {
			t.Errorf("%s's stream %q, want the entry at %s", u, e, pos.Users[u])
		}
	}

	pos, err = r.d.Dispatch(ctx, dispatch.Message{Event: "news", Broadcast: true, Users: []string{"ignored"}})
	if err != nil {
		t.Fatal(err)
	}
	if b := r.next(t); !b.Broadcast || b.BPos == "" || b.BPos != pos.Broadcast || len(pos.Users) != 0 {
		t.Fatalf("broadcast %+v, positions %+v", b, pos)
	}

	// Connections only, and rooms without members: transient, no positions.
	if pos, err = r.d.Dispatch(ctx, dispatch.Message{Event: "ping", Conns: []string{"c1"}}); err != nil || len(pos.Users) != 0 {
		t.Fatalf("conns: %+v %v", pos, err)
	}
	if c := r.next(t); !slices.Equal(c.Conns, []string{"c1"}) || c.Pos != nil {
		t.Fatalf("conns published %+v", c)
	}
	if pos, err = r.d.Dispatch(ctx, dispatch.Message{Event: "ping", Rooms: []string{"empty"}}); err != nil || len(pos.Users) != 0 {
		t.Fatalf("empty room: %+v %v", pos, err)
	}
}

// TestDispatchWithoutRecording: with recovery off the dispatch is
// published, transient, and no position is returned.
func TestDispatchWithoutRecording(t *testing.T) {
	r := newRecorder(t, dispatch.NoHistory)
	pos, err := r.d.Dispatch(context.Background(), dispatch.Message{Event: "e", Users: []string{"bob"}})
	if err != nil || len(pos.Users) != 0 {
		t.Fatalf("%+v %v", pos, err)
	}
	if got := r.next(t); !slices.Equal(got.Users, []string{"bob"}) || got.Pos != nil {
		t.Fatalf("published %+v", got)
	}
}

// TestDispatchManyUsers: a dispatch to more users than one message holds
// is published as several, in one script call, every user recorded once.
func TestDispatchManyUsers(t *testing.T) {
	r := newRecorder(t, time.Minute)
	users := make([]string, 300)
	for i := range users {
		users[i] = fmt.Sprint("u", i)
	}
	pos, err := r.d.Dispatch(context.Background(), dispatch.Message{Event: "e", Users: users})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for len(seen) < len(users) {
		got := r.next(t)
		if len(got.Users) > 128 {
			t.Fatalf("one message names %d users", len(got.Users))
		}
		for _, u := range got.Users {
			if got.Pos[u] != pos.Users[u] || got.Pos[u] == "" {
				t.Fatalf("%s: published at %q, Dispatch says %q", u, got.Pos[u], pos.Users[u])
			}
		}
		seen = append(seen, got.Users...)
	}
	if !slices.Equal(seen, users) {
		t.Fatal("the messages do not name every user once, in order")
	}
	// ToUsers takes the same path.
	if err := r.d.ToUsers(context.Background(), users, "again", nil); err != nil {
		t.Fatal(err)
	}
	if n := len(r.next(t).Users); n != 128 {
		t.Fatalf("first message of ToUsers names %d users, want 128", n)
	}
}

// TestDispatchConnsSkipUsers: a dispatch to users and connections that is
// published as several messages names the connections in the first only,
// with the users of the others as its skip_users (docs/protocol.md section
// 4), whether recorded or not, and in per-user mode, where that message
// alone is on the shared channel; positions are still spliced after it.
func TestDispatchConnsSkipUsers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		window  time.Duration
		perUser bool
	}{
		{"recorded", time.Minute, false},
		{"transient", dispatch.NoHistory, false},
		{"per_user", time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder(t, tc.window)
			d := dispatch.New(r.rdb, dispatch.Options{Window: tc.window, PerUser: tc.perUser})
			ctx := context.Background()
			users := make([]string, 300)
			for i := range users {
				users[i] = fmt.Sprint("u", i)
			}
			// Ten users come through a room, after the others.
			for _, u := range users[290:] {
				if _, _, err := d.Join(ctx, "crowd", u); err != nil {
					t.Fatal(err)
				}
			}
			pos, err := d.Dispatch(ctx, dispatch.Message{Event: "e", Args: json.RawMessage(`{"a":1}`),
				Users: users[:290], Conns: []string{"c1", "c2"}, Rooms: []string{"crowd"}})
			if err != nil {
				t.Fatal(err)
			}
			first := r.next(t)
			if !slices.Equal(first.Users, users[:128]) || !slices.Equal(first.Conns, []string{"c1", "c2"}) ||
				!slices.Equal(first.SkipUsers, users[128:]) || string(first.Args) != `{"a":1}` {
				t.Fatalf("first message: users %d, conns %v, skip_users %v", len(first.Users), first.Conns, first.SkipUsers)
			}
			for _, u := range first.Users {
				if first.Pos[u] != pos.Users[u] || (tc.window > 0) != (first.Pos[u] != "") {
					t.Fatalf("%s: published at %q, Dispatch says %q", u, first.Pos[u], pos.Users[u])
				}
			}
			if tc.perUser {
				return // the others are on the users' channels (TestPerUserRouting)
			}
			seen := slices.Clone(first.Users)
			for len(seen) < len(users) {
				got := r.next(t)
				if len(got.Conns) != 0 || len(got.SkipUsers) != 0 {
					t.Fatalf("a later message names conns %v, skip_users %v", got.Conns, got.SkipUsers)
				}
				seen = append(seen, got.Users...)
			}
			if !slices.Equal(seen, users) {
				t.Fatal("the messages do not name every user once, in order")
			}

			// Users that fit one message: no skip_users.
			if _, err := d.Dispatch(ctx, dispatch.Message{Event: "e", Users: users[:128], Conns: []string{"c1"}}); err != nil {
				t.Fatal(err)
			}
			if got := r.next(t); len(got.Users) != 128 || got.SkipUsers != nil {
				t.Fatalf("one message: %d users, skip_users %v", len(got.Users), got.SkipUsers)
			}
		})
	}
}

func TestMessageCheck(t *testing.T) {
	many := make([]string, dispatch.MaxUsers+1)
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	tests := []struct {
		m    dispatch.Message
		want string
	}{
		{dispatch.Message{Users: []string{"a"}}, "event must match"},
		{dispatch.Message{Event: "a b", Users: []string{"a"}}, "event must match"},
		{dispatch.Message{Event: "ack", Users: []string{"a"}}, "event ack is the gateway's own"},
		{dispatch.Message{Event: "e", Args: json.RawMessage(`{`), Users: []string{"a"}}, "args is not valid JSON"},
		{dispatch.Message{Event: "e"}, "no target"},
		{dispatch.Message{Event: "e", Users: []string{"a", ""}}, "users[1] must be a user id"},
		{dispatch.Message{Event: "e", Users: []string{strings.Repeat("u", 257)}}, "users[0] must be a user id"},
		// No token carries these (docs/protocol.md section 2): no socket
		// could ever get the event, and the id would forge text in logs.
		{dispatch.Message{Event: "e", Users: []string{"bob", "bob\n{\"level\":\"error\"}"}}, "users[1] must be a user id of 1 to 256 bytes of printable UTF-8"},
		{dispatch.Message{Event: "e", Users: []string{"bob\x00"}}, "users[0] must be a user id"},
		{dispatch.Message{Event: "e", Users: []string{"evil\u202egnp.exe"}}, "users[0] must be a user id"},
		{dispatch.Message{Event: "e", Users: []string{"\xff"}}, "users[0] must be a user id"},
		{dispatch.Message{Event: "e", Conns: []string{""}}, "conns[0] must be"},
		// Connection ids are the gateway's, some 30 bytes: a long one
		// would be published whole to every gateway worker.
		{dispatch.Message{Event: "e", Conns: []string{"c1", strings.Repeat("c", dispatch.MaxConnLen+1)}}, "conns[1] must be a connection id of 1 to 64 bytes"},
		{dispatch.Message{Event: "e", Conns: []string{"c\n1"}}, "conns[0] must be a connection id"},
		{dispatch.Message{Event: "e", Rooms: []string{"a b"}}, "rooms[0] must match"},
		{dispatch.Message{Event: "e", Users: many}, "more than 1000"},
	}
	r := newRecorder(t, time.Minute)
	for _, tt := range tests {
		_, err := r.d.Dispatch(context.Background(), tt.m)
		if w := event.WireError(err); w == nil || w.Code != proto.CodeBadRequest || !strings.Contains(w.Message, tt.want) {
			t.Errorf("%+v: got %v, want bad_request %q", tt.m, err, tt.want)
		}
	}
}

func TestDispatchRedisDown(t *testing.T) {
	r := newRecorder(t, time.Minute)
	r.srv.Stop()
	for _, m := range []dispatch.Message{{Event: "e", Users: []string{"bob"}}, {Event: "e", Rooms: []string{"general"}}} {
		_, err := r.d.Dispatch(context.Background(), m)
		var e *event.Error
		if !errors.As(err, &e) || e.Code != proto.CodeUnavailable {
			t.Errorf("%+v with Redis down: %v, want unavailable", m, err)
		}
	}
	if _, _, err := r.d.Join(context.Background(), "general", "bob"); event.WireError(err).Code != proto.CodeUnavailable {
		t.Errorf("Join with Redis down: %v", err)
	}
}

// TestUserIDsWithBraces: a user id may hold '{' and '}', which Redis
// Cluster reads as a hash tag. Every key and channel of a user starts
// with its partition's tag, the first in the name, so such an id changes
// neither the slot (the partition's, as the scripts of the partition
// need) nor another user's names.
func TestUserIDsWithBraces(t *testing.T) {
	r := newRecorder(t, time.Minute)
	users := []string{"{18}", "{}", "a}{b", "{bob}", "bob"}
	pos, err := r.d.Dispatch(context.Background(), dispatch.Message{Event: "e", Users: users})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		slot := proto.Slot(proto.RunKey(proto.PartitionOf(u)))
		for _, key := range []string{proto.UserStreamKey(u), proto.UserMetaKey(u), proto.UserChannel(u)} {
			if got := proto.Slot(key); got != slot {
				t.Errorf("user %q: %s is in slot %d, want its partition's %d", u, key, got, slot)
			}
		}
		if n := r.rdb.XLen(context.Background(), proto.UserStreamKey(u)).Val(); n != 1 || pos.Users[u] == "" {
			t.Errorf("user %q: %d events in the stream, position %q; want 1 and a position", u, n, pos.Users[u])
		}
	}
}

// TestMessageCheckArgsSize: Check refuses args over proto.MaxDispatchArgs,
// as Dispatch does, naming the field: a backend that checks its Messages
// when it queues them (Check, as the docs tell) learned of a 100 KB
// invoice only when Dispatch refused it later. Args at the limit pass.
func TestMessageCheckArgsSize(t *testing.T) {
	args := func(n int) json.RawMessage { return json.RawMessage(`"` + strings.Repeat("x", n-2) + `"`) }
	big := dispatch.Message{Event: "invoice_paid", Args: args(proto.MaxDispatchArgs + 1), Users: []string{"bob"}}
	err := big.Check()
	if w := event.WireError(err); err == nil || w.Code != proto.CodeBadRequest || !strings.HasPrefix(w.Message, "args is") {
		t.Fatalf("Check of %d bytes of args: %v, want bad_request naming args", len(big.Args), err)
	}
	atLimit := dispatch.Message{Event: "invoice_paid", Args: args(proto.MaxDispatchArgs), Users: []string{"bob"}}
	if err := atLimit.Check(); err != nil {
		t.Fatalf("Check of %d bytes of args: %v, want nil", len(atLimit.Args), err)
	}
}
