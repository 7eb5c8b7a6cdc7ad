package eventtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/proto"
)

func TestRecorder(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	users := []string{"bob"}
	if err := rec.ToUsers(ctx, users, "message", map[string]string{"text": "hi"}); err != nil {
		t.Fatal(err)
	}
	users[0] = "mallory" // the recorder keeps its own copy
	if err := rec.ToConns(ctx, []string{"c1", "c2"}, "ping", json.RawMessage(`[1, 2]`)); err != nil {
		t.Fatal(err)
	}
	if err := rec.Broadcast(ctx, "news", nil); err != nil {
		t.Fatal(err)
	}
	if err := rec.ToUsers(ctx, nil, "nobody", 1); err != nil {
		t.Fatal(err)
	}

	got := rec.Dispatches()
	if len(got) != 3 {
		t.Fatalf("recorded %d dispatches, want 3: %+v", len(got), got)
	}
	if d := got[0]; d.Event != "message" || len(d.Users) != 1 || d.Users[0] != "bob" || string(d.Args) != `{"text":"hi"}` {
		t.Fatalf("dispatch 0 = %+v (args %s)", d, d.Args)
	}
	if d := got[1]; d.Event != "ping" || len(d.Conns) != 2 || string(d.Args) != `[1, 2]` {
		t.Fatalf("dispatch 1 = %+v (args %s)", d, d.Args)
	}
	if d := got[2]; d.Event != "news" || !d.Broadcast || d.Args != nil {
		t.Fatalf("dispatch 2 = %+v", d)
	}

	rec.Reset()
	if n := len(rec.Dispatches()); n != 0 {
		t.Fatalf("%d dispatches after Reset", n)
	}
}

func TestRecorderChecks(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	if err := rec.ToUsers(ctx, []string{"a"}, "bad name", nil); err == nil {
		t.Fatal("invalid event name accepted")
	}
	if err := rec.Broadcast(ctx, "e", make(chan int)); err == nil {
		t.Fatal("unmarshallable args accepted")
	}
	if err := rec.Broadcast(ctx, "e", json.RawMessage(`{`)); err == nil {
		t.Fatal("invalid raw JSON accepted")
	}

	down := &event.Error{Code: proto.CodeUnavailable, Message: "dispatch unavailable", Err: errors.New("redis down")}
	rec.FailWith(down)
	if err := rec.ToUsers(ctx, []string{"a"}, "e", nil); !errors.Is(err, down) {
		t.Fatalf("got %v, want the injected failure", err)
	}
	rec.FailWith(nil)
	if err := rec.ToUsers(ctx, []string{"a"}, "e", nil); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Dispatches()); n != 1 {
		t.Fatalf("recorded %d, want 1 (failed dispatches are not recorded)", n)
	}
}

func TestNewRequest(t *testing.T) {
	r := eventtest.NewRequest("sendMessage", "alice", map[string]any{"to": "bob"})
	if r.Event != "sendMessage" || r.User != "alice" || r.Conn != "alice-conn" || string(r.Args) != `{"to":"bob"}` {
		t.Fatalf("NewRequest = %+v (args %s)", r, r.Args)
	}
	if r := eventtest.NewRequest("e", "u", nil); r.Args != nil {
		t.Fatalf("nil args = %s, want absent", r.Args)
	}
	if r := eventtest.NewRequest("e", "u", json.RawMessage(`"raw"`)); string(r.Args) != `"raw"` {
		t.Fatalf("raw args = %s", r.Args)
	}
}

func TestRecorderContextEnded(t *testing.T) {
	rec := eventtest.NewRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := rec.ToUsers(ctx, []string{"a"}, "e", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if n := len(rec.Dispatches()); n != 0 {
		t.Fatalf("recorded %d", n)
	}
}

// TestRecorderBatch: a batch is recorded whole after fn succeeds, and not at
// all when fn or the recorder fails.
func TestRecorderBatch(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	two := func(d event.Dispatcher) error {
		if err := d.ToUsers(ctx, []string{"b"}, "message", nil); err != nil {
			return err
		}
		return d.ToUsers(ctx, []string{"a"}, "message_sent", nil)
	}
	if err := event.Atomically(ctx, rec, two); err != nil {
		t.Fatal(err)
	}
	if got := rec.Dispatches(); len(got) != 2 || got[0].Event != "message" || got[1].Event != "message_sent" {
		t.Fatalf("recorded %+v, want message then message_sent", got)
	}
	rec.Reset()
	boom := errors.New("boom")
	if err := event.Atomically(ctx, rec, func(d event.Dispatcher) error { _ = two(d); return boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v, want fn's error", err)
	}
	rec.FailWith(boom)
	if err := event.Atomically(ctx, rec, two); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the recorder's error", err)
	}
	if got := rec.Dispatches(); len(got) != 0 {
		t.Fatalf("recorded %d dispatches of failed batches, want none", len(got))
	}
}

// TestAtomicallyWithoutBatcher: with a Dispatcher that cannot batch,
// Atomically sends fn's dispatches directly.
func TestAtomicallyWithoutBatcher(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	notBatcher := struct{ event.Dispatcher }{rec} // hides Recorder.Batch
	err := event.Atomically(ctx, notBatcher, func(d event.Dispatcher) error {
		if _, ok := d.(event.Batcher); ok {
			t.Error("fn got a Batcher, want the plain dispatcher")
		}
		return d.Broadcast(ctx, "news", nil)
	})
	if err != nil || len(rec.Dispatches()) != 1 {
		t.Fatalf("err %v, %d dispatches; want the one dispatch sent directly", err, len(rec.Dispatches()))
	}
}

// TestRecorderRefusesWhatTheDispatcherRefuses: a handler tested with the
// Recorder must fail its test where the real dispatcher would fail it in
// production: the gateway's own event names (a plain error, handler_error)
// and args over proto.MaxDispatchArgs (bad_request), on every path.
func TestRecorderRefusesWhatTheDispatcherRefuses(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	if _, _, err := rec.Join(ctx, "general", "bob"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{proto.EventConnected, proto.EventAck, proto.EventError, proto.EventResync} {
		for how, err := range map[string]error{
			"to users":  rec.ToUsers(ctx, []string{"bob"}, name, nil),
			"to conns":  rec.ToConns(ctx, []string{"c1"}, name, nil),
			"broadcast": rec.Broadcast(ctx, name, nil),
			"to rooms":  rec.ToRooms(ctx, []string{"general"}, name, nil),
			"batch":     rec.Batch(ctx, func(d event.Dispatcher) error { return d.ToUsers(ctx, []string{"bob"}, name, nil) }),
			"no users":  rec.ToUsers(ctx, nil, name, nil),
		} {
			if w := event.WireError(err); w == nil || w.Code != proto.CodeHandlerError {
				t.Errorf("%s %s: got %v, want a plain error (handler_error)", how, name, err)
			}
		}
	}
	big := json.RawMessage(`"` + strings.Repeat("x", proto.MaxDispatchArgs-1) + `"`) // one byte over
	for how, err := range map[string]error{
		"to users":  rec.ToUsers(ctx, []string{"bob"}, "big", big),
		"to conns":  rec.ToConns(ctx, []string{"c1"}, "big", big),
		"broadcast": rec.Broadcast(ctx, "big", big),
		"to rooms":  rec.ToRooms(ctx, []string{"general"}, "big", big),
		"batch":     rec.Batch(ctx, func(d event.Dispatcher) error { return d.ToUsers(ctx, []string{"bob"}, "big", big) }),
	} {
		if w := event.WireError(err); w == nil || w.Code != proto.CodeBadRequest {
			t.Errorf("args of %d bytes %s: got %v, want bad_request", len(big), how, err)
		}
	}
	most := json.RawMessage(`"` + strings.Repeat("x", proto.MaxDispatchArgs-2) + `"`)
	if err := rec.ToUsers(ctx, []string{"bob"}, "big", most); err != nil {
		t.Errorf("args of %d bytes, the most allowed: %v", len(most), err)
	}
	if n := len(rec.Dispatches()); n != 1 {
		t.Fatalf("recorded %d dispatches, want only the one within bounds", n)
	}
}

// TestNewRequestConnIsDispatchable: whatever the user id, the request's
// connection is one a handler can answer with ToConns, as it can in
// production, where the gateway makes connection ids of its own.
func TestNewRequestConnIsDispatchable(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	seen := map[string]string{}
	for _, user := range []string{"bob", "josé", "李", "a b", strings.Repeat("u", 60), strings.Repeat("u", 61)} {
		r := eventtest.NewRequest("hello", user, nil)
		if err := rec.ToConns(ctx, []string{r.Conn}, "hello", nil); err != nil {
			t.Errorf("user %q: ToConns(r.Conn %q): %v", user, r.Conn, err)
		}
		if other, ok := seen[r.Conn]; ok {
			t.Errorf("users %q and %q share the connection %q", other, user, r.Conn)
		}
		seen[r.Conn] = user
	}
	if r := eventtest.NewRequest("hello", "bob", nil); r.Conn != "bob-conn" {
		t.Errorf("bob's connection is %q, want bob-conn", r.Conn)
	}
}

// TestResultNoResult: Result[event.NoResult] is how a test checks that a
// handler answered with a plain ack, as a typed handler returning
// event.NoResult{} does; a result there is the failure.
func TestResultNoResult(t *testing.T) {
	ctx := context.Background()
	ack := event.Typed(func(context.Context, *event.Request, struct{}) (event.NoResult, error) { return event.NoResult{}, nil })
	r := eventtest.NewRequest("markRead", "bob", nil)
	if err := ack.ServeEvent(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := eventtest.Result[event.NoResult](r); err != nil {
		t.Errorf("a plain ack: %v", err)
	}
	answers := event.Typed(func(context.Context, *event.Request, struct{}) (int, error) { return 3, nil })
	r = eventtest.NewRequest("markRead", "bob", nil)
	if err := answers.ServeEvent(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := eventtest.Result[event.NoResult](r); err == nil {
		t.Error("a result of 3 passed for no result")
	}
	if _, err := eventtest.Result[struct{}](eventtest.NewRequest("markRead", "bob", nil)); err == nil {
		t.Error("Result of another type on a request without a result did not fail")
	}
}

// TestResultTooLarge: a result handlers-svc would not send (over
// proto.MaxResult, answered handler_error) fails Result, so that a handler's
// test does not pass on what production refuses.
func TestResultTooLarge(t *testing.T) {
	for n, wantErr := range map[int]bool{proto.MaxResult: false, proto.MaxResult + 1: true} {
		r := eventtest.NewRequest("list", "bob", nil)
		if err := r.Respond(strings.Repeat("x", n-2)); err != nil { // n bytes with its quotes
			t.Fatal(err)
		}
		if _, err := eventtest.Result[string](r); (err != nil) != wantErr {
			t.Errorf("a result of %d bytes: %v, want an error %v", len(r.Result()), err, wantErr)
		}
	}
}
