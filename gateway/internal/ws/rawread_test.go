package ws_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/gateway/internal/ws"
)

// TestReadsRaw: an upgraded socket's meter reads the network through
// rawconn (on Linux, where rawconn wraps connections), and a client's
// frames arrive through it.
func TestReadsRaw(t *testing.T) {
	s := startServer(t, defaultLimits, 65536)
	cl, c := s.dial(t, nil)
	src := ws.MeterSource(c)
	if src == nil {
		t.Fatal("the socket has no meter")
	}
	if got := fmt.Sprintf("%T", src); runtime.GOOS == "linux" && got != "*rawconn.conn" {
		t.Fatalf("the meter reads through a %s, not rawconn's", got)
	}
	if err := cl.WriteMessage(websocket.TextMessage, []byte(`{"raw":true}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-s.rec.frames:
		if string(f.data) != `{"raw":true}` {
			t.Fatalf("frame %q", f.data)
		}
	case <-time.After(wait):
		t.Fatal("the frame did not arrive")
	}
}
