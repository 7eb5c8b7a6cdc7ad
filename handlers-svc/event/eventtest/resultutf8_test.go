package eventtest_test

import (
	"encoding/json"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
)

// TestResultNotUTF8: Result fails on a result handlers-svc would not
// deliver (d195181: "so a handler's test no longer passes on a result
// production refuses"), but checks only proto.MaxResult. A result that is
// not UTF-8 is answered handler_error in production (the gateway's
// proto.DecodeResult: its ack is a text frame). Between 30465b6 and
// 01eb4b2 Respond itself refused it, so the handler's test saw the error;
// 01eb4b2 rightly moved that check out of Respond, and now nothing in
// eventtest catches it: Respond returns nil, and Result decodes the bytes
// (encoding/json reads invalid UTF-8 in a string as U+FFFD), so the test
// passes on a handler whose every answer is handler_error.
//
// Expected: Result fails, as for a result over proto.MaxResult.
func TestResultNotUTF8(t *testing.T) {
	r := eventtest.NewRequest("profile", "bob", nil)
	if err := r.Respond(json.RawMessage("{\"name\":\"caf\xe9\"}")); err != nil { // bytes read from a Latin-1 source
		t.Fatalf("Respond: %v (01eb4b2: the transport, not Respond, refuses it)", err)
	}
	if v, err := eventtest.Result[map[string]string](r); err == nil {
		t.Errorf("Result = %q, nil: the test passes on a result the client never gets (handler_error)", v)
	}
}
