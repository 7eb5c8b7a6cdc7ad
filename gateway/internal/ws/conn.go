package ws

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/ratelimit"
	"github.com/switchboard/switchboard/proto"
)

// Timing of the socket (docs/protocol.md section 2): the gateway pings every
// PingPeriod (by default: GATEWAY_PING_INTERVAL sets the worker's pinger)
// and closes a socket that has not answered for PongWait.
const (
	PingPeriod = 25 * time.Second
	PongWait   = 60 * time.Second
	// WriteWait bounds one write to the network.
	WriteWait = 10 * time.Second
	// CloseGrace is how long a closing socket waits for the peer's close.
	CloseGrace = 2 * time.Second
)

// pongWait is PongWait (nanoseconds), which the package's tests shorten
// (SetPongWait) while sockets of earlier tests may still read it.
var pongWait atomic.Int64

func init() { pongWait.Store(int64(PongWait)) }

// FrameHandler is what the read loop hands every data frame of the client
// to, text (valid UTF-8) or binary; what the frame means, and what to
// answer, is the handler's business. It runs on the read loop, so the next
// frame is read only after it returns. data is the read loop's buffer,
// reused for later frames: a handler that keeps any of it past its return
// copies it. (A frame refused unread, over a rate limit, then costs no
// allocation: frames are read into pooled buffers.)
type FrameHandler interface {
	HandleFrame(data []byte, binary bool)
}

// Limits bound one socket's outgoing queue. Overflowing either bound closes
// the socket with 1008 (slow consumer): a socket is dropped, never waited
// for. They also bound the pongs a client's pings get.
type Limits struct {
	QueueLen   int // frames
	QueueBytes int // bytes
	// Discarded, when set, is told how many queued frames a close drops
	// unsent (a slow consumer's queue, or after a failed write), and how
	// many the writer had taken and drops because gorilla's close frame
	// (1009, 1002) went out first or because their write failed (its
	// deadline passed, the peer reset the connection; a frame cut off
	// counts as dropped). It is called with the socket's lock held, or
	// on its writer, so it must be cheap.
	Discarded func(frames int)
	// PingRate and PingBurst are each socket's allowance of answered
	// pings: PingBurst at once, refilled at PingRate a second; 0 = every
	// ping is answered. A ping over it is not answered, and the socket
	// stays open: it still counts as a sign of life for the read deadline,
	// but a client cannot make the gateway write a pong for every ping of
	// a flood. Keepalive pings, one every few seconds, are all answered;
	// RFC 6455 has every ping answered (or the latest of those not yet
	// answered), which only a client over the allowance goes without.
	PingRate, PingBurst float64
	// PingsIgnored, when set, is called for every ping left unanswered;
	// it runs on the read loop, so it must be cheap.
	PingsIgnored func()
	// OverheadRate and OverheadBurst are each socket's allowance of
	// overhead: the bytes it reads that no data frame's payload accounts
	// for (frame headers, control frames, empty fragments), OverheadBurst
	// at once, refilled at OverheadRate a second; 0 = no bound. Over it,
	// the socket is not read until the allowance is back, so a flood of
	// tiny frames backs up into the client's buffers instead of keeping
	// the read loop busy; the socket stays open.
	OverheadRate, OverheadBurst float64
}

// keptBatchCap is the largest write batch buffer a socket keeps between
// bursts.
const keptBatchCap = 16

type item struct {
	data []byte
	ping bool
	pong bool // data is the payload of the client's ping
}

// Conn is one authenticated client socket.
type Conn struct {
	ws     *websocket.Conn
	br     *bufio.Reader         // what ws reads the network through; nil: unknown
	meter  *meter                // what br reads the network through; nil with br
	rc     syscall.RawConn       // the network socket, to wait for data on; nil: none
	wait   func(fd uintptr) bool // c.waitReadable, for rc.Read, bound once
	woke   bool                  // waitReadable has been called in this wait
	exp    uint32                // Upgraded.Expires in Unix seconds, 0 = never; in woke's padding, so free
	id     string
	user   string
	limits *Limits // shared by the worker's sockets; read only
	log    *zap.Logger

	mu          sync.Mutex
	queue       []item
	queuedBytes int
	writing     bool // a writer goroutine runs, or is held until ReadLoop starts
	closing     bool // no more frames are accepted
	closeCode   int
	closeReason string
	closedBy    Closer        // who closed it first
	peerClosed  bool          // the close frame to write echoes the client's
	drained     func()        // WhenDrained's: called when the writer next takes the queue
	closeSent   atomic.Bool   // a close frame is written or being written (gate): write nothing more
	iat         uint32        // Upgraded.IssuedAt in Unix seconds, 0 = unknown; in closeSent's padding, so free
	closed      chan struct{} // closed when closing is set
	done        chan struct{} // closed when the reader and writer are gone
	writerDone  chan struct{} // closed by the last writer after the close frame
	opened      int64         // UnixNano

	pings ratelimit.Allowance // of answered pings; the read loop's only
}

// NewConn wraps a socket of user, upgraded by Upgrade, with connection id id; log is
// shared by sockets (Conn adds the user and conn fields itself). Frames
// sent before ReadLoop starts are queued and held, so a caller can queue the
// first frame, register the socket for delivery, and only then let the
// writer run: the first frame is then both first on the wire and sent after
// registration.
func NewConn(u Upgraded, id, user string, limits *Limits, log *zap.Logger) *Conn {
	c := &Conn{
		ws:         u.WS,
		br:         u.br,
		id:         id,
		user:       user,
		limits:     limits,
		log:        log,
		writing:    true, // held until ReadLoop releases the writer
		closed:     make(chan struct{}),
		done:       make(chan struct{}),
		writerDone: make(chan struct{}),
		opened:     time.Now().UnixNano(),
	}
	if !u.Expires.IsZero() {
		c.exp = uint32(min(max(u.Expires.Unix(), 1), math.MaxUint32))
	}
	if !u.IssuedAt.IsZero() {
		c.iat = uint32(min(max(u.IssuedAt.Unix(), 1), math.MaxUint32))
	}
	if u.g != nil {
		u.g.sent = &c.closeSent
	}
	if u.m != nil {
		u.m.c = c
		c.meter = u.m
		// The socket's RawConn, which the meter reads through: asking
		// the socket for another would allocate one more per socket.
		c.rc = u.m.net.RawConn()
	}
	return c
}

// ID returns the connection id.
func (c *Conn) ID() string { return c.id }

// User returns the verified user id of the socket.
func (c *Conn) User() string { return c.user }

// IssuedAt returns when the socket's token was issued (Upgraded.IssuedAt,
// to the second); the zero time when the token did not say.
func (c *Conn) IssuedAt() time.Time {
	if c.iat == 0 {
		return time.Time{}
	}
	return time.Unix(int64(c.iat), 0)
}

// Expires returns when the socket's authorization ends (Upgraded.Expires,
// to the second); the zero time when it never does.
func (c *Conn) Expires() time.Time {
	if c.exp == 0 {
		return time.Time{}
	}
	return time.Unix(int64(c.exp), 0)
}

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Closing is closed once the socket is closing, by the gateway or the
// client: it accepts no more frames, and will end.
func (c *Conn) Closing() <-chan struct{} { return c.closed }

// Send queues one text frame. It never blocks; it reports false when the
// socket is closing or its queue overflowed (the socket is then closed with
// 1008). data must not be modified afterwards; it may be shared by many
// sockets.
func (c *Conn) Send(data []byte) bool {
	return c.enqueue(item{data: data})
}

// Queued returns how many frames (pings and pongs too) and bytes are
// queued and not yet taken by the writer: what counts against the bounds
// of Limits.
func (c *Conn) Queued() (frames, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue), c.queuedBytes
}

// WhenDrained arranges for f to be called once, when the writer next
// takes the queue to write it (the queue is then empty; its frames are
// being written), and reports true. When nothing is queued it keeps
// nothing and reports false. f runs on the writer's goroutine, holding no
// lock of the socket, and must not block; it is dropped, never called,
// when the socket drops its queue (a slow consumer, a failed write). Only
// the last f given is kept. It lets a sender feed the socket more than its
// queue holds, a part at a time, without being a slow consumer.
func (c *Conn) WhenDrained(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		c.drained = nil
		return false
	}
	c.drained = f
	return true
}

// Ping queues a ping; a socket that does not answer within PongWait of its
// last message is closed by the read deadline.
func (c *Conn) Ping() { c.enqueue(item{ping: true}) }

// pong queues the answer to a client's ping, within the socket's ping
// allowance (Limits.PingRate): a ping over it goes unanswered. It goes
// through the queue and its bounds like any frame, so the writer stays the
// socket's only writer (gorilla's own pong would set the connection's
// write deadline to 1 s under a batch being written) and a client that
// pings without reading is a slow consumer like any other. It runs on the
// read loop, from awaitData or gorilla's ping handler.
func (c *Conn) pong(payload string) error {
	c.extendReadDeadline()
	if !c.pings.Take(c.limits.PingRate, c.limits.PingBurst, time.Now()) {
		if c.limits.PingsIgnored != nil {
			c.limits.PingsIgnored()
		}
		return nil
	}
	c.enqueue(item{pong: true, data: []byte(payload)})
	return nil
}

// peerClose answers the client's close frame through the writer, instead of
// gorilla's echo from the read loop, so no data frame can follow it. The
// queue is dropped: a client that has sent its close discards what arrives.
func (c *Conn) peerClose(code int, _ string) error {
	c.mu.Lock()
	if !c.markClosing(ByClient, code, "closed by client", true) {
		c.mu.Unlock()
		return nil
	}
	c.peerClosed = true
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
	return nil
}

func (c *Conn) enqueue(it item) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	if len(c.queue) >= c.limits.QueueLen || c.queuedBytes+len(it.data) > c.limits.QueueBytes {
		c.mu.Unlock()
		c.Close(proto.ClosePolicy, proto.ReasonSlowConsumer)
		return false
	}
	c.queue = append(c.queue, it)
	c.queuedBytes += len(it.data)
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
	return true
}

// Close closes the socket with code and reason after the frames already
// queued (unless the close is for a slow consumer, whose queue is dropped).
// It never blocks and only the first call counts.
func (c *Conn) Close(code int, reason string) {
	c.mu.Lock()
	if !c.markClosing(ByGateway, code, reason, code == proto.ClosePolicy && reason == proto.ReasonSlowConsumer) {
		c.mu.Unlock()
		return
	}
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
}

// markClosing records the first close of the socket, by whom, and reports
// whether this was it; when drop is set the queued frames are discarded.
// c.mu must be held.
func (c *Conn) markClosing(by Closer, code int, reason string, drop bool) bool {
	if c.closing {
		return false
	}
	c.closing = true
	c.closedBy, c.closeCode, c.closeReason = by, code, reason
	if drop {
		c.discard()
	}
	close(c.closed)
	return true
}

// discard drops the queued frames, telling Limits.Discarded how many were
// data frames. c.mu must be held.
func (c *Conn) discard() {
	c.discarded(c.dataQueued())
	c.queue, c.queuedBytes = nil, 0
	c.drained = nil
}

// dataQueued counts the data frames in the queue (pings and pongs are
// not events). c.mu must be held.
func (c *Conn) dataQueued() int { return dataFrames(c.queue) }

// dataFrames counts the data frames of items.
func dataFrames(items []item) int {
	n := 0
	for _, it := range items {
		if !it.ping && !it.pong {
			n++
		}
	}
	return n
}

// discarded tells Limits.Discarded of n data frames dropped unsent.
func (c *Conn) discarded(n int) {
	if n > 0 && c.limits.Discarded != nil {
		c.limits.Discarded(n)
	}
}

// CloseCode returns the code and reason the socket was closed with, or 0
// and "" while it is open; ClosedBy says which side they came from.
func (c *Conn) CloseCode() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode, c.closeReason
}

// ClosedBy returns who closed the socket first, or ByNone while it is open.
func (c *Conn) ClosedBy() Closer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closedBy
}

// writeLoop drains the queue; it is the only writer of the socket while it
// runs and it exits when the queue is empty, or after the close frame.
func (c *Conn) writeLoop() {
	var batch []item
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			if !c.closing {
				c.writing = false
				c.mu.Unlock()
				return
			}
			code, reason := c.closeCode, c.closeReason
			c.mu.Unlock()
			c.writeClose(code, reason)
			return
		}
		batch, c.queue = c.queue, batch[:0]
		c.queuedBytes = 0
		drained := c.drained
		c.drained = nil
		c.mu.Unlock()
		if drained != nil {
			drained()
		}
		if c.closeSent.Load() {
			// gorilla closed the socket: nothing may follow its close frame.
			c.discarded(dataFrames(batch))
			clear(batch)
			continue
		}

		unsent, err := c.writeBatch(batch)
		if err != nil && !errors.Is(err, errCloseSent) {
			c.failWrite(err, unsent)
			return
		}
		c.discarded(unsent)
		clear(batch) // the frames may be large: do not keep them
		if cap(batch) > keptBatchCap {
			batch = nil // a burst's buffer is not kept by an idle socket
		}
	}
}

// Frames are written by the socket itself rather than through gorilla's
// WriteMessage, so that every frame queued by the time the writer runs goes
// out in one write system call: under load several frames wait for a
// socket, and a call per frame was most of the gateway's CPU time. Each
// batch is encoded into a pooled buffer, so an idle socket holds none.
// The writer is the socket's only writer while it runs: pongs and the echo
// of a client's close go through the queue (see pong and peerClose), and
// the gateway's close frame is written after the last batch. gorilla writes
// on its own only when it fails the read side (1009 over the read limit,
// 1002 on a protocol error), and then closeSent stops the writer, since the
// connection's shared write deadline and RFC 6455's "no data after a close
// frame" make anything written after that wrong.
const (
	maxBatchBytes = 64 << 10 // a batch buffer is flushed at this size, and pooled up to it
	opText        = 0x81     // FIN + text
	opPing        = 0x89     // FIN + ping
	opPong        = 0x8A     // FIN + pong
)

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// writeBatch writes the frames of batch, in order, in as few writes as it
// can, with one WriteWait deadline per write. It stops at a close frame
// gorilla sent (closeSent), or at a write that fails (err), and returns
// how many data frames of batch did not go out whole for that.
func (c *Conn) writeBatch(batch []item) (unsent int, err error) {
	bp := batchPool.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= maxBatchBytes {
			*bp = buf[:0]
			batchPool.Put(bp)
		}
	}()
	nc := c.netConn()
	// write writes p and then q, unless a close frame has gone out or is
	// going out: raw, the check and the write are under the socket's write
	// lock, which gorilla's writes take too (see gate).
	// It returns how many bytes it wrote.
	write := func(p, q []byte) (int, error) {
		if rawWrites && c.rc != nil {
			// A write the socket takes at once needs no deadline; only
			// one that has to wait gets WriteWait.
			return writeFrames(c.rc, nc, p, q, &c.closeSent)
		}
		if c.closeSent.Load() {
			return 0, errCloseSent
		}
		if err := nc.SetWriteDeadline(time.Now().Add(WriteWait)); err != nil {
			return 0, err
		}
		bufs := net.Buffers{p, q}
		n, err := bufs.WriteTo(nc)
		return int(n), err
	}
	flush := func() (int, error) {
		if len(buf) == 0 {
			return 0, nil
		}
		defer func() { buf = buf[:0] }()
		return write(buf, nil)
	}
	out := 0 // the items of batch before it are written
	for i, it := range batch {
		if c.closeSent.Load() {
			return dataFrames(batch[out:]), nil // buf's too go no further
		}
		if it.ping {
			buf = append(buf, opPing, 0)
			continue
		}
		if it.pong { // a control payload is at most 125 bytes (gorilla checks)
			buf = appendFrameHeader(buf, opPong, len(it.data))
			buf = append(buf, it.data...)
			continue
		}
		if len(buf)+len(it.data)+10 > maxBatchBytes {
			if n, err := flush(); err != nil {
				return unsentAt(batch[out:], n, err)
			}
			out = i
			if len(it.data)+10 > maxBatchBytes {
				// Too big to copy: the header, then the payload, under
				// one hold of the socket's write lock.
				if n, err := write(appendFrameHeader(buf, opText, len(it.data)), it.data); err != nil {
					return unsentAt(batch[out:], n, err)
				}
				out = i + 1
				continue
			}
		}
		buf = appendFrameHeader(buf, opText, len(it.data))
		buf = append(buf, it.data...)
	}
	if n, err := flush(); err != nil {
		return unsentAt(batch[out:], n, err)
	}
	return 0, nil
}

// unsentAt is writeBatch's answer to a write that failed with err after
// it had written n bytes, rest the items from the first of that write on:
// how many data frames of rest did not go out whole. That is all of them
// when a close frame went first (nothing was written); when the write
// itself failed (its deadline, a connection reset) the socket fails
// (failWrite), and the frames cut off or never reached are as lost as
// those still queued. It runs only on a failed write, so the hot path
// pays nothing for the frames' sizes.
func unsentAt(rest []item, n int, err error) (int, error) {
	for i, it := range rest {
		size := 2 // a ping
		if !it.ping {
			size = frameHeaderLen(len(it.data)) + len(it.data)
		}
		if n < size {
			return dataFrames(rest[i:]), err
		}
		n -= size
	}
	return 0, err
}

// frameHeaderLen is the length of appendFrameHeader's header for n bytes
// of payload.
func frameHeaderLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xffff:
		return 4
	default:
		return 10
	}
}

// errCloseSent is a write not made because a close frame went out (or
// was going out) first: nothing may follow it (RFC 6455 section 5.5.1).
var errCloseSent = errors.New("ws: close frame sent")

// netConn returns the socket WS reads and writes, under the gate.
func (c *Conn) netConn() net.Conn {
	nc := c.ws.NetConn()
	if g, ok := nc.(*gate); ok {
		return g.Conn
	}
	return nc
}

// appendFrameHeader appends the header of an unmasked, unfragmented server
// frame (RFC 6455 section 5.2) with opcode op and n bytes of payload.
func appendFrameHeader(dst []byte, op byte, n int) []byte {
	switch {
	case n <= 125:
		return append(dst, op, byte(n))
	case n <= 0xffff:
		return append(dst, op, 126, byte(n>>8), byte(n))
	default:
		return append(dst, op, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// failWrite ends a socket whose write failed with err: nothing more can be
// sent. unsent data frames of the writer's batch did not go out whole;
// they and those still queued are told to Limits.Discarded, and the log
// line says how many were dropped, and why (err: the write deadline, a
// broken pipe, a reset).
func (c *Conn) failWrite(err error, unsent int) {
	c.discarded(unsent)
	c.mu.Lock()
	queued := c.dataQueued()
	if !c.markClosing(ByGateway, websocket.CloseAbnormalClosure, "write failed", true) {
		c.discard() // closing already, with frames still queued behind the failed write
	}
	c.mu.Unlock()
	c.log.Debug("write failed", zap.String("user", c.user), zap.String("conn", c.id),
		zap.Int("dropped", unsent+queued), zap.Error(err))
	_ = c.ws.NetConn().Close() // unblocks the reader
	close(c.writerDone)
}

func (c *Conn) writeClose(code int, reason string) {
	c.mu.Lock()
	if c.peerClosed {
		reason = "" // an echo carries the client's code only
	}
	c.mu.Unlock()
	// 1006 (the connection ended under gorilla: a client that shut down
	// its side, a reset) and 1015 name what happened to a connection, and
	// RFC 6455 section 7.4.1 forbids them in a close frame: a browser
	// fails the connection on one. The socket then ends without a frame.
	if !c.closeSent.Load() && code != websocket.CloseAbnormalClosure && code != websocket.CloseTLSHandshake {
		msg := websocket.FormatCloseMessage(code, reason)
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(WriteWait))
	}
	// Give the peer CloseGrace to answer; the reader then sees its close
	// frame, or the deadline, and ends the connection.
	_ = c.ws.NetConn().SetReadDeadline(time.Now().Add(CloseGrace))
	close(c.writerDone)
}

// ReadLoop reads frames until the socket ends and hands each data frame to
// h. It enforces the read limit (1009), UTF-8 in text frames (1007) and
// the pong deadline, and answers pings. It returns after the socket is
// closed and the writer has finished; call it once.
func (c *Conn) ReadLoop(h FrameHandler, maxFrame int64) {
	defer c.finish()
	c.ws.SetReadLimit(maxFrame)
	_ = c.ws.SetReadDeadline(time.Now().Add(time.Duration(pongWait.Load())))
	c.ws.SetPongHandler(func(string) error {
		c.extendReadDeadline()
		return nil
	})
	c.ws.SetPingHandler(c.pong)
	c.ws.SetCloseHandler(c.peerClose)
	// Only now the writer: a socket closed before ReadLoop (a shutdown, a
	// refused resume) has its close frame written at once, and writeClose
	// sets the read deadline to CloseGrace, which the PongWait above must
	// not replace.
	go c.writeLoop() // releases the frames held since NewConn
	for {
		c.awaitData()
		if err := c.readFrame(h); err != nil {
			c.readFailed(err)
			return
		}
	}
}

// readFrame reads the next message into a pooled buffer and hands it on
// (frame); the buffer goes back to the pool after. gorilla's ReadMessage
// would allocate each message anew, growing it by doubling: for a client
// that sends large frames faster than it is allowed, the garbage of the
// frames the forwarder refuses unread was most of what they cost.
//
//go:noinline
func (c *Conn) readFrame(h FrameHandler) error {
	mt, r, err := c.ws.NextReader()
	if err != nil {
		return err
	}
	buf := framePool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledFrame {
			buf.Reset()
			framePool.Put(buf)
		}
	}()
	if c.meter != nil {
		// Read through the meter's payload, which gives the message's
		// bytes back to the socket's allowance of overhead.
		c.meter.msg = r
		r = (*payload)(c.meter)
	}
	_, err = buf.ReadFrom(r)
	if c.meter != nil {
		c.meter.msg = nil
	}
	if err != nil {
		return err
	}
	c.frame(h, mt, buf.Bytes())
	return nil
}

// maxPooledFrame is the largest read buffer kept for reuse.
const maxPooledFrame = 64 << 10

var framePool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// frame checks or hands on one message of the client. It is a function of
// its own, not part of ReadLoop's body, so that ReadLoop's stack frame,
// which an idle socket keeps, stays small (see awaitData).
//
//go:noinline
func (c *Conn) frame(h FrameHandler, mt int, data []byte) {
	select {
	case <-c.closed:
		return // closing: drain until the peer's close frame or the grace deadline
	default:
	}
	binary := mt == websocket.BinaryMessage
	if !binary && !utf8.Valid(data) {
		c.Close(proto.CloseInvalidData, "text frame is not valid UTF-8")
		return
	}
	c.handle(h, data, binary)
	// The read deadline runs from here, not from the frame's arrival: h
	// may wait (the forwarder's read loop for a request slot, up to a
	// handler timeout), and nothing is read meanwhile, though the client
	// may be answering every ping. That wait is not the client's silence.
	c.extendReadDeadline()
}

// awaitData returns once the socket has a message to read, or something
// else for ReadMessage to report: a frame already buffered, data on the
// network, its end, an error or the read deadline.
//
// An idle socket waits here, a few calls deep, rather than deep inside
// gorilla's read: its goroutine then keeps the smallest stack, 2 KB instead
// of 4 KB, which was a fifth of the memory of an idle socket. For the same
// reason the pings and pongs that keep an idle socket alive are answered
// here when one is next, whole, in the read buffer: gorilla would answer
// them inside ReadMessage and then wait for the next message down there.
func (c *Conn) awaitData() {
	if c.rc == nil {
		return
	}
	if c.wait == nil {
		c.wait = c.waitReadable
	}
	for {
		if c.br.Buffered() == 0 {
			c.woke = false
			if err := c.rc.Read(c.wait); err != nil {
				return
			}
			// Data has arrived: one read fills the buffer with it.
			if _, err := c.br.Peek(1); err != nil {
				return // ReadMessage reads again and reports it
			}
		}
		b, _ := c.br.Peek(c.br.Buffered()) // buffered: reads nothing
		op, payload, size, ok := parseClientControl(b)
		if !ok {
			return
		}
		_, _ = c.br.Discard(size)
		if op == websocket.PingMessage {
			_ = c.pong(string(payload))
		} else {
			c.extendReadDeadline()
		}
	}
}

// waitReadable is the rc.Read callback of awaitData: true ends the wait,
// false waits until the socket is readable. The first call of a wait
// checks for data already received; a later call comes after the socket
// became readable, which needs no second look (should the wake-up have
// been spurious, the read that follows simply waits).
func (c *Conn) waitReadable(fd uintptr) bool {
	if c.woke {
		return true
	}
	c.woke = true
	return received(fd)
}

// handle runs h on one frame; a panic in it closes this socket only, with
// 1011, and is logged with its stack.
func (c *Conn) handle(h FrameHandler, data []byte, binary bool) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic handling a frame; closing the socket", zap.String("user", c.user), zap.String("conn", c.id),
				zap.Any("panic", r), zap.Stack("stack"))
			c.Close(proto.CloseInternalError, "internal error")
		}
	}()
	h.HandleFrame(data, binary)
}

// extendReadDeadline pushes the read deadline PongWait ahead unless the
// socket is closing, whose shorter grace deadline must stand. It reports
// whether the socket is still open.
func (c *Conn) extendReadDeadline() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	_ = c.ws.NetConn().SetReadDeadline(time.Now().Add(time.Duration(pongWait.Load())))
	return true
}

func (c *Conn) readFailed(err error) {
	var ce *websocket.CloseError
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		// gorilla has already sent 1009; record it and stop writing.
		c.closeSent.Store(true)
		c.mu.Lock()
		c.markClosing(ByGateway, proto.CloseMessageTooBig, "message too big", true)
		c.mu.Unlock()
	case errors.As(err, &ce):
		// The peer closed; peerClose has queued the echo (or the gateway
		// had closed first and this is the client's answer). gorilla's
		// 1006 is no close frame but a connection that ended under it.
		by, reason := ByClient, "closed by client"
		if ce.Code == websocket.CloseAbnormalClosure {
			by, reason = ByNetwork, "connection lost"
		}
		c.mu.Lock()
		c.markClosing(by, ce.Code, reason, true)
		c.mu.Unlock()
	default:
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			c.Close(websocket.CloseGoingAway, "ping timeout")
		case !errors.As(err, &ne) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF):
			// A protocol error: gorilla has sent its close frame (1002).
			c.closeSent.Store(true)
		}
		c.mu.Lock()
		c.markClosing(ByNetwork, websocket.CloseAbnormalClosure, "connection lost", false)
		c.mu.Unlock()
	}
}

// finish waits for a running writer, then releases the socket.
func (c *Conn) finish() {
	c.mu.Lock()
	writing := c.writing
	c.mu.Unlock()
	if writing {
		select {
		case <-c.writerDone:
		case <-time.After(WriteWait + CloseGrace):
		}
	}
	_ = c.ws.NetConn().Close()
	close(c.done)
}

// Opened returns when the socket was accepted.
func (c *Conn) Opened() time.Time { return time.Unix(0, c.opened) }
