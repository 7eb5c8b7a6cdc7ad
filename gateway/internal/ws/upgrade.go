package ws

import (
	"bufio"
	"errors"
	"net"
	"net/http"
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
	return Upgraded{WS: wsc, br: hw.br, m: hw.m}, nil
}

// hijacker hands gorilla a fresh read buffer of ReadBufferSize instead of
// net/http's 4 KB one, reading the network through a meter, and remembers
// both.
type hijacker struct {
	http.ResponseWriter
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
	// gorilla's writes go through nc, as before.
	h.m = &meter{net: rawconn.NewReader(nc)}
	h.br = bufio.NewReaderSize(nc, ReadBufferSize)
	return nc, bufio.NewReadWriter(h.br, brw.Writer), nil
}
