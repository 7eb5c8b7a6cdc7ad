package forward_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/gateway/internal/config"
	"github.com/switchboard/switchboard/gateway/internal/forward"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestOversizedErrorMessageKeepsSocket: the gateway bounds a reply's
// result (proto.MaxResult, TestOversizedResultIsHandlerError) so that an
// outsized ack never reaches a socket's send queue, where it could close
// the socket as a slow consumer; an error reply's message was not bounded
// (now cut to proto.MaxErrorMessage), so the same reply shaped as an error ({"error":{"code",
// "message"}}, from handlers-svc, whose handlers' messages may echo what
// the client sent, or from any other responder) closes a socket whose
// GATEWAY_SEND_QUEUE_BYTES is at its allowed minimum
// (config.MinSendQueueBytes). The client should get an error frame and
// keep its socket.
func TestOversizedErrorMessageKeepsSocket(t *testing.T) {
	saved := queueLimits
	t.Cleanup(func() { queueLimits = saved }) // registered first: runs after the gateway's cleanups
	queueLimits.QueueBytes = config.MinSendQueueBytes

	n := testkit.StartNATS(t)
	msg := strings.Repeat("x", 2*proto.MaxResult)
	respond(t, n, func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"error":{"code":"bad_request","message":"` + msg + `"}}`))
	})
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait})
	cl, _ := g.dial(t, "alice")
	cl.Send("anything", nil, "r1")
	f, ok := cl.TryExpect(wait, func(f proto.Frame) bool { return f.Ref == "r1" })
	if !ok {
		closed, err := cl.Closed()
		t.Fatalf("no answer to a reply with a %d-byte error message (socket closed %v: %v); want an error frame on a socket that stays open",
			len(msg), closed, err)
	}
	if f.Event != proto.EventError {
		t.Fatalf("answer %s, want an error", f.Event)
	}
}
