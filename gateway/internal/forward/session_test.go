package forward_test

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/gateway/internal/forward"
	"github.com/switchboard/switchboard/gateway/internal/ratelimit"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// refusals is a Recorder that lists the frames answered with an error, as
// event/code, in the order they were recorded.
type refusals struct {
	mu  sync.Mutex
	got []string
}

func (r *refusals) Envelope(event string, code proto.Code, _ time.Duration, _ bool) {
	if code == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, event+"/"+string(code))
}

func (r *refusals) Shed(string) {}

func (r *refusals) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// TestBinaryFrameGetsBadRequest: a binary frame is answered bad_request,
// without a ref, is not forwarded, and the socket stays open.
func TestBinaryFrameGetsBadRequest(t *testing.T) {
	n := testkit.StartNATS(t)
	asked := make(chan string, 4)
	respond(t, n, func(m *nats.Msg) {
		asked <- m.Subject
		_ = m.Respond([]byte(`{"ok":true}`))
	})
	rec := &refusals{}
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait, Recorder: rec})
	cl, c := g.dialRaw(t, "alice")
	if err := cl.WriteMessage(websocket.BinaryMessage, []byte(`{"event":"x","ref":"r1"}`)); err != nil {
		t.Fatal(err)
	}
	want := `{"event":"error","id":"alice","args":{"code":"bad_request","message":"binary frames are not supported: send JSON in text frames"}}`
	if got := readRaw(t, cl); got != want {
		t.Errorf("reply to a binary frame = %s, want %s", got, want)
	}
	if err := cl.WriteMessage(websocket.TextMessage, []byte(`{"event":"after","ref":"r2"}`)); err != nil {
		t.Fatal(err)
	}
	if got := readRaw(t, cl); got != `{"event":"ack","id":"alice","ref":"r2"}` {
		t.Errorf("reply to the text frame after it = %s, want its ack", got)
	}
	if got := <-asked; got != proto.Subject("after") {
		t.Errorf("the handler was asked %s, want only the text frame's event", got)
	}
	if got, want := rec.list(), []string{"/" + string(proto.CodeBadRequest)}; !slices.Equal(got, want) {
		t.Errorf("recorded %q, want %q", got, want)
	}
	if code, _ := c.CloseCode(); code != 0 {
		t.Errorf("CloseCode = %d, want 0 (open)", code)
	}
}

// TestRateLimit: every frame counts against the socket's allowance, bad
// ones included; a frame over it is answered rate_limited with its ref
// when it has a valid one, and is not forwarded; the refusal that makes
// the client abusive closes the socket with 1008. Each refusal is
// recorded with the frame's event and the code sent, and counted by the
// policy's OnRefuse.
func TestRateLimit(t *testing.T) {
	n := testkit.StartNATS(t)
	asked := make(chan string, 8)
	respond(t, n, func(m *nats.Msg) {
		asked <- m.Subject
		_ = m.Respond([]byte(`{"ok":true}`))
	})
	rec := &refusals{}
	var limited atomic.Int64
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait, Recorder: rec, Rate: ratelimit.Policy{
		Rate: 0.001, Burst: 2, CloseAfter: 3, Window: time.Minute, OnRefuse: func() { limited.Add(1) },
	}})
	cl, c := g.dial(t, "alice")
	frames := []struct {
		mt   int
		data string
	}{
		{websocket.TextMessage, `{"event":"a","ref":"1"}`}, // forwarded
		{websocket.BinaryMessage, `{"event":"b"}`},         // bad_request (within the burst)
		{websocket.TextMessage, `{"event":"c","ref":"3"}`}, // rate_limited
		{websocket.BinaryMessage, `{"event":"d"}`},         // rate_limited, not an envelope
		{websocket.TextMessage, `{"event":"e","ref":"5"}`}, // rate_limited: abusive, closes
	}
	for _, f := range frames {
		cl.SendRaw(f.mt, []byte(f.data))
	}
	if code := testkit.CloseCode(cl.WaitClosed(wait)); code != proto.ClosePolicy {
		t.Fatalf("closed with %d, want 1008", code)
	}
	if code, reason := c.CloseCode(); code != proto.ClosePolicy || reason != proto.ReasonRateLimited {
		t.Errorf("CloseCode = %d %q, want 1008 %q", code, reason, proto.ReasonRateLimited)
	}
	if e := errorArgs(t, cl.ExpectRef(0, "3")); e.Code != proto.CodeRateLimited {
		t.Errorf("reply to ref 3 = %+v, want rate_limited", e)
	}
	var noRef []proto.Code
	for _, f := range cl.Frames() {
		if f.Event == proto.EventError && f.Ref == "" {
			noRef = append(noRef, errorArgs(t, f).Code)
		}
	}
	if want := []proto.Code{proto.CodeBadRequest, proto.CodeRateLimited}; !slices.Equal(noRef, want) {
		t.Errorf("errors without a ref = %q, want %q", noRef, want)
	}
	want := []string{"/" + string(proto.CodeBadRequest), "c/" + string(proto.CodeRateLimited), "/" + string(proto.CodeRateLimited), "e/" + string(proto.CodeRateLimited)}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Errorf("recorded %q, want %q", got, want)
	}
	if got := limited.Load(); got != 3 {
		t.Errorf("OnRefuse called %d times, want 3", got)
	}
	if got := <-asked; got != proto.Subject("a") {
		t.Errorf("the handler was asked %s, want a", got)
	}
	select {
	case got := <-asked:
		t.Errorf("the handler was also asked %s", got)
	default:
	}
}

// TestInvalidUTF8ClosesEvenOverRateLimit: the contract's 1007 for invalid
// UTF-8 holds also for a socket that is over its allowance.
func TestInvalidUTF8ClosesEvenOverRateLimit(t *testing.T) {
	n := testkit.StartNATS(t)
	respond(t, n, func(m *nats.Msg) { _ = m.Respond([]byte(`{"ok":true}`)) })
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait, Rate: ratelimit.Policy{
		Rate: 0.001, Burst: 1, CloseAfter: 100, Window: time.Minute,
	}})
	cl, _ := g.dialRaw(t, "alice")
	for _, frame := range []string{`{"event":"a"}`, `{"event":"b","ref":"r2"}`} {
		if err := cl.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
			t.Fatal(err)
		}
	}
	// The second frame is over the allowance: rate_limited, with its ref.
	if got := readRaw(t, cl); !strings.Contains(got, `"code":"rate_limited"`) || !strings.Contains(got, `"ref":"r2"`) {
		t.Fatalf("got %s; want a rate_limited error for r2", got)
	}
	if err := cl.WriteMessage(websocket.TextMessage, []byte("{\"event\":\"\xff\"}")); err != nil {
		t.Fatal(err)
	}
	_ = cl.SetReadDeadline(time.Now().Add(wait))
	_, _, err := cl.ReadMessage()
	if code := testkit.CloseCode(err); code != websocket.CloseInvalidFramePayloadData {
		t.Fatalf("read = %v, want close 1007", err)
	}
}

// TestSlotWaitEndsWhenSocketCloses: a read loop waiting for one of its
// socket's request slots gives up at once when the gateway closes the
// socket, so the socket ends (and shutdown goes on) without waiting for the
// handler timeout; the envelope that waited is not forwarded.
func TestSlotWaitEndsWhenSocketCloses(t *testing.T) {
	n := testkit.StartNATS(t)
	asked := make(chan *nats.Msg, 4)
	respond(t, n, func(m *nats.Msg) { asked <- m }) // answered by the test
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: time.Minute, MaxInFlight: 1})
	cl, c := g.dial(t, "alice")
	cl.Send("slow", nil, "r1")
	var held *nats.Msg
	select {
	case held = <-asked:
	case <-time.After(wait):
		t.Fatal("r1 did not reach the handler")
	}
	defer func() { _ = held.Respond([]byte(`{"ok":true}`)) }()
	cl.Send("slow", nil, "r2")
	for r2 := false; !r2; { // r2 waits for the slot r1 holds
		select {
		case f := <-g.frames:
			r2 = strings.Contains(f, `"r2"`)
		case <-time.After(wait):
			t.Fatal("r2 did not reach the session")
		}
	}
	c.Close(websocket.CloseGoingAway, "shutting down")
	if code := testkit.CloseCode(cl.WaitClosed(wait)); code != websocket.CloseGoingAway {
		t.Errorf("close code %d, want 1001", code)
	}
	select {
	case <-c.Done():
	case <-time.After(wait):
		t.Fatal("the socket has not ended: its read loop still waits for a slot")
	}
	select {
	case m := <-asked:
		t.Errorf("the handler was asked %s after the socket closed", m.Data)
	default:
	}
}
