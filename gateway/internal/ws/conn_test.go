package ws_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wait = 5 * time.Second

var defaultLimits = ws.Limits{QueueLen: 256, QueueBytes: 1 << 20}

// frame is one data frame as the read loop handed it on.
type frame struct {
	data   []byte
	binary bool
}

// recorder is a FrameHandler that hands every frame to a channel.
type recorder struct {
	frames chan frame
}

// HandleFrame copies data: it is the read loop's buffer, reused after.
func (r *recorder) HandleFrame(data []byte, binary bool) {
	r.frames <- frame{bytes.Clone(data), binary}
}

// server is a real HTTP server that upgrades every request with ws.Upgrade,
// wraps the socket in a ws.Conn for user "alice" and runs its read loop.
type server struct {
	srv   *httptest.Server
	conns chan *ws.Conn
	rec   *recorder
}

func startServer(t *testing.T, limits ws.Limits, maxFrame int64) *server {
	t.Helper()
	return startServerWith(t, limits, maxFrame, nil)
}

// startServerWith is startServer with the read loop handing frames to h
// instead of the server's recorder.
func startServerWith(t *testing.T, limits ws.Limits, maxFrame int64, h ws.FrameHandler) *server {
	t.Helper()
	return startServerSendBuf(t, limits, maxFrame, h, 0)
}

// startServerSendBuf is startServerWith with each accepted socket's send
// buffer set to sendBuf bytes (0: the system's), so that a small one makes
// the writer's sends often find it full.
func startServerSendBuf(t *testing.T, limits ws.Limits, maxFrame int64, h ws.FrameHandler, sendBuf int) *server {
	t.Helper()
	return startServerLog(t, limits, maxFrame, h, sendBuf, zap.NewNop())
}

// startServerLog is startServerSendBuf with the sockets logging to log.
func startServerLog(t *testing.T, limits ws.Limits, maxFrame int64, h ws.FrameHandler, sendBuf int, log *zap.Logger) *server {
	t.Helper()
	s := &server{conns: make(chan *ws.Conn, 256), rec: &recorder{frames: make(chan frame, 1024)}}
	if h == nil {
		h = s.rec
	}
	up := websocket.Upgrader{}
	var n int
	var mu sync.Mutex
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := ws.Upgrade(&up, w, r)
		if err != nil {
			return
		}
		if tc, ok := ws.UpgradedNetConn(u).(*net.TCPConn); ok && sendBuf > 0 {
			_ = tc.SetWriteBuffer(sendBuf)
		}
		mu.Lock()
		n++
		id := fmt.Sprintf("c%d", n)
		mu.Unlock()
		c := ws.NewConn(u, id, "alice", &limits, log)
		s.conns <- c
		c.ReadLoop(h, maxFrame)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// dial connects a gorilla client and returns it with the server's Conn. When
// the test ends the client is closed and the server's Conn awaited.
func (s *server) dial(t *testing.T, d *websocket.Dialer) (*websocket.Conn, *ws.Conn) {
	t.Helper()
	if d == nil {
		d = websocket.DefaultDialer
	}
	cl, _, err := d.Dial("ws"+strings.TrimPrefix(s.srv.URL, "http"), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	var c *ws.Conn
	select {
	case c = <-s.conns:
	case <-time.After(wait):
		t.Fatal("server did not accept the socket")
	}
	t.Cleanup(func() {
		_ = cl.Close()
		select {
		case <-c.Done():
		case <-time.After(ws.WriteWait + ws.CloseGrace + wait):
			t.Errorf("conn %s not done after the client went away", c.ID())
		}
	})
	return cl, c
}

// read reads one message with a deadline.
func read(t *testing.T, cl *websocket.Conn) (int, []byte, error) {
	t.Helper()
	_ = cl.SetReadDeadline(time.Now().Add(wait))
	return cl.ReadMessage()
}

// readClose reads until the server's close frame and returns it.
func readClose(t *testing.T, cl *websocket.Conn) *websocket.CloseError {
	t.Helper()
	for {
		_, data, err := read(t, cl)
		if err == nil {
			t.Logf("frame before close: %s", data)
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("read: %v, want a close frame", err)
		}
		return ce
	}
}

func waitDone(t *testing.T, c *ws.Conn, timeout time.Duration) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(timeout):
		t.Fatalf("conn %s not done within %s", c.ID(), timeout)
	}
}

func TestSendInOrder(t *testing.T) {
	const n = 500
	s := startServer(t, ws.Limits{QueueLen: n, QueueBytes: 1 << 20}, 65536)
	cl, c := s.dial(t, nil)
	for i := range n {
		if !c.Send(fmt.Appendf(nil, `{"n":%d}`, i)) {
			t.Fatalf("Send %d refused", i)
		}
	}
	for i := range n {
		mt, data, err := read(t, cl)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if want := fmt.Sprintf(`{"n":%d}`, i); mt != websocket.TextMessage || string(data) != want {
			t.Fatalf("frame %d = type %d %s, want text %s", i, mt, data, want)
		}
	}
}

// TestSendFrameSizes covers every length encoding of the frame header and
// batches of them: queued frames of any size, pings among them, arrive
// intact and in order, including ones too big to share a write.
func TestSendFrameSizes(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 127, 1000, 65535, 65536, 70000, 200000, 3}
	s := startServer(t, ws.Limits{QueueLen: 64, QueueBytes: 4 << 20}, 65536)
	cl, c := s.dial(t, nil)
	var want [][]byte
	for i, n := range sizes {
		data := bytes.Repeat([]byte{'a' + byte(i)}, n)
		want = append(want, data)
		if !c.Send(data) {
			t.Fatalf("Send of %d bytes refused", n)
		}
		if i%3 == 0 {
			c.Ping()
		}
	}
	for i, w := range want {
		mt, data, err := read(t, cl)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if mt != websocket.TextMessage || !bytes.Equal(data, w) {
			t.Fatalf("frame %d: type %d, %d bytes, want text of %d bytes", i, mt, len(data), len(w))
		}
	}
}

// TestSendWaitsForRoom: frames queued while the client reads nothing fill
// the socket's buffers, so a batch goes out in part at once and the rest
// waits for room (with its write deadline); when the client reads, every
// frame arrives whole and in order.
func TestSendWaitsForRoom(t *testing.T) {
	const n, size = 96, 48 << 10 // 4.5 MiB: well past loopback's buffers; each frame below a batch buffer
	s := startServer(t, ws.Limits{QueueLen: n, QueueBytes: n * size}, 65536)
	cl, c := s.dial(t, &websocket.Dialer{ReadBufferSize: 1024})
	var want [][]byte
	for i := range n {
		data := bytes.Repeat([]byte{'a' + byte(i%26)}, size)
		data[0] = byte('0' + i%10)
		want = append(want, data)
		if !c.Send(data) {
			t.Fatalf("Send %d refused", i)
		}
	}
	for i, w := range want {
		mt, data, err := read(t, cl)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if mt != websocket.TextMessage || !bytes.Equal(data, w) {
			t.Fatalf("frame %d: type %d, %d bytes, not the frame sent", i, mt, len(data))
		}
	}
	if code, _ := c.CloseCode(); code != 0 {
		t.Errorf("CloseCode = %d, want 0 (open)", code)
	}
}

// TestWhenDrainedFeedsMoreThanTheQueue: a sender that queues only what
// fits (Queued) and waits for the writer to take the queue (WhenDrained)
// sends 25 times what the queue holds, every frame arriving once and in
// order, and the socket is never a slow consumer. With nothing queued,
// WhenDrained keeps nothing.
func TestWhenDrainedFeedsMoreThanTheQueue(t *testing.T) {
	const n, size = 200, 1000
	limits := ws.Limits{QueueLen: 8, QueueBytes: 8 * size}
	s := startServer(t, limits, 65536)
	cl, c := s.dial(t, nil)
	if c.WhenDrained(func() { t.Error("called with nothing queued") }) {
		t.Fatal("WhenDrained kept a function with nothing queued")
	}
	drained := make(chan struct{}, 1)
	fed := make(chan int, 1)
	go func() {
		i, waits := 0, 0
		defer func() { fed <- waits }()
		for i < n {
			for i < n {
				frames, bytes := c.Queued()
				if frames+1 > limits.QueueLen || bytes+size > limits.QueueBytes {
					break
				}
				data := fmt.Appendf(nil, "%0*d", size, i)
				if !c.Send(data) {
					t.Errorf("Send %d refused", i)
					return
				}
				i++
			}
			if c.WhenDrained(func() { drained <- struct{}{} }) {
				waits++
				select {
				case <-drained:
				case <-c.Done():
					return
				}
			}
		}
	}()
	for i := range n {
		_, data, err := read(t, cl)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if want := fmt.Sprintf("%0*d", size, i); string(data) != want {
			t.Fatalf("frame %d is %.20s..., want %.20s...", i, data, want)
		}
	}
	if waits := <-fed; waits == 0 {
		t.Error("the sender never waited for the queue to drain")
	}
	if code, _ := c.CloseCode(); code != 0 {
		t.Errorf("CloseCode = %d, want 0 (open)", code)
	}
}

// TestSendConcurrent has many producers share one socket: every frame
// arrives once, and each producer's frames in its order.
func TestSendConcurrent(t *testing.T) {
	s := startServer(t, ws.Limits{QueueLen: 10000, QueueBytes: 1 << 22}, 65536)
	cl, c := s.dial(t, nil)
	const producers, each = 8, 200
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if !c.Send(fmt.Appendf(nil, `{"p":%d,"i":%d}`, p, i)) {
					t.Errorf("Send refused")
					return
				}
			}
		}()
	}
	next := make([]int, producers)
	for range producers * each {
		_, data, err := read(t, cl)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var f struct{ P, I int }
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		if f.I != next[f.P] {
			t.Fatalf("producer %d: frame %d arrived, want %d", f.P, f.I, next[f.P])
		}
		next[f.P]++
	}
	wg.Wait()
}

func TestReadLoopHandsTextFrames(t *testing.T) {
	s := startServer(t, defaultLimits, 65536)
	cl, _ := s.dial(t, nil)
	sent := []string{`{"event":"a"}`, `{"event":"b","args":[1,2]}`, `not even json`, "héllo ✓"}
	for _, m := range sent {
		if err := cl.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	var got [][]byte
	for range sent {
		select {
		case f := <-s.rec.frames:
			if f.binary {
				t.Errorf("text frame %q handed on as binary", f.data)
			}
			got = append(got, f.data)
		case <-time.After(wait):
			t.Fatalf("handler got %q, want %q", got, sent)
		}
	}
	// The handler may keep what it was given: every slice is its own.
	for i, m := range sent {
		if string(got[i]) != m {
			t.Errorf("frame %d = %q, want %q", i, got[i], m)
		}
	}
}

// TestBinaryFrameHandedOn: a binary frame is the handler's to answer: the
// read loop hands it on, marked binary, answers nothing itself, and keeps
// the socket open.
func TestBinaryFrameHandedOn(t *testing.T) {
	s := startServer(t, defaultLimits, 65536)
	cl, c := s.dial(t, nil)
	sent := []struct {
		mt   int
		data string
	}{
		{websocket.BinaryMessage, "\x00\xff not UTF-8 and not JSON"},
		{websocket.TextMessage, `{"event":"after"}`},
	}
	for _, m := range sent {
		if err := cl.WriteMessage(m.mt, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range sent {
		select {
		case f := <-s.rec.frames:
			if string(f.data) != m.data || f.binary != (m.mt == websocket.BinaryMessage) {
				t.Errorf("handler got %q (binary %v), want %q (binary %v)", f.data, f.binary, m.data, m.mt == websocket.BinaryMessage)
			}
		case <-time.After(wait):
			t.Fatalf("frame %q did not reach the handler", m.data)
		}
	}
	c.Send([]byte(`{"last":true}`))
	if _, data, err := read(t, cl); err != nil || string(data) != `{"last":true}` {
		t.Errorf("first frame to the client = %q, %v; want only what the gateway sent", data, err)
	}
	if code, _ := c.CloseCode(); code != 0 {
		t.Errorf("CloseCode = %d, want 0 (open)", code)
	}
}

func TestBadInputCloses(t *testing.T) {
	const maxFrame = 1024
	tests := []struct {
		name   string
		write  func(cl *websocket.Conn) error
		dialer *websocket.Dialer
		code   int
	}{
		{name: "invalid UTF-8", code: proto.CloseInvalidData, write: func(cl *websocket.Conn) error {
			return cl.WriteMessage(websocket.TextMessage, []byte{'{', 0xff, 0xfe, '}'})
		}},
		{name: "truncated UTF-8 sequence", code: proto.CloseInvalidData, write: func(cl *websocket.Conn) error {
			return cl.WriteMessage(websocket.TextMessage, []byte("caf\xc3"))
		}},
		{name: "oversized frame", code: proto.CloseMessageTooBig, write: func(cl *websocket.Conn) error {
			return cl.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("a"), maxFrame+1))
		}},
		{name: "oversized binary frame", code: proto.CloseMessageTooBig, write: func(cl *websocket.Conn) error {
			return cl.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte("a"), 4*maxFrame))
		}},
		{name: "oversized in small fragments", code: proto.CloseMessageTooBig,
			dialer: &websocket.Dialer{WriteBufferSize: 256},
			write: func(cl *websocket.Conn) error {
				w, err := cl.NextWriter(websocket.TextMessage)
				if err != nil {
					return err
				}
				// Each write fills the 256-byte buffer at most, so the
				// message goes out as many fragments below the limit.
				for range 8 {
					if _, err := w.Write(bytes.Repeat([]byte("b"), 200)); err != nil {
						return err
					}
				}
				return w.Close()
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, defaultLimits, maxFrame)
			cl, c := s.dial(t, tt.dialer)
			// The server may stop reading before a large message is all
			// written, so a failed write is not the test's verdict: what
			// the client reads is.
			if err := tt.write(cl); err != nil {
				t.Logf("write: %v", err)
			}
			if ce := readClose(t, cl); ce.Code != tt.code {
				t.Errorf("client saw close %d %q, want %d", ce.Code, ce.Text, tt.code)
			}
			waitDone(t, c, wait)
			if code, _ := c.CloseCode(); code != tt.code {
				t.Errorf("CloseCode = %d, want %d", code, tt.code)
			}
			select {
			case f := <-s.rec.frames:
				t.Errorf("handler got %q from a frame that must be refused", f.data)
			default:
			}
		})
	}
}

func TestFrameAtTheLimitIsAccepted(t *testing.T) {
	const maxFrame = 1024
	s := startServer(t, defaultLimits, maxFrame)
	cl, _ := s.dial(t, &websocket.Dialer{WriteBufferSize: 256})
	w, err := cl.NextWriter(websocket.TextMessage)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(bytes.Repeat([]byte("x"), maxFrame)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-s.rec.frames:
		if len(got.data) != maxFrame {
			t.Errorf("handler got %d bytes, want %d", len(got.data), maxFrame)
		}
	case <-time.After(wait):
		t.Fatal("a frame of exactly the max size did not reach the handler")
	}
}

func TestClose(t *testing.T) {
	tests := []struct {
		name       string
		do         func(c *ws.Conn)
		wantFrames []string
		wantCode   int
		wantReason string
	}{
		{name: "going away with a reason", do: func(c *ws.Conn) { c.Close(proto.CloseGoingAway, "gateway shutting down") },
			wantCode: proto.CloseGoingAway, wantReason: "gateway shutting down"},
		{name: "normal without a reason", do: func(c *ws.Conn) { c.Close(proto.CloseNormal, "") },
			wantCode: proto.CloseNormal},
		{name: "after the queued frames", do: func(c *ws.Conn) {
			c.Send([]byte(`{"n":1}`))
			c.Send([]byte(`{"n":2}`))
			c.Close(proto.CloseGoingAway, "bye")
		}, wantFrames: []string{`{"n":1}`, `{"n":2}`}, wantCode: proto.CloseGoingAway, wantReason: "bye"},
		{name: "only the first close counts", do: func(c *ws.Conn) {
			c.Close(proto.CloseGoingAway, "first")
			c.Close(proto.CloseNormal, "second")
		}, wantCode: proto.CloseGoingAway, wantReason: "first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, defaultLimits, 65536)
			cl, c := s.dial(t, nil)
			tt.do(c)
			if c.Send([]byte(`{"late":true}`)) {
				t.Error("Send after Close reported true")
			}
			var got []string
			var ce *websocket.CloseError
			for ce == nil {
				_, data, err := read(t, cl)
				if err != nil {
					if !errors.As(err, &ce) {
						t.Fatalf("read: %v, want a close frame", err)
					}
					break
				}
				got = append(got, string(data))
			}
			if strings.Join(got, " ") != strings.Join(tt.wantFrames, " ") {
				t.Errorf("frames before the close = %q, want %q", got, tt.wantFrames)
			}
			if ce.Code != tt.wantCode || ce.Text != tt.wantReason {
				t.Errorf("client saw close %d %q, want %d %q", ce.Code, ce.Text, tt.wantCode, tt.wantReason)
			}
			waitDone(t, c, wait)
			if code, reason := c.CloseCode(); code != tt.wantCode || reason != tt.wantReason {
				t.Errorf("CloseCode = %d %q, want %d %q", code, reason, tt.wantCode, tt.wantReason)
			}
			if by := c.ClosedBy(); by != ws.ByGateway {
				t.Errorf("ClosedBy = %d, want ByGateway (the client answered the gateway's close)", by)
			}
		})
	}
}

func TestClientCloses(t *testing.T) {
	tests := []struct {
		name       string
		close      func(cl *websocket.Conn) error
		wantCode   int
		wantReason string // what the worker logs as the socket's reason
		wantBy     ws.Closer
	}{
		{"close frame", func(cl *websocket.Conn) error {
			return cl.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(wait))
		}, websocket.CloseNormalClosure, "closed by client", ws.ByClient},
		{"close frame going away", func(cl *websocket.Conn) error {
			return cl.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(wait))
		}, websocket.CloseGoingAway, "closed by client", ws.ByClient},
		// A backend's code, sent by the client itself: still the client's close.
		{"close frame with 4003", func(cl *websocket.Conn) error {
			return cl.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(proto.CloseDisconnected, "closed by client"), time.Now().Add(wait))
		}, proto.CloseDisconnected, "closed by client", ws.ByClient},
		// No close frame: not the client's close, whatever gorilla's error
		// type says.
		{"connection dropped", func(cl *websocket.Conn) error { return cl.NetConn().Close() }, websocket.CloseAbnormalClosure, "connection lost", ws.ByNetwork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, defaultLimits, 65536)
			cl, c := s.dial(t, nil)
			if err := tt.close(cl); err != nil {
				t.Fatal(err)
			}
			waitDone(t, c, wait)
			if code, reason := c.CloseCode(); code != tt.wantCode || reason != tt.wantReason {
				t.Errorf("CloseCode = %d %q, want %d %q", code, reason, tt.wantCode, tt.wantReason)
			}
			if by := c.ClosedBy(); by != tt.wantBy {
				t.Errorf("ClosedBy = %d, want %d", by, tt.wantBy)
			}
			if c.Send([]byte(`{}`)) {
				t.Error("Send on an ended socket reported true")
			}
		})
	}
}

// TestSlowConsumer sends large frames at a steady pace: a client that reads
// keeps up and gets them all, while one that never reads fills its TCP
// buffers, then its queue, and is dropped with 1008 instead of being waited
// for; its socket ends within the write deadline. Every frame Send took
// from the latter either reached its TCP buffers whole or is told to
// Limits.Discarded (frames_discarded: they were counted as delivered):
// those of the batch whose write's deadline passed too, which were
// dropped uncounted, so the metric said fewer than were lost; the write's
// log line says how many were dropped, and why.
func TestSlowConsumer(t *testing.T) {
	limits := ws.Limits{QueueLen: 8, QueueBytes: 256 << 10}
	frame := bytes.Repeat([]byte("z"), 32<<10)
	const pace = time.Millisecond

	t.Run("reading client keeps up", func(t *testing.T) {
		s := startServer(t, limits, 65536)
		cl, c := s.dial(t, nil)
		const n = 300
		got := make(chan int, 1)
		go func() {
			i := 0
			for ; i < n; i++ {
				_ = cl.SetReadDeadline(time.Now().Add(wait))
				if _, _, err := cl.ReadMessage(); err != nil {
					break
				}
			}
			got <- i
		}()
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for i := range n {
			<-tick.C
			if !c.Send(frame) {
				t.Fatalf("Send %d refused to a client that reads", i)
			}
		}
		if i := <-got; i != n {
			t.Fatalf("client read %d frames, want %d", i, n)
		}
		if code, _ := c.CloseCode(); code != 0 {
			t.Errorf("CloseCode = %d, want 0 (open)", code)
		}
	})

	t.Run("client that never reads", func(t *testing.T) {
		var discarded atomic.Int64
		limits := limits
		limits.Discarded = func(n int) { discarded.Add(int64(n)) }
		core, logs := observer.New(zap.DebugLevel)
		s := startServerLog(t, limits, 65536, nil, 0, zap.New(core))
		cl, c := s.dial(t, &websocket.Dialer{ReadBufferSize: 1024})
		tick := time.NewTicker(pace)
		defer tick.Stop()
		deadline := time.Now().Add(30 * time.Second)
		sent := 0
		for c.Send(frame) {
			sent++
			if time.Now().After(deadline) {
				t.Fatalf("Send still accepted frames after %d of them to a client that does not read", sent)
			}
			<-tick.C
		}
		t.Logf("queue overflowed after %d frames (%d KiB)", sent, sent*len(frame)>>10)
		// Frames it had taken and not written are dropped, and said to be:
		// they were counted as delivered.
		if n := discarded.Load(); n < 1 || n > int64(limits.QueueLen) {
			t.Errorf("Discarded told of %d frames, want the queue's 1 to %d", n, limits.QueueLen)
		}
		if sent <= limits.QueueLen {
			t.Errorf("overflowed after %d frames: the TCP buffers should have taken some first", sent)
		}
		if code, reason := c.CloseCode(); code != proto.ClosePolicy || reason != proto.ReasonSlowConsumer {
			t.Errorf("CloseCode = %d %q, want %d %q", code, reason, proto.ClosePolicy, proto.ReasonSlowConsumer)
		}
		if c.Send([]byte(`{}`)) {
			t.Error("Send after the overflow reported true")
		}
		atOverflow := discarded.Load()
		start := time.Now()
		waitDone(t, c, ws.WriteWait+ws.CloseGrace+wait)
		t.Logf("socket ended %s after the overflow", time.Since(start))
		if code, reason := c.CloseCode(); code != proto.ClosePolicy || reason != proto.ReasonSlowConsumer {
			t.Errorf("CloseCode after the end = %d %q, want %d %q", code, reason, proto.ClosePolicy, proto.ReasonSlowConsumer)
		}

		// What the server's kernel took still arrives, then its FIN:
		// gorilla has buffered none of it (nothing was read).
		nc := cl.NetConn()
		_ = nc.SetReadDeadline(time.Now().Add(wait))
		got, err := io.ReadAll(nc)
		if err != nil {
			t.Fatalf("reading what the server wrote: %v", err)
		}
		written, _, closeAt, err := framesAfterClose(got, len(frame))
		if err != nil || closeAt >= 0 {
			t.Fatalf("the server wrote a close frame at byte %d after a failed write, or other frames: %v", closeAt, err)
		}
		n := discarded.Load()
		t.Logf("%d frames sent, %d arrived whole, %d counted discarded (%d of them at the overflow)", sent, written, n, atOverflow)
		if int(n)+written != sent {
			t.Errorf("Send took %d frames, %d arrived whole and %d were counted discarded (want %d)", sent, written, n, sent-written)
		}
		failed := logs.FilterMessage("write failed").All()
		if len(failed) != 1 {
			t.Fatalf("%d \"write failed\" log lines, want 1", len(failed))
		}
		fields := failed[0].ContextMap()
		if d, _ := fields["dropped"].(int64); d != n-atOverflow {
			t.Errorf("the write's log line says %v frames dropped, want %d", fields["dropped"], n-atOverflow)
		}
		if why, _ := fields["error"].(string); !strings.Contains(why, "timeout") {
			t.Errorf("the write's log line gives %q as why, want its deadline (a timeout)", why)
		}
	})
}

// TestNoLeakAfterClose opens sockets, uses them and ends them every way,
// then checks that no goroutine is left behind.
func TestNoLeakAfterClose(t *testing.T) {
	s := startServer(t, defaultLimits, 1024)
	ends := []func(cl *websocket.Conn, c *ws.Conn){
		func(_ *websocket.Conn, c *ws.Conn) { c.Close(proto.CloseGoingAway, "bye") },
		func(cl *websocket.Conn, _ *ws.Conn) {
			_ = cl.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(wait))
		},
		func(cl *websocket.Conn, _ *ws.Conn) { _ = cl.NetConn().Close() },
		func(cl *websocket.Conn, _ *ws.Conn) { _ = cl.WriteMessage(websocket.TextMessage, []byte{0xff}) },
		func(cl *websocket.Conn, _ *ws.Conn) {
			_ = cl.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("a"), 2048))
		},
	}
	var conns []*ws.Conn
	for _, end := range ends {
		cl, c := s.dial(t, nil)
		c.Send([]byte(`{"n":1}`))
		c.Ping()
		if _, _, err := read(t, cl); err != nil {
			t.Fatal(err)
		}
		end(cl, c)
		// Read until the socket ends so the client answers a close frame.
		go func() {
			for {
				if _, _, err := cl.ReadMessage(); err != nil {
					_ = cl.Close()
					return
				}
			}
		}()
		conns = append(conns, c)
	}
	for _, c := range conns {
		waitDone(t, c, ws.WriteWait+ws.CloseGrace+wait)
	}
	s.srv.Close()
	goleak.VerifyNone(t)
}

// panicker is a FrameHandler with a bug: it panics on the frame "boom".
type panicker struct{ frames chan []byte }

func (h *panicker) HandleFrame(data []byte, _ bool) {
	if string(data) == "boom" {
		panic("handler bug")
	}
	h.frames <- data
}

// TestHandlerPanicClosesOnlyThatSocket checks that a panic in frame
// handling closes the socket concerned with 1011 and nothing else.
func TestHandlerPanicClosesOnlyThatSocket(t *testing.T) {
	h := &panicker{frames: make(chan []byte, 8)}
	s := startServerWith(t, defaultLimits, 65536, h)
	bad, badConn := s.dial(t, nil)
	good, _ := s.dial(t, nil)
	if err := bad.WriteMessage(websocket.TextMessage, []byte("boom")); err != nil {
		t.Fatal(err)
	}
	if ce := readClose(t, bad); ce.Code != proto.CloseInternalError {
		t.Errorf("client saw close %d %q, want 1011", ce.Code, ce.Text)
	}
	waitDone(t, badConn, wait)
	if code, _ := badConn.CloseCode(); code != proto.CloseInternalError {
		t.Errorf("CloseCode = %d, want 1011", code)
	}
	if err := good.WriteMessage(websocket.TextMessage, []byte("fine")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-h.frames:
		if string(got) != "fine" {
			t.Errorf("handler got %q, want fine", got)
		}
	case <-time.After(wait):
		t.Fatal("the other socket stopped working after a panic on one")
	}
}

// TestClientCloseIsEchoedAfterNoData: the client's close frame is answered
// with its code, and no data frame queued afterwards follows the echo.
func TestClientCloseIsEchoedAfterNoData(t *testing.T) {
	s := startServer(t, defaultLimits, 65536)
	cl, c := s.dial(t, nil)
	if err := cl.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if c.Send([]byte(`{"late":true}`)) {
		t.Error("Send after the client's close reported true")
	}
	_ = cl.SetReadDeadline(time.Now().Add(wait))
	_, data, err := cl.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("read = %q, %v; want the echo of close 1000", data, err)
	}
}
