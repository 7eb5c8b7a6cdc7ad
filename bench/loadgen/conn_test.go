package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer is a WebSocket server in the gateway's place: it sends the
// connected frame and hands each connection to serve.
func testServer(t *testing.T, up websocket.Upgrader, serve func(c *websocket.Conn)) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		if err := c.WriteMessage(websocket.TextMessage, []byte(`{"event":"connected","id":"u0","args":{"conn":"c1","worker":3}}`)); err != nil {
			return
		}
		serve(c)
	}))
	t.Cleanup(ts.Close)
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/socket"
}

// testSock dials url as user 0, device 0 of a Generator of 2 users.
func testSock(t *testing.T, url string) (*Generator, *sock) {
	t.Helper()
	g, err := New(Config{URL: url, Secret: "s", Users: 2, Devices: 1})
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDialer(url, 1)
	if err != nil {
		t.Fatal(err)
	}
	s, worker, err := d.dial(context.Background(), "tok", "")
	if err != nil {
		t.Fatal(err)
	}
	if worker != 3 {
		t.Errorf("worker = %d, want 3", worker)
	}
	s.g = g
	g.socks[0] = s
	go s.readLoop()
	t.Cleanup(g.Close)
	return g, s
}

// TestSockAnswersPingsTakesFragmentsAndRecordsTheClose: a fragmented ack
// counts, a ping is answered (after the ack, so the ack has been handled),
// and a close frame ends the socket with its code and reason recorded and
// echoed.
func TestSockAnswersPingsTakesFragmentsAndRecordsTheClose(t *testing.T) {
	echoed := make(chan error, 1)
	start := make(chan struct{}) // the run is set up
	url := testServer(t, websocket.Upgrader{WriteBufferSize: 64}, func(c *websocket.Conn) {
		<-start
		pong := make(chan string, 1)
		c.SetPongHandler(func(s string) error { pong <- s; return nil })
		read := make(chan error, 1)
		go func() {
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					read <- err
					return
				}
			}
		}()
		// Over 64 bytes: gorilla sends it in fragments.
		ack := `{"event":"ack","id":"u0","ref":"1.0","pad":"` + strings.Repeat("x", 200) + `"}`
		if err := c.WriteMessage(websocket.TextMessage, []byte(ack)); err != nil {
			echoed <- err
			return
		}
		if err := c.WriteControl(websocket.PingMessage, []byte("p1"), time.Now().Add(time.Second)); err != nil {
			echoed <- err
			return
		}
		if got := <-pong; got != "p1" {
			echoed <- fmt.Errorf("pong %q", got)
			return
		}
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "slow consumer"), time.Now().Add(time.Second))
		echoed <- <-read
	})

	g, s := testSock(t, url)
	rs := &runState{id: 1, rate: 1, start: time.Now(), endSeqs: 1, tracker: NewTracker(1, 1)}
	rs.tracker.Sent(0, 0, 0)
	g.cur.Store(rs)
	close(start)
	err := <-echoed
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
		t.Fatalf("server read %v, want the close echoed", err)
	}
	<-s.done
	if tally := rs.tracker.Tally(); tally.Acks != 1 {
		t.Errorf("tally %+v, want the fragmented ack", tally)
	}
	if got := g.closeCounts(); got["1008 slow consumer"] != 1 || len(got) != 1 {
		t.Errorf("closes %v", got)
	}
	if g.connsLost.Load() != 1 || !s.dead.Load() {
		t.Errorf("lost %d, dead %v", g.connsLost.Load(), s.dead.Load())
	}
}

// TestSockQueuesBehindAFullSocket fills the socket of a server that does
// not read, so that writes are taken in part, queued and finally refused;
// once the server reads, every frame not refused arrives whole and in order.
func TestSockQueuesBehindAFullSocket(t *testing.T) {
	total := make(chan int, 1)
	result := make(chan error, 1)
	url := testServer(t, websocket.Upgrader{}, func(c *websocket.Conn) {
		_ = c.NetConn().(*net.TCPConn).SetReadBuffer(4096)
		n := <-total
		for i := range n {
			_, data, err := c.ReadMessage()
			if err != nil {
				result <- fmt.Errorf("message %d: %w", i, err)
				return
			}
			if want := strconv.Itoa(i) + strings.Repeat(".", 100); string(data) != want {
				result <- fmt.Errorf("message %d is %.20q", i, data)
				return
			}
		}
		result <- nil
	})

	g, s := testSock(t, url)
	_ = s.nc.SetWriteBuffer(4096)
	counts := map[writeResult]int{}
	sent := 0
	for i := 0; counts[overflowed] == 0; i++ {
		if i == 1_000_000 {
			t.Fatalf("a million frames taken: %v", counts)
		}
		payload := strconv.Itoa(sent) + strings.Repeat(".", 100)
		r := s.write(appendClientFrame(nil, opText, []byte(payload), uint32(i)), true)
		counts[r]++
		if r == written || r == queued {
			sent++
		}
	}
	if counts[queued] != sendQueue || counts[failed] != 0 {
		t.Fatalf("results %v, want %d queued", counts, sendQueue)
	}
	t.Logf("write results: %v", counts)
	total <- sent
	if err := <-result; err != nil {
		t.Fatal(err)
	}
	g.waitFlushes()
	if n := g.sendErrors.Load(); n != 0 {
		t.Errorf("%d send errors", n)
	}
}

func TestDialReportsARefusedUpgrade(t *testing.T) {
	url := testServer(t, websocket.Upgrader{}, func(*websocket.Conn) {})
	d, err := newDialer(url, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.dial(context.Background(), "wrong", ""); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("dial with a bad token: %v", err)
	}
	for _, bad := range []string{"http://127.0.0.1:1/socket", "ws:///socket", "::"} {
		if _, err := newDialer(bad, 1); err == nil {
			t.Errorf("newDialer(%q) took it", bad)
		}
	}
}

// TestSockCountsWhatIsWrong: through the socket, a duplicate, a delivery
// on the wrong socket and frames that say no send are all counted.
func TestSockCountsWhatIsWrong(t *testing.T) {
	start := make(chan struct{})
	done := make(chan error, 1)
	url := testServer(t, websocket.Upgrader{}, func(c *websocket.Conn) {
		<-start
		pong := make(chan struct{})
		c.SetPongHandler(func(string) error { close(pong); return nil })
		go func() {
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
		for _, f := range []string{
			// Send 0 is u1's, to u0: its message arrives here twice.
			`{"event":"message","id":"u0","args":{"from":"u1","to":"u0","text":"r1s0t5","ts":1,"msg_id":"a"}}`,
			`{"event":"message","id":"u0","args":{"from":"u1","to":"u0","text":"r1s0t5","ts":1,"msg_id":"a"}}`,
			// Its message_sent belongs on u1's sockets, not here.
			`{"event":"message_sent","id":"u0","args":{"from":"u1","to":"u0","text":"r1s0t5","ts":1,"msg_id":"a"}}`,
			// Send 1 is this socket's own: its ack.
			`{"event":"ack","id":"u0","ref":"1.1"}`,
			`not JSON`,
			`{"event":"message","id":"u0","args":{"text":"hello"}}`,
			`{"event":"message","id":"u0","args":{"text":"r1s7t5"}}`, // a send never made
			`{"event":"ack","id":"u0","ref":"0.1"}`,                  // an earlier run's
			`{"event":"error","id":"u0","args":{"code":"bad_request","message":"x"}}`,
		} {
			if err := c.WriteMessage(websocket.TextMessage, []byte(f)); err != nil {
				done <- err
				return
			}
		}
		if err := c.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second)); err != nil {
			done <- err
			return
		}
		<-pong // the frames before the ping are handled
		done <- nil
	})

	g, _ := testSock(t, url)
	rs := &runState{id: 1, rate: 1, start: time.Now(), endSeqs: 8, tracker: NewTracker(8, 1)}
	rs.tracker.Sent(0, 1, 0)
	rs.tracker.Sent(1, 0, 0)
	g.cur.Store(rs)
	close(start)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := rs.tracker.Tally()
	want := Tally{Sends: 2, Deliveries: 1, Acks: 1, Missing: 3, MissingAcks: 1, Duplicates: 1, Misrouted: 1, Unknown: 3}
	if got != want {
		t.Errorf("tally\n got %+v\nwant %+v", got, want)
	}
	if g.stale.Load() != 1 || g.errFrames.Load() != 1 || g.errorCounts()["bad_request"] != 1 {
		t.Errorf("stale %d, error frames %d", g.stale.Load(), g.errFrames.Load())
	}
}
