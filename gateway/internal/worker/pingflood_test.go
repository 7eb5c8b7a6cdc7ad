package worker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/gateway/internal/config"
	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// pingClient is a raw client socket of a worker that counts the pongs it
// gets and hands on the frames it reads.
type pingClient struct {
	ws     *websocket.Conn
	pongs  atomic.Int64
	frames chan proto.Frame
}

func dialPinger(t *testing.T, addr, user string) *pingClient {
	t.Helper()
	wsc, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/socket", http.Header{"Authorization": {"Bearer " + token(t, user, time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	c := &pingClient{ws: wsc, frames: make(chan proto.Frame, 64)}
	wsc.SetPongHandler(func(string) error { c.pongs.Add(1); return nil })
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, data, err := wsc.ReadMessage()
			if err != nil {
				return
			}
			var f proto.Frame
			_ = json.Unmarshal(data, &f)
			c.frames <- f
		}
	}()
	t.Cleanup(func() { _ = wsc.Close(); <-done })
	c.expect(t, "connected frame", func(f proto.Frame) bool { return f.Event == proto.EventConnected })
	return c
}

// expect waits for a frame that matches (what, for the failure); frames
// before it are skipped.
func (c *pingClient) expect(t *testing.T, what string, match func(proto.Frame) bool) proto.Frame {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case f := <-c.frames:
			if match(f) {
				return f
			}
		case <-timeout:
			t.Fatalf("no %s within %s (the socket was closed, or is stuck)", what, wait)
		}
	}
}

// roundTrip sends an envelope and waits for its answer (no handler runs
// here: the answer is an error, which is an answer all the same). Frames
// are read in order, so every pong queued before the envelope was read has
// arrived by then.
func (c *pingClient) roundTrip(t *testing.T, ref string) {
	t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(`{"event":"noSuchEvent","ref":"`+ref+`"}`)); err != nil {
		t.Fatal(err)
	}
	c.expect(t, "answer to "+ref, func(f proto.Frame) bool { return f.Ref == ref })
}

// pingOnce pings and reports whether the pong came back: the round trip
// after it returns once the ping has been read and its pong, if any, sent.
func (c *pingClient) pingOnce(t *testing.T, ref string) bool {
	t.Helper()
	before := c.pongs.Load()
	if err := c.ws.WriteControl(websocket.PingMessage, []byte(ref), time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	c.roundTrip(t, ref)
	return c.pongs.Load() == before+1
}

// TestClientPingFloodOnAWorker: on a real worker with the default ping
// allowance, a client's flood of 10,000 pings gets at most the allowance
// answered, counted in pings_ignored_total; its socket stays open and
// answers envelopes, and once the client calms down its keepalive pings
// are answered again; another client's socket is untouched.
func TestClientPingFloodOnAWorker(t *testing.T) {
	const flood = 10000
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	r := startWorker(t, cfg, 0)
	flooder := dialPinger(t, r.addr, "mallory")
	other := dialPinger(t, r.addr, "alice")

	mask := [4]byte{3, 1, 4, 1}
	var raw bytes.Buffer
	for i := range flood {
		raw.Write(maskedPing(mask, fmt.Sprintf("f%d", i)))
	}
	start := time.Now()
	if _, err := flooder.ws.NetConn().Write(raw.Bytes()); err != nil {
		t.Fatal(err)
	}
	flooder.roundTrip(t, "after-flood")
	took := time.Since(start)

	allowance := int64(cfg.PingBurst) + int64(math.Ceil(took.Seconds()*cfg.PingRate))
	got := flooder.pongs.Load()
	t.Logf("%d pings in %s: %d answered (allowance %d)", flood, took, got, allowance)
	if got < int64(cfg.PingBurst) || got > allowance {
		t.Errorf("%d pongs for a flood of %d pings over %s; want %g to %d", got, flood, took, cfg.PingBurst, allowance)
	}
	if ignored := counterValue(t, r.w, "switchboard_gateway_pings_ignored_total"); ignored != float64(flood-got) {
		t.Errorf("pings_ignored_total = %g, want %d", ignored, flood-got)
	}

	// The other socket has its own allowance, and the flooder's socket
	// still answers.
	if !other.pingOnce(t, "other") {
		t.Error("the other socket's ping went unanswered")
	}
	flooder.roundTrip(t, "still-open")

	// The flooder's allowance is spent; keepalive pings, one every
	// 600 ms, more than the rate refills, are answered again.
	for i := range 3 {
		time.Sleep(600 * time.Millisecond) // the client's cadence, not a wait for a condition
		if !flooder.pingOnce(t, fmt.Sprintf("keepalive-%d", i)) {
			t.Errorf("keepalive ping %d after the flood went unanswered", i)
		}
	}
}

// counterValue reads a counter of the worker's registry.
func counterValue(t *testing.T, w *Worker, name string) float64 {
	t.Helper()
	fams, err := w.metrics.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.Metric) == 1 {
			return f.Metric[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}

// maskedPing is a client's ping frame (RFC 6455 section 5.2): FIN and the
// ping opcode, the mask bit and a payload of at most 125 bytes, masked.
func maskedPing(mask [4]byte, payload string) []byte {
	f := []byte{0x89, 0x80 | byte(len(payload)), mask[0], mask[1], mask[2], mask[3]}
	for i := range len(payload) {
		f = append(f, payload[i]^mask[i&3])
	}
	return f
}

// TestEmptyPingFloodOnAWorker: a worker meters what its sockets send
// beyond their messages' payload (ws.DefaultOverheadRate): a client
// sending empty pings as fast as it can for a second has at most the
// burst and a second's rate of them read, where unbounded its socket read
// millions and kept a core busy.
func TestEmptyPingFloodOnAWorker(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	r := startWorker(t, cfg, 0)
	flooder := dialPinger(t, r.addr, "mallory")
	ping := maskedPing([4]byte{2, 7, 1, 8}, "") // 6 bytes
	raw := bytes.Repeat(ping, 1000)
	nc := flooder.ws.NetConn()
	start := time.Now()
	_ = nc.SetWriteDeadline(start.Add(time.Second))
	for {
		if _, err := nc.Write(raw); err != nil {
			break // the deadline: the worker reads no faster
		}
	}
	read := counterValue(t, r.w, "switchboard_gateway_pings_ignored_total") + float64(flooder.pongs.Load())
	took := time.Since(start) // after the count: what was read by then
	most := (ws.DefaultOverheadBurst+ws.DefaultOverheadRate*took.Seconds()+ws.ReadBufferSize)/6 + 1
	t.Logf("%.0f empty pings read in %s (at most %.0f)", read, took, most)
	if read > most {
		t.Fatalf("%.0f empty pings read in %s, want at most %.0f", read, took, most)
	}
}

// TestOverheadFollowsTheFrameAllowances: the allowance of overhead is the
// default under the default frame and ping allowances, grows with them, so
// that a deployment allowing many frames a second is not held back by
// the headers of its own frames (at GATEWAY_RATE_LIMIT=5000 the default
// allowance read at most ~2,700 small frames a second), and is off when
// either is unlimited.
func TestOverheadFollowsTheFrameAllowances(t *testing.T) {
	cfg := config.Default()
	if r, b := overheadRate(cfg), overheadBurst(cfg); r != ws.DefaultOverheadRate || b != ws.DefaultOverheadBurst {
		t.Errorf("defaults: rate %.0f, burst %.0f; want %d and %d", r, b, ws.DefaultOverheadRate, ws.DefaultOverheadBurst)
	}
	fast := cfg
	fast.RateLimit, fast.RateBurst = 5000, 10000
	if r, b := overheadRate(fast), overheadBurst(fast); r < maxFrameOverhead*(fast.RateLimit+fast.PingRate) || b < maxFrameOverhead*(fast.RateBurst+fast.PingBurst) {
		t.Errorf("GATEWAY_RATE_LIMIT=5000: rate %.0f, burst %.0f, below the headers of the frames allowed", r, b)
	}
	for name, c := range map[string]func(*config.Config){
		"GATEWAY_RATE_LIMIT=0": func(c *config.Config) { c.RateLimit = 0 },
		"GATEWAY_PING_RATE=0":  func(c *config.Config) { c.PingRate = 0 },
	} {
		off := cfg
		c(&off)
		if r := overheadRate(off); r != 0 {
			t.Errorf("%s: rate %.0f, want 0 (no bound)", name, r)
		}
	}
}
