package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/proto"
)

// roomsMux serves the rooms family through a Mux, as handlers-svc does,
// with rec as its Dispatcher and Rooms.
func roomsMux(t *testing.T, rec *eventtest.Recorder) *event.Mux {
	t.Helper()
	mux := event.NewMux()
	if err := handlers.RegisterRooms(context.Background(), mux, handlers.Deps{Dispatcher: rec, Rooms: rec}); err != nil {
		t.Fatal(err)
	}
	return mux
}

// serve serves one request and returns it (for its result) and the error.
func serve(mux *event.Mux, name, user string, args any) (*event.Request, error) {
	r := eventtest.NewRequest(name, user, args)
	return r, mux.ServeEvent(context.Background(), r)
}

func TestRooms(t *testing.T) {
	rec := eventtest.NewRecorder()
	mux := roomsMux(t, rec)
	for i, u := range []string{"alice", "bob", "carol"} {
		r, err := serve(mux, "joinRoom", u, map[string]string{"room": "general"})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := eventtest.Result[handlers.RoomResult](r); got != (handlers.RoomResult{Room: "general", Members: i + 1}) {
			t.Fatalf("%s joined: result %+v", u, got)
		}
	}
	got := rec.Dispatches()
	if len(got) != 3 || got[2].Event != "room_joined" || !slices.Equal(got[2].Users, []string{"alice", "bob", "carol"}) ||
		string(got[2].Args) != `{"room":"general","user":"carol"}` {
		t.Fatalf("dispatched %+v, want room_joined to every member, the joiner included", got)
	}

	// Joining again changes nothing and tells no one.
	rec.Reset()
	r, err := serve(mux, "joinRoom", "bob", map[string]string{"room": "general"})
	if res, _ := eventtest.Result[handlers.RoomResult](r); err != nil || res.Members != 3 || len(rec.Dispatches()) != 0 {
		t.Fatalf("second join: %+v %v %+v", res, err, rec.Dispatches())
	}

	// A member's message reaches every member, the sender too.
	r, err = serve(mux, "sendToRoom", "bob", map[string]string{"room": "general", "text": "hello room"})
	if err != nil {
		t.Fatal(err)
	}
	sent, err := eventtest.Result[handlers.Sent](r)
	if err != nil || !msgIDPattern.MatchString(sent.MsgID) || sent.TS == 0 {
		t.Fatalf("sendToRoom result %+v, %v", sent, err)
	}
	got = rec.Dispatches()
	if len(got) != 1 || got[0].Event != "room_message" || !slices.Equal(got[0].Users, []string{"alice", "bob", "carol"}) {
		t.Fatalf("dispatched %+v, want room_message to alice, bob and carol", got)
	}
	var msg handlers.RoomMessage
	if err := json.Unmarshal(got[0].Args, &msg); err != nil {
		t.Fatal(err)
	}
	if msg != (handlers.RoomMessage{Room: "general", From: "bob", Text: "hello room", TS: sent.TS, MsgID: sent.MsgID}) {
		t.Fatalf("room_message %+v, result %+v", msg, sent)
	}

	// A non-member may not send.
	rec.Reset()
	_, err = serve(mux, "sendToRoom", "mallory", map[string]string{"room": "general", "text": "let me in"})
	if w := event.WireError(err); w == nil || w.Code != proto.CodeForbidden || w.Message != "you are not a member of room general" {
		t.Fatalf("non-member: %+v, want forbidden", w)
	}
	if n := len(rec.Dispatches()); n != 0 {
		t.Fatalf("a refused send dispatched %d", n)
	}

	// Leaving tells the remaining members and the leaver.
	r, err = serve(mux, "leaveRoom", "carol", map[string]string{"room": "general"})
	if res, _ := eventtest.Result[handlers.RoomResult](r); err != nil || res.Members != 2 {
		t.Fatalf("leave: %+v %v", res, err)
	}
	got = rec.Dispatches()
	if len(got) != 1 || got[0].Event != "room_left" || !slices.Equal(got[0].Users, []string{"alice", "bob", "carol"}) ||
		string(got[0].Args) != `{"room":"general","user":"carol"}` {
		t.Fatalf("dispatched %+v, want room_left to alice, bob and the leaver", got)
	}
	rec.Reset()
	r, err = serve(mux, "leaveRoom", "carol", map[string]string{"room": "general"})
	if res, _ := eventtest.Result[handlers.RoomResult](r); err != nil || res.Members != 2 || len(rec.Dispatches()) != 0 {
		t.Fatalf("leaving again: %+v %v %+v", res, err, rec.Dispatches())
	}
	if _, err := serve(mux, "sendToRoom", "carol", map[string]string{"room": "general", "text": "x"}); event.WireError(err).Code != proto.CodeForbidden {
		t.Fatalf("a former member sent: %v", err)
	}
}

func TestRoomsBadArgs(t *testing.T) {
	mux := roomsMux(t, eventtest.NewRecorder())
	tests := []struct {
		event, args, want string
	}{
		{"joinRoom", ``, "args.room is required"},
		{"joinRoom", `{"room":""}`, "args.room is required"},
		{"joinRoom", `{"room":5}`, "args.room must be a string"},
		{"joinRoom", `{"room":"a b"}`, "args.room must match " + proto.RoomPattern},
		{"joinRoom", `{"room":"` + strings.Repeat("r", 65) + `"}`, "args.room must match " + proto.RoomPattern},
		{"leaveRoom", `["general"]`, "args must be an object"},
		{"sendToRoom", `{"room":"general"}`, "args.text is required"},
		{"sendToRoom", `{"room":"general","text":""}`, "args.text must be 1 to 4000 characters"},
		{"sendToRoom", `{"room":"general","text":7}`, "args.text must be a string"},
		{"sendToRoom", `{"text":"hi"}`, "args.room is required"},
	}
	for _, tt := range tests {
		r := eventtest.NewRequest(tt.event, "alice", nil)
		if tt.args != "" {
			r.Args = json.RawMessage(tt.args)
		}
		err := mux.ServeEvent(context.Background(), r)
		if w := event.WireError(err); w == nil || w.Code != proto.CodeBadRequest || w.Message != tt.want {
			t.Errorf("%s %s: got %+v, want bad_request %q", tt.event, tt.args, w, tt.want)
		}
	}
}

func TestRoomFull(t *testing.T) {
	rec := eventtest.NewRecorder()
	mux := roomsMux(t, rec)
	for i := range proto.MaxRoomMembers {
		if _, _, err := rec.Join(context.Background(), "big", fmt.Sprint("u", i)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := serve(mux, "joinRoom", "late", map[string]string{"room": "big"})
	if w := event.WireError(err); w == nil || w.Code != proto.CodeBadRequest || !strings.Contains(w.Message, "full") {
		t.Fatalf("join of a full room: %+v, want bad_request", w)
	}
}

// TestRoomJoinUndoneWhenNobodyHeard: when room_joined cannot be
// dispatched, the join is undone, so unavailable means nothing happened.
func TestRoomJoinUndoneWhenNobodyHeard(t *testing.T) {
	rec := eventtest.NewRecorder()
	down := event.Unavailable("dispatch unavailable")
	failing := &failingDispatch{Recorder: rec, err: down}
	mux := event.NewMux()
	if err := handlers.RegisterRooms(context.Background(), mux, handlers.Deps{Dispatcher: failing, Rooms: failing}); err != nil {
		t.Fatal(err)
	}
	_, err := serve(mux, "joinRoom", "alice", map[string]string{"room": "general"})
	if w := event.WireError(err); w == nil || w.Code != proto.CodeUnavailable {
		t.Fatalf("got %v, want unavailable", err)
	}
	if members, _ := rec.Members(context.Background(), "general"); len(members) != 0 {
		t.Fatalf("members %v after a failed join, want none", members)
	}
}

// failingDispatch keeps the Recorder's rooms but fails every dispatch.
type failingDispatch struct {
	*eventtest.Recorder
	err error
}

func (f *failingDispatch) ToUsers(context.Context, []string, string, any) error { return f.err }
func (f *failingDispatch) ToRooms(context.Context, []string, string, any) error { return f.err }

// leaveFails is a Recorder whose rooms' Leave fails.
type leaveFails struct{ *eventtest.Recorder }

func (leaveFails) Leave(context.Context, string, string) (int, bool, error) {
	return 0, false, event.Unavailable("rooms unavailable")
}

// TestLeaveFailingAfterTellingIsNoUnavailable: a leave whose room_left
// went out but whose store step failed is not answered unavailable,
// which says nothing was sent and makes a client (or its retry with an
// idem) send room_left to every member again without a word.
func TestLeaveFailingAfterTellingIsNoUnavailable(t *testing.T) {
	rec := eventtest.NewRecorder()
	mux := roomsMux(t, rec)
	if _, err := serve(mux, "joinRoom", "alice", map[string]string{"room": "general"}); err != nil {
		t.Fatal(err)
	}
	broken := event.NewMux()
	if err := handlers.RegisterRooms(context.Background(), broken, handlers.Deps{Dispatcher: rec, Rooms: leaveFails{rec}}); err != nil {
		t.Fatal(err)
	}
	rec.Reset()
	_, err := serve(broken, "leaveRoom", "alice", map[string]string{"room": "general"})
	if len(rec.Dispatches()) != 1 || rec.Dispatches()[0].Event != "room_left" {
		t.Fatalf("dispatched %+v, want room_left", rec.Dispatches())
	}
	if we := event.WireError(err); we == nil || we.Code != proto.CodeHandlerError || !strings.Contains(we.Message, "room_left was sent") {
		t.Fatalf("leave answered %v, want handler_error saying room_left was sent", we)
	}
}
