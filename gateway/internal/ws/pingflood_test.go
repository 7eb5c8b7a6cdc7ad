package ws_test

import (
	"bytes"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/gateway/internal/ws"
)

// pongCounter reads a client socket until it ends, counting the pongs it
// gets and handing on its data frames.
type pongCounter struct {
	pongs  atomic.Int64
	last   atomic.Value // string: the latest pong's payload
	frames chan []byte
}

func countPongs(cl *websocket.Conn) *pongCounter {
	p := &pongCounter{frames: make(chan []byte, 16)}
	cl.SetPongHandler(func(payload string) error {
		p.pongs.Add(1)
		p.last.Store(payload)
		return nil
	})
	go func() {
		defer close(p.frames)
		for {
			_, data, err := cl.ReadMessage()
			if err != nil {
				return
			}
			p.frames <- data
		}
	}()
	return p
}

// expectFrame waits for the data frame want on p.
func (p *pongCounter) expectFrame(t *testing.T, want string) {
	t.Helper()
	select {
	case got, ok := <-p.frames:
		if !ok || string(got) != want {
			t.Fatalf("frame %q (open %v), want %q", got, ok, want)
		}
	case <-time.After(wait):
		t.Fatalf("no frame %q", want)
	}
}

// expectHandedOn waits for the server's read loop to hand on want.
func (s *server) expectHandedOn(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-s.rec.frames:
		if string(got.data) != want {
			t.Fatalf("server got %q, want %q", got.data, want)
		}
	case <-time.After(wait):
		t.Fatalf("server did not get %q", want)
	}
}

// TestClientPingFlood: a client that sends 10,000 pings at once gets at
// most its ping allowance answered (the burst, and the rate over the time
// the flood took), and its socket stays open and working, as does another
// client's socket on the same server.
func TestClientPingFlood(t *testing.T) {
	const rate, burst, flood = 2, 10, 10000
	limits := defaultLimits
	limits.PingRate, limits.PingBurst = rate, burst
	var ignored atomic.Int64
	limits.PingsIgnored = func() { ignored.Add(1) }
	s := startServer(t, limits, 65536)
	cl, c := s.dial(t, nil)
	other, oc := s.dial(t, nil)
	p, op := countPongs(cl), countPongs(other)

	mask := [4]byte{9, 8, 7, 6}
	var raw bytes.Buffer
	for i := range flood {
		raw.Write(ws.ClientFrame(0x89, mask, []byte(fmt.Sprintf("f%d", i))))
	}
	start := time.Now()
	if _, err := cl.NetConn().Write(raw.Bytes()); err != nil {
		t.Fatal(err)
	}
	// The read loop is sequential: once it hands on the frame sent after
	// the flood, every ping has been answered or not, and the pongs are
	// queued ahead of what the server sends next.
	if err := cl.WriteMessage(websocket.TextMessage, []byte(`{"after":"flood"}`)); err != nil {
		t.Fatal(err)
	}
	s.expectHandedOn(t, `{"after":"flood"}`)
	c.Send([]byte(`{"marker":1}`))
	p.expectFrame(t, `{"marker":1}`)
	took := time.Since(start)

	allowance := burst + int64(math.Ceil(took.Seconds()*rate))
	got := p.pongs.Load()
	t.Logf("%d pings in %s: %d answered, %d not (allowance %d)", flood, took, got, ignored.Load(), allowance)
	if got < burst || got > allowance {
		t.Errorf("%d pongs for a flood of %d pings over %s; want %d to %d", got, flood, took, burst, allowance)
	}
	if n := ignored.Load(); n != flood-got {
		t.Errorf("PingsIgnored called %d times, want %d (the pings not answered)", n, flood-got)
	}
	if code, reason := c.CloseCode(); code != 0 {
		t.Fatalf("flooding socket closed with %d %q, want it open", code, reason)
	}

	// The flooding socket still works both ways.
	if err := cl.WriteMessage(websocket.TextMessage, []byte(`{"still":"here"}`)); err != nil {
		t.Fatal(err)
	}
	s.expectHandedOn(t, `{"still":"here"}`)
	c.Send([]byte(`{"to":"flooder"}`))
	p.expectFrame(t, `{"to":"flooder"}`)

	// The other socket's pings are its own allowance: answered.
	if err := other.WriteControl(websocket.PingMessage, []byte("mine"), time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	if err := other.WriteMessage(websocket.TextMessage, []byte(`{"after":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	s.expectHandedOn(t, `{"after":"ping"}`)
	oc.Send([]byte(`{"to":"other"}`))
	op.expectFrame(t, `{"to":"other"}`)
	if op.pongs.Load() != 1 || op.last.Load() != "mine" {
		t.Errorf("other socket: %d pongs, last %v; want its one ping answered", op.pongs.Load(), op.last.Load())
	}
}

// TestKeepalivePingsAnswered: pings slower than the allowance's rate are
// all answered, with their payload, however many there are. (The rate is
// scaled up and the burst down so that refilling, not the burst, answers
// them: 20 pings 100 ms apart against 20 a second, a burst of 1.)
func TestKeepalivePingsAnswered(t *testing.T) {
	limits := defaultLimits
	limits.PingRate, limits.PingBurst = 20, 1
	s := startServer(t, limits, 65536)
	cl, c := s.dial(t, nil)
	pongs := make(chan string, 1)
	cl.SetPongHandler(func(p string) error { pongs <- p; return nil })
	go func() { // reading runs the pong handler
		for {
			if _, _, err := cl.ReadMessage(); err != nil {
				return
			}
		}
	}()
	for i := range 20 {
		if i > 0 {
			time.Sleep(100 * time.Millisecond) // the client's cadence, not a wait for a condition
		}
		want := fmt.Sprintf("k%d", i)
		if err := cl.WriteControl(websocket.PingMessage, []byte(want), time.Now().Add(wait)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-pongs:
			if got != want {
				t.Fatalf("pong %q, want %q", got, want)
			}
		case <-time.After(wait):
			t.Fatalf("keepalive ping %d not answered", i)
		}
	}
	if code, _ := c.CloseCode(); code != 0 {
		t.Errorf("socket closed with %d", code)
	}
}
