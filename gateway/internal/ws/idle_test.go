package ws_test

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestPing: a ping queued with Ping reaches the client before the frames
// queued after it.
func TestPing(t *testing.T) {
	s := startServer(t, defaultLimits, 65536)
	cl, c := s.dial(t, nil)
	pinged := make(chan struct{}, 1)
	cl.SetPingHandler(func(string) error {
		pinged <- struct{}{}
		return nil
	})
	c.Ping()
	c.Send([]byte(`{"after":"ping"}`))
	// ReadMessage runs the ping handler before it returns the data frame.
	if _, data, err := read(t, cl); err != nil || string(data) != `{"after":"ping"}` {
		t.Fatalf("read = %q, %v", data, err)
	}
	select {
	case <-pinged:
	default:
		t.Fatal("no ping arrived before the frame queued after it")
	}
}

// TestIdleConnHasNoWriter checks the doc.go contract: an idle socket costs
// its reader goroutine only; the writer exits once the queue is empty.
func TestIdleConnHasNoWriter(t *testing.T) {
	s := startServer(t, defaultLimits, 65536)
	const n = 50
	before := runtime.NumGoroutine()
	for i := range n {
		cl, c := s.dial(t, nil)
		if !c.Send([]byte(`{"hello":true}`)) {
			t.Fatal("Send refused")
		}
		if _, _, err := read(t, cl); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
	}
	// One reader per socket is expected; a writer that stayed would double it.
	slack := n / 4
	var extra int
	testkit.Eventually(t, wait, fmt.Sprintf("at most %d more goroutines for %d idle sockets", n+slack, n), func() bool {
		extra = runtime.NumGoroutine() - before
		return extra <= n+slack
	})
	t.Logf("%d idle sockets: %d more goroutines", n, extra)
}

// TestClientPingsDuringALongWrite: a client that pauses reading while
// pinging must get the full WriteWait for the frames already being written.
// gorilla's own pong reply set the connection's write deadline to 1 s under
// the writer's batch and cut it off with 1006; pongs now go through the
// queue, answered in order with their payload.
func TestClientPingsDuringALongWrite(t *testing.T) {
	const n, size = 200, 60 << 10
	limits := ws.Limits{QueueLen: n + 64, QueueBytes: (n + 64) * size}
	s := startServer(t, limits, 65536)
	d := *websocket.DefaultDialer
	d.ReadBufferSize = 4096
	cl, c := s.dial(t, &d)
	pongs := make(chan string, 64)
	cl.SetPongHandler(func(p string) error {
		select {
		case pongs <- p:
		default:
		}
		return nil
	})
	frame := bytes.Repeat([]byte("p"), size)
	for range n {
		if !c.Send(frame) {
			t.Fatal("Send refused a frame within the queue's bounds")
		}
	}
	// The client pings every 100 ms and reads nothing for 2 s, longer than
	// gorilla's 1 s control-frame deadline: this pause is the fault itself,
	// not a wait for a condition.
	stop := make(chan struct{})
	var pinging sync.WaitGroup
	pinging.Add(1)
	go func() {
		defer pinging.Done()
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tk.C:
				_ = cl.WriteControl(websocket.PingMessage, []byte(fmt.Sprintf("p%d", i)), time.Now().Add(wait))
			}
		}
	}()
	time.Sleep(2 * time.Second)
	for i := range n {
		if _, data, err := read(t, cl); err != nil || len(data) != size {
			close(stop)
			pinging.Wait()
			t.Fatalf("frame %d of %d: %d bytes, %v; the server cut the write", i+1, n, len(data), err)
		}
	}
	close(stop)
	pinging.Wait()
	// The pongs were queued behind the frames; a last frame behind them
	// makes the client's read run its pong handler.
	c.Send([]byte(`{"last":true}`))
	if _, data, err := read(t, cl); err != nil || string(data) != `{"last":true}` {
		t.Fatalf("last frame: %q, %v", data, err)
	}
	select {
	case p := <-pongs:
		if !strings.HasPrefix(p, "p") {
			t.Errorf("pong payload %q, want the ping's", p)
		}
	default:
		t.Error("no pong answered the client's pings")
	}
	if code, _ := c.CloseCode(); code != 0 {
		t.Errorf("socket closed with %d while the client was reading", code)
	}
}

// readersWaitAboveGorilla reports whether every read loop goroutine is
// waiting in awaitData rather than inside gorilla's read.
func readersWaitAboveGorilla() (bool, string) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var seen int
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "ws.(*Conn).ReadLoop") {
			continue
		}
		seen++
		if !strings.Contains(g, "ws.(*Conn).awaitData") || strings.Contains(g, "websocket.(*Conn).NextReader") {
			return false, g
		}
	}
	return seen > 0, "no read loop"
}

// TestIdleReaderWaitsAboveGorilla: between messages a socket's reader waits
// in awaitData, a few calls deep, not inside gorilla's read, also after the
// client's pings and pongs, which keep an idle socket alive: that is what
// keeps an idle socket's goroutine stack at 2 KB. A ping that arrives
// together with a message is answered, and the message handed on.
func TestIdleReaderWaitsAboveGorilla(t *testing.T) {
	s := startServer(t, defaultLimits, 65536)
	cl, c := s.dial(t, nil)
	pongs := make(chan string, 8)
	cl.SetPongHandler(func(p string) error { pongs <- p; return nil })
	go func() { // reading runs the client's handlers
		for {
			if _, _, err := cl.ReadMessage(); err != nil {
				return
			}
		}
	}()
	expectPong := func(want string) {
		t.Helper()
		select {
		case got := <-pongs:
			if got != want {
				t.Fatalf("pong %q, want %q", got, want)
			}
		case <-time.After(wait):
			t.Fatalf("no pong for ping %q", want)
		}
	}
	expectFrame := func(want string) {
		t.Helper()
		select {
		case got := <-s.rec.frames:
			if string(got.data) != want {
				t.Fatalf("frame %q, want %q", got.data, want)
			}
		case <-time.After(wait):
			t.Fatalf("frame %q not handed on", want)
		}
	}
	waitsAbove := func(after string) {
		t.Helper()
		var stack string
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("read loop goroutine:\n%s", stack)
			}
		})
		testkit.Eventually(t, wait, "the reader waits in awaitData after "+after, func() bool {
			var ok bool
			ok, stack = readersWaitAboveGorilla()
			return ok
		})
	}

	c.Send([]byte(`{"hello":true}`)) // lets the writer run
	waitsAbove("the upgrade")

	if err := cl.WriteControl(websocket.PingMessage, []byte("p1"), time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	expectPong("p1")
	waitsAbove("a ping")

	c.Ping() // the client answers with a pong
	if err := cl.WriteMessage(websocket.TextMessage, []byte(`{"event":"a"}`)); err != nil {
		t.Fatal(err)
	}
	expectFrame(`{"event":"a"}`)
	waitsAbove("a pong and a message")

	// A ping and a message in one write: both reach the server together.
	mask := [4]byte{7, 1, 3, 5}
	raw := append(ws.ClientFrame(0x89, mask, []byte("p2")), ws.ClientFrame(0x81, mask, []byte(`{"event":"b"}`))...)
	if _, err := cl.NetConn().Write(raw); err != nil {
		t.Fatal(err)
	}
	expectPong("p2")
	expectFrame(`{"event":"b"}`)
	waitsAbove("a ping and a message in one segment")
}
