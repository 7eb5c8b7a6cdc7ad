package forward_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/gateway/internal/forward"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestAckOfInvalidUTF8ResultIsValidText: a handler result carrying bytes
// that are not UTF-8 (a json.RawMessage a handler responds with, which
// handlers-svc's EncodeArgs lets through since ValidJSON, like json.Valid,
// does not check UTF-8; or any other responder) must not reach the socket
// as a text frame that is not UTF-8: a browser fails the whole connection
// on one (RFC 6455 section 8.1), and with client.js's retry the replayed
// answer (idem) would fail every reconnect the same way. The gateway
// checks UTF-8 of client frames (1007) and of dispatches
// (proto.DecodeDispatch); replies (proto.DecodeResult) were not, and now
// such a result is a malformed reply: handler_error.
func TestAckOfInvalidUTF8ResultIsValidText(t *testing.T) {
	n := testkit.StartNATS(t)
	respond(t, n, func(m *nats.Msg) {
		_ = m.Respond([]byte("{\"ok\":true,\"result\":\"bad \xff byte\"}"))
	})
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait})
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(g.srv.URL, "http")+"/?user=alice", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c := <-g.conns
	t.Cleanup(func() {
		_ = ws.Close()
		<-c.Done()
	})
	_ = ws.SetReadDeadline(time.Now().Add(wait))
	if _, _, err := ws.ReadMessage(); err != nil { // connected
		t.Fatalf("read connected: %v", err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"event":"get","ref":"r1"}`)); err != nil {
		t.Fatalf("write: %v", err)
	}
	mt, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	if mt != websocket.TextMessage || !utf8.Valid(data) {
		t.Fatalf("answer to a reply whose result is not UTF-8: type %d, %q: a text frame that is not UTF-8, which a browser fails the connection for", mt, data)
	}
}
