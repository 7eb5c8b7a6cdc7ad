package main

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
)

// TestRoomSay checks, without NATS or Redis, that a room message goes to
// every member, the sender included (her other devices), leaving out the
// connection it came on, and that a non-member is refused.
func TestRoomSay(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	for _, u := range []string{"alice", "bob"} {
		if _, _, err := rec.Join(ctx, "general", u); err != nil {
			t.Fatal(err)
		}
	}
	say := event.Typed((&Chat{d: rec, rooms: rec}).RoomSay)

	r := eventtest.NewRequest("roomSay", "alice", map[string]any{"room": "general", "text": "hi"})
	if err := say.ServeEvent(ctx, r); err != nil {
		t.Fatal(err)
	}
	d := rec.Dispatches()
	if len(d) != 1 || d[0].Event != "room_say" || !slices.Equal(d[0].Users, []string{"alice", "bob"}) {
		t.Fatalf("dispatched %+v, want one room_say to alice and bob", d)
	}
	if !slices.Equal(d[0].Except, []string{r.Conn}) {
		t.Fatalf("left out %q, want the sender's connection %q", d[0].Except, r.Conn)
	}
	var got struct{ From, Text string }
	if err := json.Unmarshal(d[0].Args, &got); err != nil || got.From != "alice" || got.Text != "hi" {
		t.Fatalf("args %s, %v", d[0].Args, err)
	}

	r = eventtest.NewRequest("roomSay", "mallory", map[string]any{"room": "general", "text": "hi"})
	if w := event.WireError(say.ServeEvent(ctx, r)); w == nil || w.Code != "forbidden" {
		t.Fatalf("non-member: got %v, want forbidden", w)
	}
}

// TestPresenceHooks checks that a connect is announced online only when
// it is the user's one socket, and a disconnect offline only when none is
// left, each as a broadcast with the socket's time.
func TestPresenceHooks(t *testing.T) {
	ctx := context.Background()
	conn := eventtest.NewConn("alice") // Sockets 1: her first
	second := conn
	second.Sockets = 2
	gone := eventtest.NewDisconnect("alice", 1000, "client") // Sockets 0: her last
	left := gone
	left.Sockets = 1
	// Not counted by the gateway (-1): the hook asks the leases.
	uncounted, uncountedGone := conn, gone
	uncounted.Sockets, uncountedGone.Sockets = -1, -1
	for _, tc := range []struct {
		name   string
		online eventtest.Presence // what the leases say if the hook asks
		hook   func(context.Context, *event.Mux, event.Conn) error
		c      event.Conn
		want   string // the presence broadcast's online, or "" for none
	}{
		{"first socket", nil, eventtest.Connect, conn, "true"},
		{"second device", nil, eventtest.Connect, second, ""},
		{"last socket closed", nil, eventtest.Disconnect, gone, "false"},
		{"another device left", nil, eventtest.Disconnect, left, ""},
		{"first socket, not counted", eventtest.Presence{"alice": {conn.Conn}}, eventtest.Connect, uncounted, "true"},
		{"second device, not counted", eventtest.Presence{"alice": {conn.Conn, "alice-2"}}, eventtest.Connect, uncounted, ""},
		{"last socket closed, not counted", eventtest.Presence{}, eventtest.Disconnect, uncountedGone, "false"},
		{"another device left, not counted", eventtest.Presence{"alice": {"alice-2"}}, eventtest.Disconnect, uncountedGone, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := eventtest.NewRecorder()
			mux := event.NewMux()
			(&Chat{d: rec, rooms: rec, online: tc.online}).Register(mux)
			if err := tc.hook(ctx, mux, tc.c); err != nil {
				t.Fatal(err)
			}
			d := rec.Dispatches()
			if tc.want == "" {
				if len(d) != 0 {
					t.Fatalf("dispatched %+v, want nothing", d)
				}
				return
			}
			if len(d) != 1 || d[0].Event != "presence" || !d[0].Broadcast {
				t.Fatalf("dispatched %+v, want one presence broadcast", d)
			}
			var got struct {
				User   string
				Online json.RawMessage
				At     int64
			}
			if err := json.Unmarshal(d[0].Args, &got); err != nil || got.User != "alice" || string(got.Online) != tc.want || got.At != tc.c.At.UnixMilli() {
				t.Fatalf("args %s, %v; want alice online %s at %d", d[0].Args, err, tc.want, tc.c.At.UnixMilli())
			}
		})
	}
}

// TestWhoIsOnline checks the answer from the presence leases, and that a
// list that is not user ids is refused.
func TestWhoIsOnline(t *testing.T) {
	ctx := context.Background()
	who := event.Typed((&Chat{online: eventtest.Presence{"alice": {"a1", "a2"}, "carol": {"c1"}}}).WhoIsOnline)
	r := eventtest.NewRequest("whoIsOnline", "bob", map[string]any{"users": []string{"alice", "carol", "dave"}})
	if err := who.ServeEvent(ctx, r); err != nil {
		t.Fatal(err)
	}
	var got map[string]bool
	if err := json.Unmarshal(r.Result(), &got); err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{"alice": true, "carol": true, "dave": false}; !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	r = eventtest.NewRequest("whoIsOnline", "bob", map[string]any{"users": []string{"alice", ""}})
	if w := event.WireError(who.ServeEvent(ctx, r)); w == nil || w.Code != "bad_request" {
		t.Fatalf("an empty user id: got %v, want bad_request", w)
	}
}
