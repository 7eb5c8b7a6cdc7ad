package forward_test

import (
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
