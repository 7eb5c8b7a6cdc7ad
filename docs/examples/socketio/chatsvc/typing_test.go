package main

import (
	"context"
	"slices"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
)

// TestTypingInRoomSkipsTheTypist checks that typing in a room reaches the
// other members, not the user who types: Socket.IO's
// socket.volatile.to(room).emit leaves the sender out, and a client that
// is sent its own typing shows "alice is typing" to alice (chat.mjs does
// not drop it).
func TestTypingInRoomSkipsTheTypist(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	for _, u := range []string{"alice", "bob", "carol"} {
		if _, _, err := rec.Join(ctx, "general", u); err != nil {
			t.Fatal(err)
		}
	}
	typing := event.Typed((&Chat{d: rec, rooms: rec}).Typing)
	r := eventtest.NewRequest("typing", "alice", map[string]any{"room": "general"})
	if err := typing.ServeEvent(ctx, r); err != nil {
		t.Fatal(err)
	}
	d := rec.TransientDispatches()
	if len(d) != 1 || d[0].Event != "typing" {
		t.Fatalf("dispatched %+v, want one transient typing", rec.Dispatches())
	}
	if !slices.Contains(d[0].Users, "bob") || !slices.Contains(d[0].Users, "carol") {
		t.Fatalf("typing went to %v, want bob and carol", d[0].Users)
	}
	if slices.Contains(d[0].Users, "alice") {
		t.Fatalf("typing went to %v (left out %v): alice is told she is typing, on the socket she types on too", d[0].Users, d[0].Except)
	}
}
