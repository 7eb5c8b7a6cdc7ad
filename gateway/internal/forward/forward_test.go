package forward_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/forward"
	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wait = 5 * time.Second

// gateway is a real HTTP server whose sockets feed a Forwarder: each
// upgraded socket is a ws.Conn for the user named in ?user=, greeted with a
// connected frame so testkit.Dial can be used.
type gateway struct {
	fwd   *forward.Forwarder
	srv   *httptest.Server
	conns chan *ws.Conn
	// frames gets each frame as the socket's read loop hands it to the
	// forwarder, when there is room; a test that does not read it loses
	// nothing.
	frames chan string
}

// seen is the FrameHandler of the test sockets: it tells g.frames of each
// frame, then has the socket's session handle it in the same goroutine.
type seen struct {
	g    *gateway
	sess *forward.Session
}

func (s seen) HandleFrame(data []byte, binary bool) {
	select {
	case s.g.frames <- string(data):
	default:
	}
	s.sess.HandleFrame(data, binary)
}

// queueLimits are the outgoing queue of the test sockets.
var queueLimits = ws.Limits{QueueLen: 256, QueueBytes: 1 << 20}

// startGateway starts a gateway whose forwarder has the settings of cfg;
// MaxInFlight is 16 when cfg leaves it 0.
func startGateway(t *testing.T, nc forward.Requester, cfg forward.Config) *gateway {
	t.Helper()
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 16
	}
	g := &gateway{fwd: forward.New(nc, cfg, zap.NewNop()), conns: make(chan *ws.Conn, 16), frames: make(chan string, 16)}
	up := websocket.Upgrader{}
	var mu sync.Mutex
	n := 0
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := ws.Upgrade(&up, w, r)
		if err != nil {
			return
		}
		mu.Lock()
		n++
		id := "conn-" + strconv.Itoa(n)
		mu.Unlock()
		user := r.URL.Query().Get("user")
		c := ws.NewConn(u, id, user, &queueLimits, zap.NewNop())
		g.conns <- c
		c.Send(proto.AppendConnected(nil, user, c.ID(), 0))
		c.ReadLoop(seen{g, g.fwd.Session(c)}, 65536)
	}))
	t.Cleanup(g.srv.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
		defer cancel()
		if err := g.fwd.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown at the end of the test: %v", err)
		}
	})
	return g
}

// dial connects user and returns the client with the server's Conn.
func (g *gateway) dial(t *testing.T, user string) (*testkit.Client, *ws.Conn) {
	t.Helper()
	cl := testkit.Dial(t, "ws"+strings.TrimPrefix(g.srv.URL, "http")+"/?user="+user, "")
	c := <-g.conns
	t.Cleanup(func() {
		cl.Close()
		select {
		case <-c.Done():
		case <-time.After(ws.WriteWait + ws.CloseGrace + wait):
			t.Errorf("conn %s not done after its client went away", c.ID())
		}
	})
	return cl, c
}

func natsConn(t *testing.T, n *testkit.NATS) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// respond subscribes fn on handlers.> on its own connection, like
// handlers-svc, and waits until the server knows the subscription.
func respond(t *testing.T, n *testkit.NATS, fn nats.MsgHandler) {
	t.Helper()
	rc := natsConn(t, n)
	if _, err := rc.QueueSubscribe(proto.SubjectAll, proto.QueueGroup, fn); err != nil {
		t.Fatal(err)
	}
	if err := rc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func errorArgs(t *testing.T, f proto.Frame) proto.Error {
	t.Helper()
	var e proto.Error
	if err := json.Unmarshal(f.Args, &e); err != nil {
		t.Fatalf("error frame args %s: %v", f.Args, err)
	}
	return e
}

// expectError waits for the reply to ref and checks it is an error of code.
func expectError(t *testing.T, cl *testkit.Client, ref string, code proto.Code) proto.Error {
	t.Helper()
	f := cl.ExpectRef(wait, ref)
	e := errorArgs(t, f)
	if f.Event != proto.EventError || e.Code != code || e.Message == "" || f.ID != cl.User {
		t.Fatalf("reply to %s = %+v (%+v), want an error frame for %s with code %s", ref, f, e, cl.User, code)
	}
	return e
}

// drain stops the forwarder, which waits for the requests in flight and
// closes the socket with 1001 after the frames they queued, and returns
// every frame the client got before the close.
func drain(t *testing.T, g *gateway, cl *testkit.Client) []proto.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := g.fwd.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := cl.WaitClosed(wait); testkit.CloseCode(err) != proto.CloseGoingAway {
		t.Fatalf("socket ended with %v, want close 1001", err)
	}
	return cl.Frames()
}

// TestAckCarriesRefAndRequestCarriesIdentity: the ack names the ref, and
// the request the socket's user and conn (whatever the envelope says) and
// the deadline the gateway waits until.
func TestAckCarriesRefAndRequestCarriesIdentity(t *testing.T) {
	n := testkit.StartNATS(t)
	reqs := make(chan *nats.Msg, 10)
	respond(t, n, func(m *nats.Msg) {
		reqs <- m
		_ = m.Respond([]byte(`{"ok":true}`))
	})
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait})
	cl, c := g.dial(t, "alice")

	// "user" in the envelope is an unknown field: it must not change who
	// the request is from.
	sent := time.Now()
	cl.SendRaw(websocket.TextMessage, []byte(`{"event":"sendMessage","args":{"to":"bob","text":"hi"},"ref":"r1","user":"mallory"}`))
	f := cl.ExpectRef(wait, "r1")
	if f.Event != proto.EventAck || f.ID != "alice" || f.Ref != "r1" || len(f.Args) != 0 {
		t.Errorf("reply = %+v, want an ack for alice with ref r1", f)
	}
	m := <-reqs
	if m.Subject != "handlers.sendMessage" {
		t.Errorf("subject = %s, want handlers.sendMessage", m.Subject)
	}
	// The deadline the gateway waits until, for handlers-svc to honour.
	dl, ok := proto.ParseDeadline(m.Header.Get(proto.DeadlineHeader))
	if !ok || dl.Before(sent.Add(wait-time.Second)) || dl.After(time.Now().Add(wait)) {
		t.Errorf("%s = %q, want about now + the timeout (%s)", proto.DeadlineHeader, m.Header.Get(proto.DeadlineHeader), wait)
	}
	req, err := proto.DecodeRequest(m.Data)
	if err != nil {
		t.Fatalf("request %s: %v", m.Data, err)
	}
	if req.Event != "sendMessage" || req.User != "alice" || req.Conn != c.ID() || req.Ref != "r1" {
		t.Errorf("request = %s, want event sendMessage, user alice, conn %s, ref r1", m.Data, c.ID())
	}
	var args map[string]string
	if err := json.Unmarshal(req.Args, &args); err != nil || args["to"] != "bob" || args["text"] != "hi" {
		t.Errorf("request args = %s, want the envelope's args", req.Args)
	}
}

// TestIdemTravelsAsHeader: an envelope's idempotency key reaches
// handlers-svc in proto.IdemHeader; without one the request has none,
// and a bad one is answered bad_request by the gateway (the handler
// would have answered ok).
func TestIdemTravelsAsHeader(t *testing.T) {
	n := testkit.StartNATS(t)
	reqs := make(chan *nats.Msg, 10)
	respond(t, n, func(m *nats.Msg) {
		reqs <- m
		_ = m.Respond([]byte(`{"ok":true}`))
	})
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait})
	cl, _ := g.dial(t, "alice")

	cl.SendRaw(websocket.TextMessage, []byte(`{"event":"sendMessage","args":1,"ref":"r1","idem":"0f8fad5b-d9cb"}`))
	cl.ExpectRef(wait, "r1")
	if m := <-reqs; m.Header.Get(proto.IdemHeader) != "0f8fad5b-d9cb" {
		t.Errorf("%s = %q, want the envelope's idem", proto.IdemHeader, m.Header.Get(proto.IdemHeader))
	}
	cl.SendRaw(websocket.TextMessage, []byte(`{"event":"sendMessage","args":1,"ref":"r2"}`))
	cl.ExpectRef(wait, "r2")
	if m := <-reqs; len(m.Header.Values(proto.IdemHeader)) != 0 {
		t.Errorf("request without idem carries %s %q", proto.IdemHeader, m.Header.Values(proto.IdemHeader))
	}
	cl.SendRaw(websocket.TextMessage, []byte(`{"event":"sendMessage","args":1,"ref":"r3","idem":"a:b"}`))
	if e := expectError(t, cl, "r3", proto.CodeBadRequest); !strings.Contains(e.Message, "idem") {
		t.Errorf("error %q does not name idem", e.Message)
	}
}

func TestNoAckWithoutRef(t *testing.T) {
	n := testkit.StartNATS(t)
	got := make(chan struct{}, 10)
	respond(t, n, func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"ok":true}`))
		got <- struct{}{}
	})
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait})
	cl, _ := g.dial(t, "alice")
	cl.Send("sendMessage", map[string]any{"text": "hi"}, "")
	cl.SendRaw(websocket.TextMessage, []byte(`{"event":"sendMessage","ref":null}`))
	for range 2 {
		select {
		case <-got:
		case <-time.After(wait):
			t.Fatal("the handler was not asked")
		}
	}
	if frames := drain(t, g, cl); len(frames) != 0 {
		t.Errorf("got %+v, want no frame for envelopes without ref", frames)
	}
}

func TestReplies(t *testing.T) {
	n := testkit.StartNATS(t)
	replies := map[string]string{
		"ok":         `{"ok":true}`,
		"okSpaced":   `{ "ok" : true }`,
		"rejected":   `{"error":{"code":"bad_request","message":"to is required"}}`,
		"failed":     `{"error":{"code":"handler_error","message":"database down"}}`,
		"noHandler":  `{"error":{"code":"unknown_event","message":"no handler for noHandler"}}`,
		"redisDown":  `{"error":{"code":"unavailable","message":"try again"}}`,
		"garbage":    `garbage`,
		"notOK":      `{"ok":false}`,
		"emptyError": `{"error":{}}`,
		"empty":      ``,
	}
	respond(t, n, func(m *nats.Msg) {
		ev, _ := proto.EventFromSubject(m.Subject)
		_ = m.Respond([]byte(replies[ev]))
	})
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait})
	cl, _ := g.dial(t, "alice")
	tests := []struct {
		event   string
		code    proto.Code // "" = ack
		message string     // "" = any
	}{
		{"ok", "", ""},
		{"okSpaced", "", ""},
		{"rejected", proto.CodeBadRequest, "to is required"},
		{"failed", proto.CodeHandlerError, "database down"},
		{"noHandler", proto.CodeUnknownEvent, "no handler for noHandler"},
		{"redisDown", proto.CodeUnavailable, "try again"},
		{"garbage", proto.CodeHandlerError, ""},
		{"notOK", proto.CodeHandlerError, ""},
		{"emptyError", proto.CodeHandlerError, ""},
		{"empty", proto.CodeHandlerError, ""},
	}
	for _, tt := range tests {
		t.Run(tt.event, func(t *testing.T) {
			ref := "ref-" + tt.event
			cl.Send(tt.event, nil, ref)
			if tt.code == "" {
				if f := cl.ExpectRef(wait, ref); f.Event != proto.EventAck || f.ID != "alice" {
					t.Errorf("reply = %+v, want an ack", f)
				}
				return
			}
			e := expectError(t, cl, ref, tt.code)
			if tt.message != "" && e.Message != tt.message {
				t.Errorf("message = %q, want %q", e.Message, tt.message)
			}
		})
	}
}

func TestNoResponders(t *testing.T) {
	n := testkit.StartNATS(t)
	const timeout = 3 * time.Second
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: timeout})
	cl, _ := g.dial(t, "alice")
	start := time.Now()
	cl.Send("sendMessage", nil, "r1")
	expectError(t, cl, "r1", proto.CodeUnavailable)
	if d := time.Since(start); d >= timeout {
		t.Errorf("unavailable came after %s; want it at once, not after the %s timeout", d, timeout)
	}
}

func TestTimeout(t *testing.T) {
	n := testkit.StartNATS(t)
	respond(t, n, func(*nats.Msg) {}) // never answers
	const timeout = 200 * time.Millisecond
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: timeout})
	cl, _ := g.dial(t, "alice")
	start := time.Now()
	cl.Send("sendMessage", nil, "r1")
	expectError(t, cl, "r1", proto.CodeTimeout)
	if d := time.Since(start); d < timeout {
		t.Errorf("timeout after %s, before the %s handler timeout", d, timeout)
	}
	cl.Send("sendMessage", nil, "")
	f := cl.ExpectEvent(wait, proto.EventError)
	if e := errorArgs(t, f); e.Code != proto.CodeTimeout || f.Ref != "" {
		t.Errorf("got %+v, want a timeout error without ref", f)
	}
}

func TestBadEnvelope(t *testing.T) {
	n := testkit.StartNATS(t)
	asked := make(chan string, 10)
	respond(t, n, func(m *nats.Msg) {
		asked <- string(m.Data)
		_ = m.Respond([]byte(`{"ok":true}`))
	})
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait})
	cl, _ := g.dial(t, "alice")
	long := strings.Repeat("r", proto.MaxRefLen+1)
	tests := []struct {
		name    string
		frame   string
		wantRef string // echoed ref; "" = none
	}{
		{"not JSON", `not json`, ""},
		{"not an object", `["sendMessage"]`, ""},
		{"no event, ref echoed", `{"args":{},"ref":"b1"}`, "b1"},
		{"bad event name, ref echoed", `{"event":"9lives","ref":"b2"}`, "b2"},
		{"event not a string, ref echoed", `{"event":5,"ref":"b3"}`, "b3"},
		{"event with a dot, ref echoed", `{"event":"a.b","ref":"b4"}`, "b4"},
		{"ref too long", `{"event":"sendMessage","ref":"` + long + `"}`, ""},
		{"ref not a string", `{"event":"sendMessage","ref":7}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl.SendRaw(websocket.TextMessage, []byte(tt.frame))
			f := cl.ExpectEvent(wait, proto.EventError)
			if e := errorArgs(t, f); e.Code != proto.CodeBadRequest || e.Message == "" || f.Ref != tt.wantRef || f.ID != "alice" {
				t.Errorf("got %+v (%+v), want bad_request with ref %q", f, e, tt.wantRef)
			}
		})
	}
	// A valid envelope afterwards is the first the handler sees.
	cl.Send("sendMessage", nil, "good")
	if f := cl.ExpectRef(wait, "good"); f.Event != proto.EventAck {
		t.Fatalf("reply = %+v, want ack", f)
	}
	if got := <-asked; !strings.Contains(got, `"ref":"good"`) {
		t.Errorf("the handler was asked %s first, want the valid envelope", got)
	}
	select {
	case got := <-asked:
		t.Errorf("the handler was also asked %s", got)
	default:
	}
}

func TestNATSDown(t *testing.T) {
	n := testkit.StartNATS(t)
	respond(t, n, func(m *nats.Msg) { _ = m.Respond([]byte(`{"ok":true}`)) })
	nc := natsConn(t, n)
	g := startGateway(t, nc, forward.Config{Timeout: wait})
	cl, _ := g.dial(t, "alice")
	cl.Send("sendMessage", nil, "before")
	if f := cl.ExpectRef(wait, "before"); f.Event != proto.EventAck {
		t.Fatalf("reply = %+v, want ack", f)
	}
	n.Stop()
	testkit.Eventually(t, wait, "the NATS connection notices the server is gone", func() bool { return !nc.IsConnected() })
	start := time.Now()
	cl.Send("sendMessage", nil, "during")
	expectError(t, cl, "during", proto.CodeUnavailable)
	if d := time.Since(start); d >= wait {
		t.Errorf("unavailable after %s, want it at once", d)
	}
}

// TestShutdown: once Shutdown begins new envelopes are refused with
// unavailable, a request in flight is still answered, Shutdown waits for
// it, and the socket is closed with 1001 after its answer.
func TestShutdown(t *testing.T) {
	n := testkit.StartNATS(t)
	release := make(chan struct{})
	slowAsked := make(chan struct{}, 1)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	respond(t, n, func(m *nats.Msg) {
		if m.Subject == "handlers.slow" {
			slowAsked <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-release
				_ = m.Respond([]byte(`{"ok":true}`))
			}()
			return
		}
		_ = m.Respond([]byte(`{"ok":true}`))
	})
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait})
	cl, _ := g.dial(t, "alice")

	cl.Send("slow", nil, "inflight")
	<-slowAsked
	shutdownDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
		defer cancel()
		shutdownDone <- g.fwd.Shutdown(ctx)
	}()

	// Probe until the forwarder refuses: then Shutdown has begun.
	for i := 0; ; i++ {
		ref := "probe-" + strconv.Itoa(i)
		cl.Send("fast", nil, ref)
		f := cl.ExpectRef(wait, ref)
		if f.Event == proto.EventError {
			if e := errorArgs(t, f); e.Code != proto.CodeUnavailable {
				t.Fatalf("new frame during shutdown got %+v, want unavailable", e)
			}
			break
		}
		if i > 1000 {
			t.Fatal("the forwarder kept forwarding after Shutdown")
		}
	}
	select {
	case err := <-shutdownDone:
		t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
	default:
	}
	close(release)
	if f := cl.ExpectRef(wait, "inflight"); f.Event != proto.EventAck {
		t.Errorf("request in flight at shutdown got %+v, want its ack", f)
	}
	select {
	case err := <-shutdownDone:
		if err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Shutdown did not return after the request in flight ended")
	}
	// Its last answer sent, the socket is closed so that its client
	// reconnects elsewhere.
	if err := cl.WaitClosed(wait); testkit.CloseCode(err) != proto.CloseGoingAway {
		t.Errorf("socket ended with %v after its last answer, want close 1001", err)
	}
}

// TestShutdownClosesSocketsOnceAnswered: Shutdown closes with 1001 at once
// a socket with no request in flight, and one accepted after it began,
// while a socket whose request is in flight stays open until it has its
// answer: one socket's slow handler keeps no other socket on a gateway
// that refuses everything.
func TestShutdownClosesSocketsOnceAnswered(t *testing.T) {
	n := testkit.StartNATS(t)
	asked := make(chan *nats.Msg, 1)
	respond(t, n, func(m *nats.Msg) { asked <- m })
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: 3 * wait})
	slow, _ := g.dial(t, "alice")
	idle, _ := g.dial(t, "bob")
	slow.Send("slow", nil, "r1")
	m := <-asked
	shutdownDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*wait)
		defer cancel()
		shutdownDone <- g.fwd.Shutdown(ctx)
	}()
	if err := idle.WaitClosed(wait); testkit.CloseCode(err) != proto.CloseGoingAway {
		t.Errorf("idle socket ended with %v, want close 1001 at once", err)
	}
	late, _ := g.dial(t, "carol")
	if err := late.WaitClosed(wait); testkit.CloseCode(err) != proto.CloseGoingAway {
		t.Errorf("socket accepted during the shutdown ended with %v, want close 1001 at once", err)
	}
	if closed, err := slow.Closed(); closed {
		t.Fatalf("socket with a request in flight closed before its answer: %v", err)
	}
	if err := m.Respond([]byte(`{"ok":true}`)); err != nil {
		t.Fatal(err)
	}
	if f := slow.ExpectRef(wait, "r1"); f.Event != proto.EventAck {
		t.Errorf("request in flight at shutdown got %+v, want its ack", f)
	}
	if err := slow.WaitClosed(wait); testkit.CloseCode(err) != proto.CloseGoingAway {
		t.Errorf("socket ended with %v after its last answer, want close 1001", err)
	}
	if err := <-shutdownDone; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	n := testkit.StartNATS(t)
	asked := make(chan struct{}, 1)
	respond(t, n, func(*nats.Msg) { asked <- struct{}{} }) // never answers
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: time.Second})
	cl, _ := g.dial(t, "alice")
	cl.Send("slow", nil, "r1")
	<-asked
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := g.fwd.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Errorf("Shutdown with a request in flight past its deadline = %v, want DeadlineExceeded", err)
	}
	expectError(t, cl, "r1", proto.CodeTimeout)
}

// TestInFlightLimit checks that a socket has at most MaxInFlight requests
// running; the next envelope waits for a slot.
func TestInFlightLimit(t *testing.T) {
	n := testkit.StartNATS(t)
	const limit = 2
	asked := make(chan *nats.Msg, 10)
	respond(t, n, func(m *nats.Msg) { asked <- m })
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait, MaxInFlight: limit})
	cl, _ := g.dial(t, "alice")
	for i := range limit + 1 {
		cl.Send("slow", nil, "r"+strconv.Itoa(i))
	}
	var held []*nats.Msg
	for range limit {
		select {
		case m := <-asked:
			held = append(held, m)
		case <-time.After(wait):
			t.Fatalf("only %d requests reached the handler, want %d", len(held), limit)
		}
	}
	select {
	case m := <-asked:
		t.Fatalf("request %s reached the handler with %d in flight already", m.Data, limit)
	case <-time.After(200 * time.Millisecond):
	}
	_ = held[0].Respond([]byte(`{"ok":true}`))
	select {
	case m := <-asked:
		held = append(held, m)
	case <-time.After(wait):
		t.Fatal("the waiting request did not go out when a slot freed")
	}
	for _, m := range held[1:] {
		_ = m.Respond([]byte(`{"ok":true}`))
	}
	for i := range limit + 1 {
		if f := cl.ExpectRef(wait, "r"+strconv.Itoa(i)); f.Event != proto.EventAck {
			t.Errorf("reply %d = %+v, want ack", i, f)
		}
	}
}

// dialRaw connects a bare gorilla client for user, reads its connected
// frame and returns it with the server's Conn, for checks on the exact bytes.
func (g *gateway) dialRaw(t *testing.T, user string) (*websocket.Conn, *ws.Conn) {
	t.Helper()
	cl, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(g.srv.URL, "http")+"/?user="+user, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := <-g.conns
	t.Cleanup(func() {
		_ = cl.Close()
		select {
		case <-c.Done():
		case <-time.After(ws.WriteWait + ws.CloseGrace + wait):
			t.Errorf("conn %s not done after its client went away", c.ID())
		}
	})
	if got := readRaw(t, cl); !strings.Contains(got, `"event":"connected"`) {
		t.Fatalf("first frame = %s, want connected", got)
	}
	return cl, c
}

func readRaw(t *testing.T, cl *websocket.Conn) string {
	t.Helper()
	_ = cl.SetReadDeadline(time.Now().Add(wait))
	_, data, err := cl.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(data)
}

// TestEmptyRefIsARef checks that a ref of "" is a ref like any other: it is
// acked and echoed, while an absent or null ref gets neither.
func TestEmptyRefIsARef(t *testing.T) {
	n := testkit.StartNATS(t)
	respond(t, n, func(m *nats.Msg) {
		if m.Subject == "handlers.fail" {
			_ = m.Respond([]byte(`{"error":{"code":"handler_error","message":"no"}}`))
			return
		}
		_ = m.Respond([]byte(`{"ok":true}`))
	})
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait})
	cl, _ := g.dialRaw(t, "alice")
	tests := []struct {
		name, frame, want string
	}{
		{"ack", `{"event":"ok","ref":""}`, `{"event":"ack","id":"alice","ref":""}`},
		{"handler error", `{"event":"fail","ref":""}`, `{"event":"error","id":"alice","ref":"","args":{"code":"handler_error","message":"no"}}`},
		{"bad envelope", `{"event":"9","ref":""}`, `"ref":""`},
		{"no ref on a bad envelope", `{"event":"9"}`, `{"event":"error","id":"alice","args":`},
		{"null ref on a bad envelope", `{"event":"9","ref":null}`, `{"event":"error","id":"alice","args":`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := cl.WriteMessage(websocket.TextMessage, []byte(tt.frame)); err != nil {
				t.Fatal(err)
			}
			if got := readRaw(t, cl); !strings.Contains(got, tt.want) {
				t.Errorf("reply to %s = %s, want %s", tt.frame, got, tt.want)
			}
		})
	}
}

// panicky is a NATS connection whose requests for event "boom" hit a bug.
type panicky struct{ *nats.Conn }

func (p panicky) RequestMsgWithContext(ctx context.Context, msg *nats.Msg) (*nats.Msg, error) {
	if msg.Subject == proto.Subject("boom") {
		panic("bug while forwarding")
	}
	return p.Conn.RequestMsgWithContext(ctx, msg)
}

// TestPanicClosesOnlyThatSocket checks that a panic while forwarding closes
// the socket concerned with 1011, frees its slot and leaves the forwarder
// and the other sockets working.
func TestPanicClosesOnlyThatSocket(t *testing.T) {
	n := testkit.StartNATS(t)
	respond(t, n, func(m *nats.Msg) { _ = m.Respond([]byte(`{"ok":true}`)) })
	g := startGateway(t, panicky{natsConn(t, n)}, forward.Config{Timeout: wait})
	bad, badConn := g.dial(t, "mallory")
	good, _ := g.dial(t, "alice")
	bad.Send("boom", nil, "b1")
	if code := testkit.CloseCode(bad.WaitClosed(wait)); code != proto.CloseInternalError {
		t.Errorf("socket whose request panicked closed with %d, want 1011", code)
	}
	if code, _ := badConn.CloseCode(); code != proto.CloseInternalError {
		t.Errorf("CloseCode = %d, want 1011", code)
	}
	good.Send("fine", nil, "g1")
	if f := good.ExpectRef(wait, "g1"); f.Event != proto.EventAck {
		t.Errorf("other socket got %+v after the panic, want ack", f)
	}
	// The panicking request was counted out: Shutdown does not wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := g.fwd.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v: the panicked request is still counted in flight", err)
	}
}

// TestNATSLostDuringRequest: a request in flight when NATS goes away ends
// with unavailable at once, not with timeout after the handler timeout.
func TestNATSLostDuringRequest(t *testing.T) {
	n := testkit.StartNATS(t)
	received := make(chan struct{}, 1)
	respond(t, n, func(*nats.Msg) { received <- struct{}{} }) // never answers
	nc := natsConn(t, n)
	const timeout = time.Minute
	g := startGateway(t, nc, forward.Config{Timeout: timeout})
	nc.SetDisconnectErrHandler(func(*nats.Conn, error) { g.fwd.Disconnected() })
	cl, _ := g.dial(t, "alice")
	cl.Send("sendMessage", nil, "r1")
	<-received
	start := time.Now()
	n.Stop()
	expectError(t, cl, "r1", proto.CodeUnavailable)
	if d := time.Since(start); d >= wait {
		t.Errorf("unavailable %s after NATS went away, want it at once", d)
	}
}
