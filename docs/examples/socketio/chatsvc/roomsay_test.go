package main

import (
	"context"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
)

// TestRoomSayTextIsBounded checks that roomSay refuses a text longer than
// sendMessage's (handlers.MaxTextLen code points) with bad_request, as
// docs/protocol.md section 5 bounds every text of the chat: unchecked, one
// emit of ~64 KiB is recorded in the stream of each of up to 1,000
// members.
func TestRoomSayTextIsBounded(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	for _, u := range []string{"alice", "bob"} {
		if _, _, err := rec.Join(ctx, "general", u); err != nil {
			t.Fatal(err)
		}
	}
	say := event.Typed((&Chat{d: rec, rooms: rec}).RoomSay)
	text := strings.Repeat("x", handlers.MaxTextLen+1)
	r := eventtest.NewRequest("roomSay", "alice", map[string]any{"room": "general", "text": text})
	if w := event.WireError(say.ServeEvent(ctx, r)); w == nil || w.Code != "bad_request" {
		t.Fatalf("a text of %d characters: got %v and %d dispatches, want bad_request and none", len(text), w, len(rec.Dispatches()))
	}
	if d := rec.Dispatches(); len(d) != 0 {
		t.Fatalf("dispatched %d events for a refused text", len(d))
	}
}
