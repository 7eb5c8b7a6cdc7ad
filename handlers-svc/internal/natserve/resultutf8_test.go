package natserve_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/natserve"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestUndeliverableResultIsTheHandlersFault: 30465b6 put proto.ValidArgs
// (UTF-8, depth <= 9,999) into event.EncodeArgs, which Request.Respond
// (and so event.Typed) also uses for the handler's *result*. A result that
// is not UTF-8 now makes Respond return a bad_request *Error ("args are not
// UTF-8"), which the idiomatic `return r.Respond(x)` hands back: the client
// is told its own request was bad, about "args" it never sent, and natserve
// logs it at debug level as the handler's chosen answer (isAnswer), so the
// handler's bug is invisible. Before, the reply went out and the gateway
// answered handler_error ("malformed reply"); Respond's doc still says a
// result it cannot take is a (handler_error) programming error. Likewise a
// result nested 10,000 deep, which the gateway delivered (DecodeResult
// checks the result itself, not the reply one level down), is now a
// bad_request "args are nested deeper than 9999 levels". (At eb3fcc3 this
// test passes: the reply went out, and the gateway's DecodeResult made the
// non-UTF-8 one handler_error.)
//
// Expected: neither is answered bad_request; the UTF-8 one handler_error.
func TestUndeliverableResultIsTheHandlersFault(t *testing.T) {
	ns := testkit.StartNATS(t)
	core, _ := observer.New(zapcore.DebugLevel)
	mux := event.NewMux()
	mux.HandleFunc("latin1", func(_ context.Context, r *event.Request) error {
		return r.Respond(json.RawMessage("{\"name\":\"caf\xe9\"}")) // bytes read from a Latin-1 source
	})
	mux.HandleFunc("deep", func(_ context.Context, r *event.Request) error {
		return r.Respond(json.RawMessage(strings.Repeat("[", 10000) + strings.Repeat("]", 10000)))
	})
	serve(t, ns, mux, zap.New(core), natserve.Config{Timeout: 5 * time.Second})
	nc := connect(t, ns)

	for _, ev := range []string{"latin1", "deep"} {
		perr := request(t, nc, ev, proto.Request{Event: ev, User: "alice", Conn: "c1"})
		if perr != nil && perr.Code == proto.CodeBadRequest {
			t.Errorf("%s: the handler's result answered %s %q: the client is blamed for the handler's result", ev, perr.Code, perr.Message)
		}
		if ev == "latin1" && (perr == nil || perr.Code != proto.CodeHandlerError) {
			t.Errorf("%s: %v, want handler_error", ev, perr)
		}
	}
}

// TestResultNotUTF8IsLogged: a result that is not UTF-8 (a json.RawMessage
// of bytes read from a Latin-1 source) cannot be sent to a socket. It is
// answered handler_error by handlers-svc itself, in a reply that is
// valid UTF-8, and logged at error level with the event, as a result too
// large is; before, the bytes went out, the gateway answered the client
// "malformed reply", and handlers-svc counted the request ok and logged
// nothing, so the team whose handler it was had nothing to go on.
func TestResultNotUTF8IsLogged(t *testing.T) {
	ns := testkit.StartNATS(t)
	core, logs := observer.New(zapcore.DebugLevel)
	mux := event.NewMux()
	mux.HandleFunc("latin1", func(_ context.Context, r *event.Request) error {
		return r.Respond(json.RawMessage("{\"name\":\"caf\xe9\"}"))
	})
	serve(t, ns, mux, zap.New(core), natserve.Config{Timeout: 5 * time.Second})
	nc := connect(t, ns)

	msg, err := nc.Request(proto.Subject("latin1"), proto.AppendRequest(nil, &proto.Request{Event: "latin1", User: "alice", Conn: "c1"}), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !utf8.Valid(msg.Data) {
		t.Errorf("reply %q is not UTF-8: the handler's bytes went out", msg.Data)
	}
	if perr := proto.DecodeReply(msg.Data); perr == nil || perr.Code != proto.CodeHandlerError {
		t.Fatalf("reply %q: %v, want handler_error", msg.Data, perr)
	}
	found := logs.FilterLevelExact(zapcore.ErrorLevel).FilterField(zap.String("event", "latin1")).Len()
	if found == 0 {
		t.Errorf("nothing logged at error level for event latin1; logs: %v", logs.All())
	}
}
