package main

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
)

// TestRoomSay checks, without NATS or Redis, that a room message goes to
// every member, the sender included, with the sender's cid, and that a
// non-member is refused.
func TestRoomSay(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	for _, u := range []string{"alice", "bob"} {
		if _, _, err := rec.Join(ctx, "general", u); err != nil {
			t.Fatal(err)
		}
	}
	say := event.Typed((&Chat{d: rec, rooms: rec}).RoomSay)

	r := eventtest.NewRequest("roomSay", "alice", map[string]any{"room": "general", "text": "hi", "cid": "c1"})
	if err := say.ServeEvent(ctx, r); err != nil {
		t.Fatal(err)
	}
	d := rec.Dispatches()
	if len(d) != 1 || d[0].Event != "room_say" || len(d[0].Users) != 2 {
		t.Fatalf("dispatched %+v, want one room_say to alice and bob", d)
	}
	var got struct{ From, CID, Text string }
	if err := json.Unmarshal(d[0].Args, &got); err != nil || got.From != "alice" || got.CID != "c1" || got.Text != "hi" {
		t.Fatalf("args %s, %v", d[0].Args, err)
	}

	r = eventtest.NewRequest("roomSay", "mallory", map[string]any{"room": "general", "text": "hi"})
	if w := event.WireError(say.ServeEvent(ctx, r)); w == nil || w.Code != "forbidden" {
		t.Fatalf("non-member: got %v, want forbidden", w)
	}
}
