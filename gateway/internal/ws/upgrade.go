package ws

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/rawconn"
)

// ReadBufferSize is the read buffer of every socket upgraded by Upgrade.
// Client frames are small (a longer one takes several reads), and an idle
// socket keeps its buffer for life, so it is small. gorilla reads through a
// hijacked buffer only when it is larger than 256 bytes; 288 is the size
// class just above.
const ReadBufferSize = 288

// Upgraded is a socket upgraded by Upgrade, for NewConn.
type Upgraded struct {
	WS *websocket.Conn
	// Expires is when the socket's authorization ends, so the gateway
	// closes it (Conn.Expires); zero: never. Whole seconds after the Unix
	// epoch: the Conn keeps it in 32 bits.
	Expires time.Time
	// IssuedAt is when its token was issued (iat), to the second; zero:
	// the token did not say (Conn.IssuedAt).
	IssuedAt time.Time
	// g is the connection WS writes through, which tells the Conn when
	// gorilla writes a close frame of its own (see gate); nil with br.
	g *gate
	// br is the buffer WS reads the network through, so that a Conn can
	// tell whether a frame is already buffered before it waits for the
	// network; nil when unknown (a socket upgraded by gorilla alone).
	br *bufio.Reader
	// m is what br reads the network through, which keeps the socket's
	// allowance of overhead (Limits.OverheadRate); nil with br.
	m *meter
}

// Upgrade is u.Upgrade with the socket reading the network through a
// buffer of ReadBufferSize that the returned Upgraded knows about, so an
// idle Conn can wait for data without being inside gorilla's read (see
// ReadLoop). u.ReadBufferSize must be 0, or gorilla uses its own buffer.
func Upgrade(u *websocket.Upgrader, w http.ResponseWriter, r *http.Request) (Upgraded, error) {
	if u.ReadBufferSize != 0 {
		return Upgraded{}, errors.New("ws: Upgrade needs an Upgrader with ReadBufferSize 0")
	}
	hw := &hijacker{ResponseWriter: w}
	wsc, err := u.Upgrade(hw, r, nil)
	if err != nil {
		return Upgraded{}, err
	}
	if hw.br == nil || hw.br.Buffered() > 0 {
		return Upgraded{WS: wsc}, nil
	}
	// gorilla has reset the buffer to read the connection itself; nothing
	// is buffered yet (it refuses a client that sent data early), so the
	// meter can take its place.
	hw.br.Reset(hw.m)
	return Upgraded{WS: wsc, g: hw.g, br: hw.br, m: hw.m}, nil
}

// hijacker hands gorilla a fresh read buffer of ReadBufferSize instead of
// net/http's 4 KB one, reading the network through a meter, and remembers
// both.
type hijacker struct {
	http.ResponseWriter
	g  *gate
	br *bufio.Reader
	m  *meter
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("ws: response does not implement http.Hijacker")
	}
	nc, brw, err := hj.Hijack()
	if err != nil || brw.Reader.Buffered() > 0 {
		// gorilla refuses a client that sent data before the handshake
		// ended; it must see that data to do so.
		return nc, brw, err
	}
	// The meter reads by raw system calls (package rawconn says why);
	// gorilla's writes go through the gate.
	h.m = &meter{net: rawconn.NewReader(nc)}
	h.br = bufio.NewReaderSize(nc, ReadBufferSize)
	h.g = &gate{Conn: nc}
	return h.g, bufio.NewReadWriter(h.br, brw.Writer), nil
}

// gate is the connection gorilla writes through. Once the socket is a
// Conn, gorilla writes only close frames: the Conn's own (writeClose),
// and the 1009 or 1002 it sends from the read loop when a client's frame
// is over the limit or breaks the protocol. Write marks the Conn's
// closeSent before it writes, and the Conn's writer checks closeSent
// under the socket's write lock before each batch (writeFrames), so no
// data frame can follow gorilla's close frame on the wire: learning of
// that close only from the read error, as before, let a batch checked
// earlier go out after it. The Conn writes its batches to the socket
// itself, never through the gate.
type gate struct {
	net.Conn
	sent *atomic.Bool // the Conn's closeSent; nil until NewConn (the handshake's response is no close)
}

func (g *gate) Write(p []byte) (int, error) {
	if g.sent != nil {
		g.sent.Store(true)
	}
	return g.Conn.Write(p)
}

// SetWriteDeadline is gorilla's, before each close frame once the socket
// is a Conn. The socket has one write deadline, and gorilla's (a second
// from now for the 1009 and 1002 it sends from the read loop) would cut
// short the WriteWait of a batch the writer is in the middle of sending,
// which its close frame waits behind: the socket would end with the
// batch cut off and no close frame at all. The deadline set is never
// sooner than WriteWait from now, for the batch and for the close.
func (g *gate) SetWriteDeadline(t time.Time) error {
	if g.sent != nil && !t.IsZero() {
		t = later(t, time.Now().Add(WriteWait))
	}
	return g.Conn.SetWriteDeadline(t)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
