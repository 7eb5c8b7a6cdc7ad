package ws_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/proto"
)

// TestTooBigCloseNotInsideAFrame: while the writer streams frames to a
// slow client (its writes split between trySend and the blocking rest),
// the client sends a frame over the read limit, so gorilla writes its 1009
// close frame from the read loop. That close frame must land between two
// frames, never inside one: every data frame the client reads is whole,
// and the read ends with the 1009 close.
func TestTooBigCloseNotInsideAFrame(t *testing.T) {
	const (
		maxFrame = 1024
		size     = 6000
		// The close lands inside a frame only when gorilla's write comes
		// in a narrow window; with the fault, about half the rounds show
		// it. Each round takes some 10 s (the small windows), so CI runs
		// a few: 20 rounds took 249 s with the fix, all passing.
		rounds = 4
	)
	payload := bytes.Repeat([]byte{'x'}, size)
	dialer := &websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				_ = c.(*net.TCPConn).SetReadBuffer(8192) // a small window: the server's sends often find its buffer full
			}
			return c, err
		},
	}
	s := startServerSendBuf(t, ws.Limits{QueueLen: 1 << 16, QueueBytes: 1 << 30}, maxFrame, nil, 8192) // the writer's sends often find it full
	bad := 0
	for r := range rounds {
		cl, c := s.dial(t, dialer)
		stop := make(chan struct{})
		fed := make(chan struct{})
		go func() {
			defer close(fed)
			for range 400 {
				select {
				case <-stop:
					return
				default:
				}
				if !c.Send(payload) {
					return
				}
			}
		}()
		var err error
		var mt int
		var data []byte
		for i := 0; ; i++ {
			if i == 30 {
				// Only the header of a text frame of 2000 bytes: the server
				// refuses it from the header, so nothing is left unread
				// and its close ends in a FIN, not a reset.
				go func() { _, _ = cl.NetConn().Write([]byte{0x81, 0x80 | 126, 2000 >> 8, 2000 & 0xff, 1, 2, 3, 4}) }()
			}
			if mt, data, err = read(t, cl); err != nil {
				break
			}
			if mt != websocket.TextMessage || !bytes.Equal(data, payload) {
				bad++
				at := 0
				for at < min(len(data), len(payload)) && data[at] == payload[at] {
					at++
				}
				t.Errorf("round %d, frame %d: type %d, %d bytes, not the frame sent: from byte %d, %q", r, i, mt, len(data), at, data[at:min(len(data), at+12)])
				break
			}
		}
		close(stop)
		<-fed
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != proto.CloseMessageTooBig {
				bad++
				t.Errorf("round %d: read ended with %v, want close 1009", r, err)
			}
		}
		_ = cl.Close()
		if bad > 0 {
			t.Fatalf("stopping after %d rounds", r+1)
		}
	}
}
