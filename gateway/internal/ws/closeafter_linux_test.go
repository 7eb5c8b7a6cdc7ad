package ws_test

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestTooBigCloseWhileWriterStalled: the client stops reading until the
// writer is blocked in the middle of a batch, sends a frame over the read
// limit, and reads again 2.5 s later, well within WriteWait (10 s: only a
// write blocked that long drops the socket, docs/protocol.md). It must
// get every frame the writer had begun, then the 1009 close frame. gorilla
// sets the socket's one write deadline to a second from now before its
// close frame: that cut the writer's batch off and the socket ended with
// 1006 "write failed" and no close frame at all.
func TestTooBigCloseWhileWriterStalled(t *testing.T) {
	const size = 30000
	payload := bytes.Repeat([]byte{'x'}, size)
	s := startServerSendBuf(t, ws.Limits{QueueLen: 1 << 16, QueueBytes: 1 << 30}, 1024, nil, 16384)
	cl, c := s.dial(t, nil)
	nc := cl.NetConn()
	for range 200 { // far more than the socket buffers hold
		c.Send(payload)
	}
	// The writer is blocked once the socket holds unsent bytes it cannot
	// pass on: the client's window is full.
	sfd := socketFD(t, ws.NetConn(c))
	testkit.Eventually(t, wait, "the writer blocked on a full socket", func() bool {
		n, err := unix.IoctlGetInt(int(sfd), unix.SIOCOUTQ)
		return err == nil && n >= 8192
	})
	if _, err := nc.Write(tooBigHeader); err != nil {
		t.Fatal(err)
	}
	// The stalled client: it reads again after gorilla's second is over.
	time.Sleep(2500 * time.Millisecond)
	var got []byte
	buf := make([]byte, 1<<16)
	_ = nc.SetReadDeadline(time.Now().Add(wait))
	for {
		n, err := nc.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	<-c.Done()
	code, reason := c.CloseCode()
	_, after, closeAt, err := framesAfterClose(got, size)
	if err != nil {
		t.Fatal(err)
	}
	if closeAt < 0 || after > 0 {
		t.Fatalf("want the 1009 close frame last: close at byte %d of %d, %d frames after it; closed %d %q by %v",
			closeAt, len(got), after, code, reason, c.ClosedBy())
	}
}
