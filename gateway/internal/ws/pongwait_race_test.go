package ws_test

import (
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/gateway/internal/ws"
)

// TestSetPongWaitWhileAnotherSocketReads (run with -race): SetPongWait
// writes the package's pongWait while a socket that is not this test's
// still reads it. The read deadline is now pushed after the frame handler
// returns, that is after a test has seen the frame and may have moved on:
// TestUpgradedOutlivesReadTimeout leaves its socket running when it ends,
// and TestHandlerWaitIsNoPingTimeout, next in order, calls SetPongWait
// while that socket's read loop is in extendReadDeadline. `go test -race
// -count=10 ./internal/ws/` reported that race. Here the subtest plays the
// next test; the second frame makes sure the read loop has pushed its
// deadline after the first before this test ends.
func TestSetPongWaitWhileAnotherSocketReads(t *testing.T) {
	s := startServer(t, defaultLimits, 65536)
	cl, _ := s.dial(t, nil)
	next := func(msg string) {
		t.Helper()
		if err := cl.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		select {
		case f := <-s.rec.frames:
			if string(f.data) != msg {
				t.Fatalf("frame = %q, want %q", f.data, msg)
			}
		case <-time.After(wait):
			t.Fatalf("frame %q did not arrive", msg)
		}
	}
	next(`{"event":"first"}`) // handled; the read loop goes on to push its deadline
	t.Run("next test", func(t *testing.T) { ws.SetPongWait(t, time.Minute) })
	next(`{"event":"second"}`)
}
