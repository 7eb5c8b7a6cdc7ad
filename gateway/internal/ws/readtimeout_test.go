package ws_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/ws"
)

// TestUpgradedOutlivesReadTimeout: the servers of every HTTP port bound a
// whole request with http.Server.ReadTimeout (internal/httpserver), which
// sets a read deadline on the connection; a socket upgraded by Upgrade is
// not cut off by it, since gorilla clears the deadlines when it takes the
// connection over.
func TestUpgradedOutlivesReadTimeout(t *testing.T) {
	const readTimeout = 200 * time.Millisecond
	conns := make(chan *ws.Conn, 1)
	rec := &recorder{frames: make(chan frame, 4)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := ws.Upgrade(&websocket.Upgrader{}, w, r)
		if err != nil {
			return
		}
		limits := defaultLimits
		c := ws.NewConn(u, "c1", "alice", &limits, zap.NewNop())
		conns <- c
		c.ReadLoop(rec, 65536)
	}))
	srv.Config.ReadTimeout = readTimeout
	srv.Start()
	t.Cleanup(srv.Close)

	cl, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer cl.Close()
	var c *ws.Conn
	select {
	case c = <-conns:
	case <-time.After(wait):
		t.Fatal("server did not accept the socket")
	}
	// The deadline the server set when the request began has passed
	// (nothing to await: it is the passing of time that is tested).
	time.Sleep(3 * readTimeout)
	if err := cl.WriteMessage(websocket.TextMessage, []byte(`{"event":"late"}`)); err != nil {
		t.Fatalf("write after the read timeout: %v", err)
	}
	select {
	case f := <-rec.frames:
		if string(f.data) != `{"event":"late"}` {
			t.Fatalf("frame = %q", f.data)
		}
	case <-c.Done():
		t.Fatal("the socket ended at the server's read timeout")
	case <-time.After(wait):
		t.Fatal("the frame sent after the read timeout did not arrive")
	}
	c.Send([]byte(`{"back":1}`))
	if _, data, err := read(t, cl); err != nil || string(data) != `{"back":1}` {
		t.Fatalf("read = %q, %v", data, err)
	}
}
