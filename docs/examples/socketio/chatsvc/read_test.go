package main

import (
	"context"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
)

// TestReadMsgIDIsBounded checks that read refuses a msg_id that no
// message has (sendMessage's are 32 hex digits; handlers.md's react
// bounds one to 1..64 bytes) with bad_request: unchecked, any user can
// have ~64 KiB recorded in anyone's stream per emit.
func TestReadMsgIDIsBounded(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	read := event.Typed((&Chat{d: rec, rooms: rec}).Read)
	id := strings.Repeat("f", 10_000)
	r := eventtest.NewRequest("read", "bob", map[string]any{"to": "alice", "msg_id": id})
	if w := event.WireError(read.ServeEvent(ctx, r)); w == nil || w.Code != "bad_request" {
		t.Fatalf("a msg_id of %d bytes: got %v and %d dispatches, want bad_request", len(id), w, len(rec.Dispatches()))
	}
}
