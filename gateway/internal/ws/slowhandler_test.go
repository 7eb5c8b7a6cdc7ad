package ws_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/gateway/internal/ws"
)

// blocking is a FrameHandler whose first frame waits until release is
// closed, as the forwarder's read loop waits for a request slot (up to a
// handler timeout, GATEWAY_HANDLER_TIMEOUT); later frames are recorded.
type blocking struct {
	entered, release chan struct{}
	rec              *recorder
	first            atomic.Bool
}

func (b *blocking) HandleFrame(data []byte, binary bool) {
	if b.first.CompareAndSwap(false, true) {
		close(b.entered)
		<-b.release
		return
	}
	b.rec.HandleFrame(data, binary)
}

// TestHandlerWaitIsNoPingTimeout: a read loop that waits in its frame
// handler longer than PongWait (a request slot, with a handler timeout of
// 60 s or more) reads nothing meanwhile, though its client answers every
// ping. That wait is the gateway's, not the client's silence: the socket
// stays open and reads on. The read deadline had run from the frame
// before the wait, so the first read after it failed at once and the
// socket was closed 1001 "ping timeout".
func TestHandlerWaitIsNoPingTimeout(t *testing.T) {
	const pongWait = 300 * time.Millisecond
	ws.SetPongWait(t, pongWait)
	h := &blocking{entered: make(chan struct{}), release: make(chan struct{}), rec: &recorder{frames: make(chan frame, 4)}}
	s := startServerWith(t, defaultLimits, 65536, h)
	cl, c := s.dial(t, nil)
	var pings atomic.Int32
	cl.SetPingHandler(func(data string) error {
		pings.Add(1)
		return cl.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(wait))
	})
	go func() { // the client reads, so it answers pings
		for {
			if _, _, err := cl.ReadMessage(); err != nil {
				return
			}
		}
	}()
	if err := cl.WriteMessage(websocket.TextMessage, []byte(`{"event":"first"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.entered:
	case <-time.After(wait):
		t.Fatal("the first frame did not reach the handler")
	}
	// Pinged every half PongWait while the handler waits, the client
	// answers each: it is alive, for three times PongWait.
	tick := time.NewTicker(pongWait / 2)
	for pings.Load() < 6 {
		select {
		case <-tick.C:
			c.Ping()
		case <-c.Done():
			tick.Stop()
			t.Fatal("the socket ended while its handler waited")
		}
	}
	tick.Stop()
	close(h.release)
	if err := cl.WriteMessage(websocket.TextMessage, []byte(`{"event":"next"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-h.rec.frames:
		if string(f.data) != `{"event":"next"}` {
			t.Fatalf("frame = %q", f.data)
		}
	case <-c.Done():
		code, reason := c.CloseCode()
		t.Fatalf("the socket was closed %d %q after its handler's wait", code, reason)
	case <-time.After(wait):
		t.Fatal("the frame sent after the wait did not arrive")
	}
	if code, reason := c.CloseCode(); code != 0 {
		t.Fatalf("closed %d %q", code, reason)
	}
}
