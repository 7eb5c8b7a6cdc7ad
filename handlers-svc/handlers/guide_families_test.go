package handlers_test

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
)

// TestGuideFamilies runs only inside TestGuide, with the guide's code
// added: its family is registered by the one line the guide adds, and
// serves react through the Mux as handlers-svc would.
func TestGuideFamilies(t *testing.T) {
	if os.Getenv("SWITCHBOARD_GUIDE") == "" {
		t.Skip("run by TestGuide, with the guide's code added")
	}
	rec := eventtest.NewRecorder()
	mux := event.NewMux()
	env := map[string]string{"REACTIONS_EMOJI": "👍,🎉"}
	deps := handlers.Deps{Dispatcher: rec, Rooms: rec, Getenv: func(k string) string { return env[k] }}
	if err := handlers.Register(context.Background(), mux, deps); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(mux.Events(), "react") {
		t.Fatalf("events %v: the guide's family is not registered", mux.Events())
	}
	if _, _, err := rec.Join(context.Background(), "general", "bob"); err != nil {
		t.Fatal(err)
	}
	r := eventtest.NewRequest("react", "bob", map[string]any{"room": "general", "msg_id": "m1", "emoji": "🎉"})
	if err := mux.ServeEvent(context.Background(), r); err != nil || string(r.Result()) != `{"members":1}` {
		t.Fatalf("react through the mux: %s, %v", r.Result(), err)
	}
	r = eventtest.NewRequest("react", "bob", map[string]any{"room": "general", "msg_id": "m1", "emoji": "😂"})
	if w := event.WireError(mux.ServeEvent(context.Background(), r)); w == nil || w.Code != "bad_request" {
		t.Fatalf("an emoji REACTIONS_EMOJI does not allow: %v", w)
	}
}
