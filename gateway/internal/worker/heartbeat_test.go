package worker

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestHeartbeat: a socket that asks for heartbeats (heartbeat=1) is told
// the interval and max_frame in connected, which stays its first frame,
// and then gets a $ping frame every interval; a socket that does not ask
// is told max_frame only and never gets one.
func TestHeartbeat(t *testing.T) {
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = testkit.StartNATS(t).URL(), testkit.StartRedis(t).URL()
	cfg.PingInterval = 200 * time.Millisecond
	cfg.MaxFrame = 4096
	r := startWorker(t, cfg, 0)
	url := "ws://" + r.addr + "/socket"

	quiet := testkit.Dial(t, url+"?heartbeat=0", token(t, "bob", time.Hour))
	if got := quiet.Connected; got.Heartbeat != 0 || got.MaxFrame != cfg.MaxFrame {
		t.Fatalf("connected without heartbeat=1: %+v, want no heartbeat and max_frame %d", got, cfg.MaxFrame)
	}

	h := http.Header{"Authorization": {"Bearer " + token(t, "alice", time.Hour)}}
	ws, _, err := websocket.DefaultDialer.Dial(url+"?heartbeat=1", h)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	read := func() proto.Frame {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var f proto.Frame
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		return f
	}
	first := read()
	var c proto.Connected
	if err := json.Unmarshal(first.Args, &c); first.Event != proto.EventConnected || err != nil {
		t.Fatalf("first frame %+v, want connected", first)
	}
	if c.Heartbeat != 200 || c.MaxFrame != cfg.MaxFrame {
		t.Fatalf("connected with heartbeat=1: %+v, want heartbeat 200 and max_frame %d", c, cfg.MaxFrame)
	}
	var beats []time.Time
	for len(beats) < 3 {
		f := read()
		if f.Event != proto.EventHeartbeat || f.ID != "alice" || f.Args != nil {
			t.Fatalf("frame %+v, want only heartbeats {event:%s, id:alice}", f, proto.EventHeartbeat)
		}
		beats = append(beats, time.Now())
	}
	// One interval apart, give or take the scheduling of a loaded host.
	if gap := beats[2].Sub(beats[0]); gap < 200*time.Millisecond || gap > 2*time.Second {
		t.Errorf("three heartbeats span %s, want about 2 intervals (400ms)", gap)
	}
	// Three heartbeats are two rounds of every ping slot, bob's included:
	// it was pinged twice, and sent no frame.
	if got := quiet.Frames(); len(got) != 0 {
		t.Errorf("a socket without heartbeat=1 got %v", got)
	}
}

// TestHeartbeatCarriesSkippedPosition: of two sockets of a user that
// asked for heartbeats, the one a dispatch leaves out (except) gets, with
// its next heartbeat, the position of the event it was left out of, the
// last of its stream; the other gets the event and plain heartbeats; and
// the one left out gets plain heartbeats after that one.
func TestHeartbeatCarriesSkippedPosition(t *testing.T) {
	rd := testkit.StartRedis(t)
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = testkit.StartNATS(t).URL(), rd.URL()
	cfg.PingInterval = 200 * time.Millisecond
	r := startWorker(t, cfg, 0)
	url := "ws://" + r.addr + "/socket?heartbeat=1"
	left := testkit.Dial(t, url, token(t, "alice", time.Hour))
	other := testkit.Dial(t, url, token(t, "alice", time.Hour))
	isBeat := func(f proto.Frame) bool { return f.Event == proto.EventHeartbeat }
	// A heartbeat each first: both are past connect, and left's is plain.
	if f := left.Expect(wait, "a heartbeat", isBeat); f.Pos != "" || f.BPos != "" {
		t.Fatalf("heartbeat %+v before any skip, want the plain frame", f)
	}
	other.Expect(wait, "a heartbeat", isBeat)

	p, _, err := streams.Publish(context.Background(), publisher(t, rd.URL()), time.Minute,
		&proto.Dispatch{Event: "message", Args: json.RawMessage(`{}`), Users: []string{"alice"}, Except: []string{left.Conn}})
	if err != nil {
		t.Fatal(err)
	}
	if f := other.ExpectEvent(wait, "message"); f.Pos != p[0] {
		t.Fatalf("the device not left out got %+v, want the event at %s", f, p[0])
	}
	f := left.Expect(wait, "a heartbeat with the skipped event's position", func(f proto.Frame) bool { return isBeat(f) && f.Pos != "" })
	if f.Pos != p[0] || f.BPos != "" || f.ID != "alice" || f.Args != nil {
		t.Fatalf("heartbeat %+v, want {event:$ping, id:alice, pos:%s}", f, p[0])
	}
	if f := left.Expect(wait, "the next heartbeat", isBeat); f.Pos != "" || f.BPos != "" {
		t.Fatalf("heartbeat %+v after the one that told the position, want the plain frame", f)
	}
	for range 2 { // a round of pings, with two heartbeats
		if f := other.Expect(wait, "a heartbeat", isBeat); f.Pos != "" || f.BPos != "" {
			t.Fatalf("the device not left out got heartbeat %+v, want the plain frame", f)
		}
	}
	for _, f := range left.Frames() {
		if f.Event == "message" {
			t.Fatalf("the device left out got %+v", f)
		}
	}
}
