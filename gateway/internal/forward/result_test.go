package forward_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/gateway/internal/forward"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestAckCarriesResult: the handler's result reaches the client as the
// ack's args, as it came (docs/protocol.md section 2); a reply without one,
// or with null, is a plain ack.
func TestAckCarriesResult(t *testing.T) {
	n := testkit.StartNATS(t)
	replies := map[string]string{
		"sendMessage": `{"ok":true,"result":{"msg_id":"m1","ts":5}}`,
		"spaced":      `{ "result" : [1, "two"], "ok" : true }`,
		"scalar":      `{"ok":true,"result":"done"}`,
		"null":        `{"ok":true,"result":null}`,
		"plain":       `{"ok":true}`,
	}
	respond(t, n, func(m *nats.Msg) {
		ev, _ := proto.EventFromSubject(m.Subject)
		_ = m.Respond([]byte(replies[ev]))
	})
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait})
	cl, _ := g.dial(t, "alice")
	for _, tt := range []struct{ event, args string }{
		{"sendMessage", `{"msg_id":"m1","ts":5}`},
		{"spaced", `[1, "two"]`},
		{"scalar", `"done"`},
		{"null", ``},
		{"plain", ``},
	} {
		ref := "r-" + tt.event
		cl.Send(tt.event, nil, ref)
		f := cl.ExpectRef(wait, ref)
		if f.Event != proto.EventAck || f.ID != "alice" || string(f.Args) != tt.args {
			t.Errorf("%s: reply %+v (args %s), want an ack with args %q", tt.event, f, f.Args, tt.args)
		}
	}
}

// TestOversizedResultIsHandlerError: a reply whose result is over
// proto.MaxResult (handlers-svc never sends one; another responder on the
// subject might) reaches the client as handler_error, not as an ack that
// could overflow its send queue and close it; the socket goes on, and a
// result of exactly MaxResult bytes is an ack.
func TestOversizedResultIsHandlerError(t *testing.T) {
	n := testkit.StartNATS(t)
	str := func(size int) string { return `"` + strings.Repeat("x", size-2) + `"` }
	respond(t, n, func(m *nats.Msg) {
		size := proto.MaxResult
		if ev, _ := proto.EventFromSubject(m.Subject); ev == "huge" {
			size++
		}
		_ = m.Respond([]byte(`{"ok":true,"result":` + str(size) + `}`))
	})
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait})
	cl, _ := g.dial(t, "alice")
	cl.Send("huge", nil, "r1")
	f := cl.ExpectRef(wait, "r1")
	if f.Event != proto.EventError || !strings.Contains(string(f.Args), `"code":"handler_error"`) || !strings.Contains(string(f.Args), "too large") {
		t.Fatalf("reply to a result of MaxResult+1 bytes: %s %.200s, want a handler_error", f.Event, f.Args)
	}
	cl.Send("atLimit", nil, "r2")
	if f := cl.ExpectRef(wait, "r2"); f.Event != proto.EventAck || string(f.Args) != str(proto.MaxResult) {
		t.Fatalf("reply to a result of MaxResult bytes: %s %.100s, want an ack carrying it", f.Event, f.Args)
	}
}
