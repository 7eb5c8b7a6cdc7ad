package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gorilla/websocket"
)

// sock is one client connection of the scenario: device dev of user.
type sock struct {
	g      *Generator
	ws     *websocket.Conn
	user   int
	dev    int
	worker int
	sendq  chan sendJob // load mode only; closed by stopWriters
	dead   atomic.Bool
	done   chan struct{} // closed when the reader has exited
}

type sendJob struct {
	run, seq int
	at       int64
}

// sendQueue is how many sends a socket's writer may have waiting; beyond it
// a send is counted as a client overflow rather than stall the schedule.
const sendQueue = 256

// dialer opens connections from a rotating set of 127.0.0.x source
// addresses, so more connections than the ephemeral port range fit.
type dialer struct {
	ws   websocket.Dialer
	srcs []net.IP
	next atomic.Uint64
}

func newDialer(sources int) *dialer {
	d := &dialer{}
	for i := range max(sources, 1) {
		d.srcs = append(d.srcs, net.IPv4(127, 0, 0, byte(1+i)))
	}
	d.ws = websocket.Dialer{
		HandshakeTimeout: 15 * time.Second,
		ReadBufferSize:   2048,
		WriteBufferSize:  512,
		WriteBufferPool:  &sync.Pool{},
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			src := d.srcs[d.next.Add(1)%uint64(len(d.srcs))]
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Control: bindNoPort}
			return nd.DialContext(ctx, network, addr)
		},
	}
	return d
}

// bindNoPort lets connect pick the source port by the whole 4-tuple, as it
// does without a bind, so ports in TIME_WAIT from an earlier run are reused
// rather than failing bind with "address already in use".
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// dial opens one socket for user with token and reads its connected frame.
func (d *dialer) dial(ctx context.Context, url, token string) (*websocket.Conn, int, error) {
	h := http.Header{"Authorization": {"Bearer " + token}}
	wsc, resp, err := d.ws.DialContext(ctx, url, h)
	if err != nil {
		if resp != nil {
			return nil, 0, fmt.Errorf("dial: %w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, 0, fmt.Errorf("dial: %w", err)
	}
	_ = wsc.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, data, err := wsc.ReadMessage()
	if err != nil {
		wsc.Close()
		return nil, 0, fmt.Errorf("connected frame: %w", err)
	}
	_ = wsc.SetReadDeadline(time.Time{})
	worker := -1
	if w := stringAfterNumber(data, []byte(`"worker":`)); w >= 0 {
		worker = w
	}
	return wsc, worker, nil
}

// stringAfterNumber returns the non-negative integer after key, or -1.
func stringAfterNumber(data, key []byte) int {
	for i := 0; i+len(key) <= len(data); i++ {
		if string(data[i:i+len(key)]) != string(key) {
			continue
		}
		n, j := 0, i+len(key)
		if j >= len(data) || data[j] < '0' || data[j] > '9' {
			return -1
		}
		for ; j < len(data) && data[j] >= '0' && data[j] <= '9'; j++ {
			n = n*10 + int(data[j]-'0')
		}
		return n
	}
	return -1
}

// readLoop reads frames until the socket ends and hands them to the
// current run.
func (s *sock) readLoop() {
	defer close(s.done)
	buf := make([]byte, 0, 512)
	for {
		_, r, err := s.ws.NextReader()
		if err != nil {
			if !s.g.closing.Load() {
				s.g.connsLost.Add(1)
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					s.g.noteClose(ce.Code, ce.Text)
				}
			}
			s.dead.Store(true)
			return
		}
		buf, err = readAll(r, buf[:0])
		if err != nil {
			continue // the next NextReader reports the failure
		}
		s.g.received(s, buf)
	}
}

// readAll appends r's content to buf, growing it as needed.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// writeLoop writes the sends handed to this socket, in order.
func (s *sock) writeLoop(wg *sync.WaitGroup) {
	defer wg.Done()
	var buf []byte
	partner := Partner(s.user)
	for job := range s.sendq {
		if s.dead.Load() {
			s.g.sendErrors.Add(1)
			continue
		}
		buf = appendSend(buf[:0], job.run, job.seq, partner, job.at)
		_ = s.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := s.ws.WriteMessage(websocket.TextMessage, buf); err != nil {
			s.g.sendErrors.Add(1)
		}
	}
}
