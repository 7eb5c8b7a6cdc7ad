package natserve_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

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
