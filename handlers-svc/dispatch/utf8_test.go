package dispatch_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestDispatchRefusesArgsThatAreNotUTF8: args that are JSON to proto.ValidJSON but not UTF-8
// (ValidJSON, like json.Valid, takes any byte inside a string: "callers
// that need UTF-8 check it apart") are recorded and published as they
// are. A json.RawMessage keeps its bytes through json.Marshal and through
// the dispatch API's body decoding, so a backend that puts bytes it read
// from elsewhere into a RawMessage (or a nested RawMessage field) gets
// them through. The gateway copies args into the socket's text frame
// unchanged (proto.AppendEvent), and a WebSocket endpoint must fail the
// connection on a text frame that is not UTF-8 (RFC 6455 section 8.1,
// close 1007): every target socket is dropped, and since the event is in
// the users' streams, every resume replays it and drops the socket again
// until HISTORY_WINDOW passes. proto.DecodeResult already refuses a
// handler result that is not UTF-8 for exactly this reason; dispatch args
// get no such check (event.EncodeArgs, Message.Check, Dispatcher.encode).
//
// Expected: bad_request, nothing published or recorded, as for any other
// args the gateway cannot deliver.
func TestDispatchRefusesArgsThatAreNotUTF8(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := newClient(t, srv.Addr())
	ps := subscribe(t, rdb)
	d := dispatch.New(rdb, dispatch.Options{Window: 2 * time.Minute})
	ctx := context.Background()

	bad := json.RawMessage("{\"text\":\"caf\xe9\"}") // Latin-1 é: valid JSON to ValidJSON, not UTF-8
	if !proto.ValidJSON(bad) || utf8.Valid(bad) {
		t.Fatal("test args: want valid JSON that is not UTF-8")
	}
	nested := struct {
		Doc json.RawMessage `json:"doc"`
	}{Doc: json.RawMessage("\"\xff\xfe\"")}

	for name, call := range map[string]func() error{
		"ToUsers with a RawMessage":        func() error { return d.ToUsers(ctx, []string{"bob"}, "note", bad) },
		"ToUsers with a nested RawMessage": func() error { return d.ToUsers(ctx, []string{"bob"}, "note", nested) },
		"Broadcast":                        func() error { return d.Broadcast(ctx, "note", bad) },
		"Dispatch (the dispatch API's path)": func() error {
			_, err := d.Dispatch(ctx, dispatch.Message{Event: "note", Args: bad, Users: []string{"bob"}})
			return err
		},
		"in a batch": func() error {
			return d.Batch(ctx, func(b event.Dispatcher) error { return b.ToUsers(ctx, []string{"bob"}, "note", bad) })
		},
	} {
		if w := event.WireError(call()); w == nil || w.Code != proto.CodeBadRequest {
			t.Errorf("%s: %v, want bad_request (args are not UTF-8: no socket can be sent them)", name, w)
		}
	}

	// What went out: each accepted call put bytes on the channel that no
	// WebSocket text frame may carry, and recorded them in bob's stream.
	if err := d.Broadcast(ctx, "marker", nil); err != nil {
		t.Fatal(err)
	}
	for {
		p := receive(t, ps)
		dd, err := proto.DecodeDispatch([]byte(p))
		if err != nil {
			t.Fatalf("decode %q: %v", p, err)
		}
		if dd.Event == "marker" {
			break
		}
		frame := proto.AppendEvent(nil, dd.Event, "bob", dd.Args) // what the gateway writes to bob's sockets
		t.Errorf("published %q: the socket's frame %q is not UTF-8 (%v)", dd.Event, frame, utf8.Valid(frame))
	}
	if n := rdb.XLen(ctx, proto.UserStreamKey("bob")).Val(); n != 0 {
		t.Errorf("bob's stream holds %d entries: each resume replays them", n)
	}
}
