package loadgen

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sock is one client connection of the scenario: device dev of user.
//
// Its reader goroutine owns fr and reads the socket until it ends. Writes
// (sends from the scheduling goroutine, pongs and the close echo from the
// reader) never block: a frame goes straight to the socket when nothing is
// waiting, and the part the socket does not take waits in pending for a
// flusher goroutine, started then and ended once pending is empty.
type sock struct {
	g      *Generator
	nc     *net.TCPConn
	rc     syscall.RawConn
	user   int
	dev    int
	worker int
	dead   atomic.Bool
	done   chan struct{} // closed when the reader has exited

	// leaving is set when the generator closes the socket on purpose (a
	// device that goes away in the resume scenario): not a lost socket.
	leaving atomic.Bool
	// hello is the connected frame, kept when the dialer keeps them
	// (dialer.keepHello): the resume scenario reads its position.
	hello []byte
	// resume is the state of a socket that resumed, set before its reader
	// starts; nil for every other socket.
	resume *resumeSock
	// lastPos is the position of the last event the reader handled, kept
	// while a resume run is on (the reader's own until it exits).
	lastPos []byte

	// The reader's own.
	fr     frameReader
	readAt time.Time // when the frames being handled were read
	ctl    []byte    // a control frame being written

	wmu      sync.Mutex
	pending  []byte // frames the socket has not taken yet, in order
	npending int    // sends among them
	// refs are the sends among them that a tracker counts, taken back
	// (Tracker.Unsent) if the flusher fails to write them.
	refs     []sentRef
	waiting  int  // sends not yet taken: npending and those the flusher is writing
	flushing bool // a flusher goroutine writes pending
}

// sendQueue is how many sends may wait for a socket that does not take
// them; beyond it a send is counted as a client overflow rather than stall
// the schedule.
const sendQueue = 256

// writeWait bounds each blocking write of a flusher.
const writeWait = 10 * time.Second

// handshakeTimeout bounds a dial: connect, upgrade and the connected frame.
const handshakeTimeout = 15 * time.Second

// readBufSize is the size of the buffers a socket reads into. A read that
// fills one is followed by another; the gateway's frames are a few hundred
// bytes.
const readBufSize = 16 << 10

// dialer opens connections from a rotating set of 127.0.0.x source
// addresses, so more connections than the ephemeral port range fit.
type dialer struct {
	host      string // host:port
	path      string // request URI
	srcs      []net.IP
	next      atomic.Uint64
	keepHello bool // keep each socket's connected frame in sock.hello
}

func newDialer(rawURL string, sources int) (*dialer, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if u.Scheme != "ws" || u.Host == "" {
		return nil, fmt.Errorf("url %q: want ws://host:port/path", rawURL)
	}
	d := &dialer{host: u.Host, path: u.RequestURI()}
	if u.Port() == "" {
		d.host = net.JoinHostPort(u.Hostname(), "80")
	}
	for i := range max(sources, 1) {
		d.srcs = append(d.srcs, net.IPv4(127, 0, 0, byte(1+i)))
	}
	return d, nil
}

// websocketGUID is the constant of RFC 6455 section 1.3.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// errConnected stops the dialer's frame handler at the connected frame.
var errConnected = errors.New("connected frame")

// dial opens one socket with token, upgrades it and reads its connected
// frame. It returns the socket, not yet started, and the gateway worker
// that holds it (-1 if the frame does not say). query, if not empty, is
// added to the request URI's query (such as "resume=<pos>").
func (d *dialer) dial(ctx context.Context, token, query string) (*sock, int, error) {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	src := d.srcs[d.next.Add(1)%uint64(len(d.srcs))]
	nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Control: bindNoPort}
	c, err := nd.DialContext(ctx, "tcp", d.host)
	if err != nil {
		return nil, 0, fmt.Errorf("dial: %w", err)
	}
	s := &sock{nc: c.(*net.TCPConn), done: make(chan struct{})}
	path := d.path
	if query != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + query
	}
	worker, hello, err := s.handshake(ctx, d.host, path, token)
	if err != nil {
		_ = s.nc.Close()
		return nil, 0, err
	}
	if d.keepHello {
		s.hello = hello
	}
	return s, worker, nil
}

// handshake upgrades the connection (RFC 6455 section 4.1) and reads the
// connected frame, which it returns with the worker it names; frames after
// it stay in s.fr for the reader.
func (s *sock) handshake(ctx context.Context, host, path, token string) (int, []byte, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = s.nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var nonce [16]byte
	binary.LittleEndian.PutUint64(nonce[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(nonce[8:], rand.Uint64())
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key +
		"\r\nAuthorization: Bearer " + token + "\r\n\r\n"
	if _, err := io.WriteString(s.nc, req); err != nil {
		return 0, nil, fmt.Errorf("dial: %w", err)
	}
	br := bufio.NewReaderSize(s.nc, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("dial: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return 0, nil, fmt.Errorf("dial: bad handshake (HTTP %d)", resp.StatusCode)
	}
	sum := sha1.Sum([]byte(key + websocketGUID))
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") ||
		resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return 0, nil, errors.New("dial: bad handshake (no WebSocket upgrade)")
	}
	rc, err := s.nc.SyscallConn()
	if err != nil {
		return 0, nil, fmt.Errorf("dial: %w", err)
	}
	s.rc = rc

	var connected []byte
	h := func(op byte, payload []byte) error {
		switch op {
		case opText, opBinary:
			connected = append([]byte(nil), payload...)
			return errConnected
		case opPing:
			_, err := s.nc.Write(appendClientFrame(nil, opPong, payload, rand.Uint32()))
			return err
		case opClose:
			return parseClose(payload)
		}
		return nil
	}
	early, _ := br.Peek(br.Buffered())
	err = s.fr.feed(early, h)
	buf := make([]byte, 4096)
	for err == nil {
		n, rerr := s.nc.Read(buf)
		err = s.fr.feed(buf[:n], h)
		if err == nil && rerr != nil {
			err = rerr
		}
	}
	if err != errConnected {
		return 0, nil, fmt.Errorf("connected frame: %w", err)
	}
	if !stop() { // the context ended, and set a deadline in the past
		return 0, nil, fmt.Errorf("connected frame: %w", ctx.Err())
	}
	_ = s.nc.SetDeadline(time.Time{})
	s.readAt = time.Now() // frames read with the connected frame, which the reader handles first
	worker := -1
	if w := stringAfterNumber(connected, []byte(`"worker":`)); w >= 0 {
		worker = w
	}
	return worker, connected, nil
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
		for ; j < len(data) && data[j] >= '0' && data[j] <= '9' && n < 1<<40; j++ {
			n = n*10 + int(data[j]-'0')
		}
		return n
	}
	return -1
}

// readLoop reads frames until the socket ends and hands them to the
// current run, then closes the socket.
func (s *sock) readLoop() {
	defer close(s.done)
	err := s.fr.feed(nil, s.onFrame) // what came with the connected frame
	if err == nil {
		err = s.readFrames()
	}
	s.dead.Store(true)
	if !s.g.closing.Load() && !s.leaving.Load() {
		s.g.connsLost.Add(1)
		var cf *closeFrame
		switch {
		case errors.As(err, &cf):
			s.g.noteClose(cf.code, cf.reason)
		case errors.Is(err, errProtocol):
			s.g.cfg.Log("u%d device %d: %v", s.user, s.dev, err)
		}
	}
	_ = s.nc.Close()
}

// readFrames reads the socket until it fails, the server closes it or a
// frame breaks the protocol, and returns why.
//
// It reads the way Go's own net.Conn does, with one difference: a read
// that returns less than the buffer has emptied the socket's receive
// queue, so instead of asking again (one more system call per frame, which
// returns EAGAIN) it waits for the poller. The socket is registered
// edge-triggered, and data arriving after that read raises a new edge. The
// whole loop runs inside one RawConn.Read, because each call of it starts
// by discarding the poller's readiness.
func (s *sock) readFrames() error {
	var err error
	rerr := s.rc.Read(func(fd uintptr) bool {
		for {
			bp := s.g.readBufs.Get().(*[]byte)
			buf := *bp
			n, e := rawRecv(fd, buf)
			if e == nil && n > 0 {
				s.readAt = time.Now()
				e = s.fr.feed(buf[:n], s.onFrame)
			}
			s.g.readBufs.Put(bp)
			switch {
			case e == unix.EINTR:
				continue
			case e == unix.EAGAIN:
				return false
			case e != nil:
				err = e
				return true
			case n == 0:
				err = io.EOF
				return true
			case n < len(buf):
				return false
			}
		}
	})
	if err == nil {
		err = rerr
	}
	return err
}

// onFrame handles one message or control frame from the server.
func (s *sock) onFrame(op byte, payload []byte) error {
	switch op {
	case opText, opBinary:
		s.g.received(s, payload, s.readAt)
	case opPing:
		s.ctl = appendClientFrame(s.ctl[:0], opPong, payload, rand.Uint32())
		s.write(s.ctl, false)
	case opClose:
		cf := parseClose(payload)
		s.ctl = appendClientFrame(s.ctl[:0], opClose, payload[:min(len(payload), 2)], rand.Uint32())
		s.write(s.ctl, false)
		return cf
	}
	return nil
}

// writeResult is what became of a frame handed to write.
type writeResult int

const (
	written    writeResult = iota // the socket took it
	queued                        // it waits for the flusher
	overflowed                    // dropped: sendQueue sends were waiting already
	failed                        // the socket failed
)

// sentRef names a send a tracker counts: send seq of t.
type sentRef struct {
	t   *Tracker
	seq int
}

// write writes one frame without blocking: straight to the socket when
// nothing waits for it, else after what does. send tells a scenario send
// (which counts against sendQueue) from a control frame.
func (s *sock) write(frame []byte, send bool) writeResult {
	return s.writeSend(frame, send, sentRef{})
}

// writeSend is write of a send that ref.t (when not nil) counts: queued,
// and then failed by the flusher, it is taken back from ref.t.
func (s *sock) writeSend(frame []byte, send bool, ref sentRef) writeResult {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.flushing {
		if send && s.waiting >= sendQueue {
			return overflowed
		}
		s.pending = append(s.pending, frame...)
		if send {
			s.npending++
			s.waiting++
			if ref.t != nil {
				s.refs = append(s.refs, ref)
			}
		}
		return queued
	}
	n, err := s.writeNow(frame)
	if err != nil {
		return failed
	}
	if n == len(frame) {
		return written
	}
	// The socket took part of the frame: the rest must go out before
	// anything else, whenever the socket takes it.
	s.pending = append(s.pending[:0], frame[n:]...)
	s.npending, s.waiting = 0, 0
	s.refs = s.refs[:0]
	if send {
		s.npending, s.waiting = 1, 1
		if ref.t != nil {
			s.refs = append(s.refs, ref)
		}
	}
	s.flushing = true
	s.g.flushStarted()
	go s.flush()
	return queued
}

// writeNow makes one non-blocking write of b and returns how much of it the
// socket took.
func (s *sock) writeNow(b []byte) (int, error) {
	var n int
	var werr error
	err := s.rc.Write(func(fd uintptr) bool {
		for {
			n, werr = rawSend(fd, b)
			if werr != unix.EINTR {
				return true
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if werr == unix.EAGAIN {
		return 0, nil
	}
	if werr != nil {
		return 0, werr
	}
	return n, nil
}

// flush writes pending until it is empty, blocking up to writeWait per
// write. Sends in a write that fails are counted as send errors, and taken
// back from their trackers.
func (s *sock) flush() {
	defer s.g.flushEnded()
	var buf []byte
	var spare []sentRef
	for {
		s.wmu.Lock()
		if len(s.pending) == 0 {
			s.flushing = false
			s.pending = buf[:0] // the spare buffer, so the next flush reuses it
			if cap(s.pending) > keptBufCap {
				s.pending = nil
			}
			s.wmu.Unlock()
			return
		}
		out, sends, refs := s.pending, s.npending, s.refs
		s.pending, s.npending, s.refs = buf[:0], 0, spare[:0]
		s.wmu.Unlock()
		_ = s.nc.SetWriteDeadline(time.Now().Add(writeWait))
		if _, err := s.nc.Write(out); err != nil {
			s.g.sendErrors.Add(int64(sends))
			for _, r := range refs {
				r.t.Unsent(r.seq)
			}
		}
		buf, spare = out, refs
		s.wmu.Lock()
		s.waiting -= sends
		s.wmu.Unlock()
	}
}
