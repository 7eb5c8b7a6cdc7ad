package ws_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/ws"
)

// benchFrame is a typical delivery: a "message" frame of about 200 bytes.
var benchFrame = []byte(`{"event":"message","id":"u1","args":{"from":"u0","to":"u1","text":"r1s123456t1764072000123456789","ts":1764072000124,"msg_id":"0123456789abcdef0123456789abcdef"}}`)

// benchSocket returns a server Conn over a real loopback socket and a
// client reading from it, which signals every n frames it has read.
func benchSocket(b *testing.B, every int) (*ws.Conn, <-chan struct{}) {
	b.Helper()
	conns := make(chan *ws.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up, err := ws.Upgrade(&websocket.Upgrader{}, w, r)
		if err != nil {
			return
		}
		c := ws.NewConn(up, "c1", "u1", &ws.Limits{QueueLen: 1 << 16, QueueBytes: 1 << 30}, zap.NewNop())
		conns <- c
		c.ReadLoop(&recorder{frames: make(chan frame, 1)}, 1<<16)
	}))
	b.Cleanup(srv.Close)
	cl, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		b.Fatal(err)
	}
	c := <-conns
	got := make(chan struct{}, 1024)
	go func() {
		for n := 1; ; n++ {
			if _, _, err := cl.NextReader(); err != nil {
				return
			}
			if n%every == 0 {
				got <- struct{}{}
			}
		}
	}()
	b.Cleanup(func() {
		_ = cl.Close()
		<-c.Done()
	})
	return c, got
}

// BenchmarkSend is the write path of one socket: queue, frame, write(2),
// and the client's read, one frame at a time (each its own write) and in
// bursts (batched into one write per burst). ns/op is per frame.
func BenchmarkSend(b *testing.B) {
	for _, burst := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("burst=%d", burst), func(b *testing.B) {
			c, got := benchSocket(b, burst)
			b.SetBytes(int64(len(benchFrame)))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				c.Send(benchFrame)
				if n++; n%burst == 0 {
					<-got
				}
			}
			if n%burst != 0 {
				for ; n%burst != 0; n++ {
					c.Send(benchFrame) // complete the last burst
				}
				<-got
			}
		})
	}
}

// counter is a FrameHandler that counts the frames handed on and signals
// every n of them.
type counter struct {
	n, every int
	got      chan struct{}
}

func (c *counter) HandleFrame([]byte, bool) {
	if c.n++; c.n%c.every == 0 {
		c.got <- struct{}{}
	}
}

// BenchmarkRead is the read path of one socket for a large client frame
// (26 KB: a post mentioning 100 users of 256 bytes, the largest built-in
// args): the client's write, the read into a pooled buffer, UTF-8 check,
// and the hand-off to a handler that drops it, as the forwarder does with
// a frame over a rate limit. Allocations are per frame.
func BenchmarkRead(b *testing.B) {
	frame := []byte(`{"event":"postUpdated","args":{"post":"p","mentions":["` + strings.Repeat("m", 26000) + `"]}}`)
	const every = 64
	h := &counter{every: every, got: make(chan struct{}, 1024)}
	conns := make(chan *ws.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up, err := ws.Upgrade(&websocket.Upgrader{}, w, r)
		if err != nil {
			return
		}
		c := ws.NewConn(up, "c1", "u1", &ws.Limits{QueueLen: 64, QueueBytes: 1 << 20}, zap.NewNop())
		conns <- c
		c.ReadLoop(h, 1<<16)
	}))
	b.Cleanup(srv.Close)
	cl, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		b.Fatal(err)
	}
	c := <-conns
	b.Cleanup(func() {
		_ = cl.Close()
		<-c.Done()
	})
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, frame)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		if err := cl.WritePreparedMessage(pm); err != nil {
			b.Fatal(err)
		}
		if i%every == 0 {
			<-h.got
		}
	}
}

// BenchmarkUpgrade is what upgrading one client socket allocates: Upgrade
// (gorilla's handshake, the read buffer, the meter) and NewConn, on a real
// loopback socket handed over as net/http's Hijack hands it. The socket's
// accept and net/http's own buffers are made with the timer stopped, so
// the figures are the gateway's per socket, which an idle socket keeps for
// life.
func BenchmarkUpgrade(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	u := &websocket.Upgrader{}
	limits := &ws.Limits{QueueLen: 256, QueueBytes: 1 << 20}
	log := zap.NewNop()
	b.ReportAllocs()
	b.StopTimer()
	for range b.N {
		cl, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		nc, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		w := &hijackable{h: http.Header{}, nc: nc, brw: bufio.NewReadWriter(bufio.NewReaderSize(nc, 4096), bufio.NewWriterSize(nc, 4096))}
		b.StartTimer()
		up, err := ws.Upgrade(u, w, r)
		if err != nil {
			b.Fatal(err)
		}
		c := ws.NewConn(up, "c1", "u1", limits, log)
		b.StopTimer()
		if c.User() != "u1" {
			b.Fatal("no conn")
		}
		_ = nc.Close()
		_ = cl.Close()
	}
}

// hijackable is the http.ResponseWriter of a request on the socket nc, as
// net/http hands it to a handler: Upgrade takes it over by Hijack.
type hijackable struct {
	h   http.Header
	nc  net.Conn
	brw *bufio.ReadWriter
}

func (w *hijackable) Header() http.Header         { return w.h }
func (w *hijackable) Write(p []byte) (int, error) { return len(p), nil }
func (w *hijackable) WriteHeader(int)             {}
func (w *hijackable) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.nc, w.brw, nil
}
