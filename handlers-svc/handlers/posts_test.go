package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/proto"
)

func TestPostUpdated(t *testing.T) {
	tests := []struct {
		name      string
		mentions  []string
		wantUsers []string // nil: nothing dispatched
	}{
		{"two users", []string{"bob", "carol"}, []string{"bob", "carol"}},
		{"duplicates notified once", []string{"bob", "carol", "bob", "bob"}, []string{"bob", "carol"}},
		{"no mentions", []string{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := eventtest.NewRecorder()
			err := handlers.NewPosts(rec).PostUpdated(context.Background(), eventtest.NewRequest("postUpdated", "alice", map[string]any{"post": "p1", "mentions": tt.mentions}))
			if err != nil {
				t.Fatal(err)
			}
			got := rec.Dispatches()
			if tt.wantUsers == nil {
				if len(got) != 0 {
					t.Fatalf("dispatched %+v, want nothing", got)
				}
				return
			}
			if len(got) != 1 || got[0].Event != "post_updated_notification" || !slices.Equal(got[0].Users, tt.wantUsers) {
				t.Fatalf("dispatched %+v, want one post_updated_notification to %v", got, tt.wantUsers)
			}
			if want := `{"post":"p1","message":"A post you have been mentioned in has been updated"}`; string(got[0].Args) != want {
				t.Fatalf("args %s, want %s", got[0].Args, want)
			}
		})
	}
}

// TestPostUpdatedBadArgs: every invalid args is refused with bad_request
// naming the field, and nothing is dispatched.
func TestPostUpdatedBadArgs(t *testing.T) {
	tests := []struct {
		name, args, want string
	}{
		{"absent args", ``, "args.post must be a string of 1 to 128 bytes"},
		{"no post", `{"mentions":["a"]}`, "args.post must be a string of 1 to 128 bytes"},
		{"empty post", `{"post":"","mentions":["a"]}`, "args.post must be a string of 1 to 128 bytes"},
		{"post number", `{"post":12,"mentions":["a"]}`, "args.post must be a string"},
		{"no mentions", `{"post":"p"}`, "args.mentions is required"},
		{"null mentions", `{"post":"p","mentions":null}`, "args.mentions is required"},
		{"mentions string", `{"post":"p","mentions":"bob"}`, "args.mentions must be an array of strings"},
		{"mention number", `{"post":"p","mentions":["bob",3]}`, "args.mentions must be an array of strings"},
		{"empty mention", `{"post":"p","mentions":["bob",""]}`, "args.mentions[1] must be a user id of 1 to 256 bytes of printable UTF-8"},
		{"mention with a bidi override", `{"post":"p","mentions":["bob","a\u202eb"]}`, "args.mentions[1] must be a user id of 1 to 256 bytes of printable UTF-8"},
		// The bounds of docs/protocol.md section 5: one request cannot fan
		// out to more than 100 users, nor carry outsized ids.
		{"post of 129 bytes", `{"post":"` + strings.Repeat("p", 129) + `","mentions":["a"]}`, "args.post must be a string of 1 to 128 bytes"},
		{"101 mentions", `{"post":"p","mentions":[` + strings.Repeat(`"a",`, 100) + `"a"]}`, "args.mentions must name at most 100 users, got 101"},
		{"mention of 257 bytes", `{"post":"p","mentions":["` + strings.Repeat("b", 257) + `"]}`, "args.mentions[0] must be a user id of 1 to 256 bytes of printable UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := eventtest.NewRecorder()
			r := eventtest.NewRequest("postUpdated", "alice", nil)
			if tt.args != "" {
				r.Args = json.RawMessage(tt.args)
			}
			err := handlers.NewPosts(rec).PostUpdated(context.Background(), r)
			if w := event.WireError(err); w == nil || w.Code != proto.CodeBadRequest || w.Message != tt.want {
				t.Fatalf("got %+v, want bad_request %q", w, tt.want)
			}
			if n := len(rec.Dispatches()); n != 0 {
				t.Fatalf("dispatched %d on bad args", n)
			}
		})
	}
}

func TestPostUpdatedDispatchFailure(t *testing.T) {
	rec := eventtest.NewRecorder()
	rec.FailWith(&event.Error{Code: proto.CodeUnavailable, Message: "dispatch unavailable", Err: errors.New("redis down")})
	err := handlers.NewPosts(rec).PostUpdated(context.Background(), eventtest.NewRequest("postUpdated", "a", map[string]any{"post": "p", "mentions": []string{"b"}}))
	if w := event.WireError(err); w == nil || w.Code != proto.CodeUnavailable {
		t.Fatalf("got %v, want unavailable", err)
	}
}

func TestRegister(t *testing.T) {
	mux := event.NewMux()
	rec := eventtest.NewRecorder()
	if err := handlers.Register(context.Background(), mux, handlers.Deps{Dispatcher: rec, Rooms: rec}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"joinRoom", "leaveRoom", "postUpdated", "sendMessage", "sendToRoom"}; !slices.Equal(mux.Events(), want) {
		t.Fatalf("Events() = %v, want %v", mux.Events(), want)
	}
	if err := mux.ServeEvent(context.Background(), eventtest.NewRequest("sendMessage", "a", map[string]any{"text": "x"})); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Dispatches()); n != 1 {
		t.Fatalf("dispatched %d through the mux, want 1", n)
	}
	if err := handlers.Register(context.Background(), event.NewMux(), handlers.Deps{Dispatcher: rec}); err == nil {
		t.Fatal("Register without Rooms succeeded")
	}
}

// TestArgsAtTheirBounds: args exactly at the bounds are served.
func TestArgsAtTheirBounds(t *testing.T) {
	mentions := make([]string, handlers.MaxMentions)
	for i := range mentions {
		mentions[i] = strings.Repeat("u", handlers.MaxUserLen-3) + fmt.Sprintf("%03d", i)
	}
	args, _ := json.Marshal(map[string]any{"post": strings.Repeat("p", handlers.MaxPostLen), "mentions": mentions})
	rec := eventtest.NewRecorder()
	r := eventtest.NewRequest("postUpdated", "alice", nil)
	r.Args = args
	if err := handlers.NewPosts(rec).PostUpdated(context.Background(), r); err != nil {
		t.Fatalf("postUpdated at its bounds: %v", err)
	}
	chat := eventtest.NewRequest("sendMessage", "alice", nil)
	chat.Args, _ = json.Marshal(map[string]any{"to": strings.Repeat("t", handlers.MaxUserLen), "text": "x"})
	if err := handlers.NewChat(eventtest.NewRecorder()).SendMessage(context.Background(), chat); err != nil {
		t.Fatalf("sendMessage to a 256-byte user id: %v", err)
	}
}
