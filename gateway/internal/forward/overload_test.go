package forward_test

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/gateway/internal/forward"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestOverloadedRefusesAtOnce: while the worker is overloaded an envelope
// is answered unavailable without reaching a handler, with the ref echoed;
// once it is not, envelopes are forwarded again.
func TestOverloadedRefusesAtOnce(t *testing.T) {
	n := testkit.StartNATS(t)
	asked := make(chan string, 4)
	respond(t, n, func(m *nats.Msg) {
		req, _ := proto.DecodeRequest(m.Data)
		asked <- req.Ref
		_ = m.Respond([]byte(`{"ok":true}`))
	})
	var overloaded atomic.Bool
	overloaded.Store(true)
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait, Overloaded: overloaded.Load})
	cl, _ := g.dial(t, "alice")

	cl.Send("sendMessage", nil, "during")
	if e := expectError(t, cl, "during", proto.CodeUnavailable); e.Message != "gateway overloaded, retry later" {
		t.Errorf("message = %q, want the overload one", e.Message)
	}
	overloaded.Store(false)
	cl.Send("sendMessage", nil, "after")
	if f := cl.ExpectRef(wait, "after"); f.Event != proto.EventAck {
		t.Fatalf("reply after the overload = %+v, want ack", f)
	}
	if got := <-asked; got != "after" {
		t.Errorf("the handler was asked %q first, want only the envelope sent after the overload", got)
	}
}

// shedCounts is a Recorder that counts Shed by reason.
type shedCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *shedCounts) Envelope(string, proto.Code, time.Duration, bool) {}
func (s *shedCounts) Shed(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n[reason]++
}
func (s *shedCounts) get(reason string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[reason]
}

// TestWorkerInFlightLimitRefuses: with the worker's limit of requests in
// flight reached (here 2, over two sockets), a new envelope is refused at
// once with unavailable, counted as requests_in_flight; once a request
// ends, envelopes are forwarded again.
func TestWorkerInFlightLimitRefuses(t *testing.T) {
	n := testkit.StartNATS(t)
	asked := make(chan *nats.Msg, 10)
	respond(t, n, func(m *nats.Msg) { asked <- m })
	rec := &shedCounts{n: map[string]int{}}
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait, WorkerInFlight: 2, Recorder: rec})
	alice, _ := g.dial(t, "alice")
	bob, _ := g.dial(t, "bob")
	alice.Send("slow", nil, "a1")
	bob.Send("slow", nil, "b1")
	var held []*nats.Msg
	for range 2 {
		select {
		case m := <-asked:
			held = append(held, m)
		case <-time.After(wait):
			t.Fatalf("only %d requests reached the handler, want 2", len(held))
		}
	}
	alice.Send("slow", nil, "a2")
	if e := expectError(t, alice, "a2", proto.CodeUnavailable); e.Message != "gateway overloaded, retry later" {
		t.Errorf("message = %q, want the overload one", e.Message)
	}
	if got := rec.get(forward.ShedInFlight); got != 1 {
		t.Errorf("Shed(%s) = %d, want 1", forward.ShedInFlight, got)
	}
	_ = held[0].Respond([]byte(`{"ok":true}`))
	_ = held[1].Respond([]byte(`{"ok":true}`))
	for _, c := range []struct {
		cl  *testkit.Client
		ref string
	}{{alice, "a1"}, {bob, "b1"}} {
		if f := c.cl.ExpectRef(wait, c.ref); f.Event != proto.EventAck {
			t.Fatalf("reply to %s = %+v, want ack", c.ref, f)
		}
	}
	// Requests count out before their replies: with a1 and b1 answered,
	// the next envelope is forwarded.
	alice.Send("slow", nil, "a3")
	select {
	case m := <-asked:
		_ = m.Respond([]byte(`{"ok":true}`))
	case <-time.After(wait):
		t.Fatalf("a3 did not reach the handler after the requests in flight ended; got %v", alice.Frames())
	}
	if f := alice.ExpectRef(wait, "a3"); f.Event != proto.EventAck {
		t.Errorf("reply to a3 = %+v, want ack", f)
	}
}

// TestOverloadCheckedAfterTheSlot: an envelope that waited for its socket's
// slot is refused if the worker became overloaded while it waited; what was
// true before the wait, which can last a handler timeout, does not let it
// through.
func TestOverloadCheckedAfterTheSlot(t *testing.T) {
	n := testkit.StartNATS(t)
	asked := make(chan *nats.Msg, 4)
	respond(t, n, func(m *nats.Msg) { asked <- m })
	rec := &shedCounts{n: map[string]int{}}
	var overloaded atomic.Bool
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait, MaxInFlight: 1, Overloaded: overloaded.Load, Recorder: rec})
	cl, _ := g.dial(t, "alice")

	cl.Send("slow", nil, "r1")
	var held *nats.Msg
	select {
	case held = <-asked:
	case <-time.After(wait):
		t.Fatal("r1 did not reach the handler")
	}
	cl.Send("slow", nil, "r2")
	// r2 is with the forwarder, waiting for the slot r1 holds.
	for r2 := false; !r2; {
		select {
		case f := <-g.frames:
			r2 = strings.Contains(f, `"r2"`)
		case <-time.After(wait):
			t.Fatal("r2 did not reach the forwarder")
		}
	}
	overloaded.Store(true)
	_ = held.Respond([]byte(`{"ok":true}`))
	if f := cl.ExpectRef(wait, "r1"); f.Event != proto.EventAck {
		t.Fatalf("reply to r1 = %+v, want ack", f)
	}
	if e := expectError(t, cl, "r2", proto.CodeUnavailable); e.Message != "gateway overloaded, retry later" {
		t.Errorf("message = %q, want the overload one", e.Message)
	}
	if got := rec.get(forward.ShedFanout); got != 1 {
		t.Errorf("Shed(%s) = %d, want 1", forward.ShedFanout, got)
	}
	select {
	case m := <-asked:
		t.Errorf("the handler was asked %s after the worker became overloaded", m.Data)
	default:
	}
	// The refused envelope gave its slot back.
	overloaded.Store(false)
	cl.Send("slow", nil, "r3")
	select {
	case m := <-asked:
		_ = m.Respond([]byte(`{"ok":true}`))
	case <-time.After(wait):
		t.Fatal("r3 did not reach the handler: the refused envelope kept the socket's slot")
	}
	if f := cl.ExpectRef(wait, "r3"); f.Event != proto.EventAck {
		t.Errorf("reply to r3 = %+v, want ack", f)
	}
}

// TestWorkerInFlightLimitUnderConcurrentSenders: sockets whose envelopes
// arrive together never take the worker over its limit of requests in
// flight: exactly the limit reach the handler and the others are refused.
func TestWorkerInFlightLimitUnderConcurrentSenders(t *testing.T) {
	n := testkit.StartNATS(t)
	const limit, senders = 3, 12
	asked := make(chan *nats.Msg, senders)
	respond(t, n, func(m *nats.Msg) { asked <- m })
	rec := &shedCounts{n: map[string]int{}}
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait, WorkerInFlight: limit, Recorder: rec})
	clients := map[string]*testkit.Client{}
	for i := range senders {
		u := "u" + strconv.Itoa(i)
		clients[u], _ = g.dial(t, u)
	}
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.Send("slow", nil, "r")
		}()
	}
	wg.Wait()
	// Nothing is answered before every envelope has been forwarded or
	// refused: the first limit reach the handler, and had more gone out,
	// a socket below would have no refusal.
	held := map[string]*nats.Msg{}
	for len(held) < limit {
		select {
		case m := <-asked:
			req, _ := proto.DecodeRequest(m.Data)
			held[req.User] = m
		case <-time.After(wait):
			t.Fatalf("%d requests reached the handler, want %d", len(held), limit)
		}
	}
	for u, cl := range clients {
		if _, ok := held[u]; !ok {
			if e := expectError(t, cl, "r", proto.CodeUnavailable); e.Message != "gateway overloaded, retry later" {
				t.Errorf("%s: message = %q, want the overload one", u, e.Message)
			}
		}
	}
	select {
	case m := <-asked:
		t.Fatalf("request %s reached the handler with %d in flight already", m.Data, limit)
	default:
	}
	if got := rec.get(forward.ShedInFlight); got != senders-limit {
		t.Errorf("Shed(%s) = %d, want %d", forward.ShedInFlight, got, senders-limit)
	}
	for u, m := range held {
		_ = m.Respond([]byte(`{"ok":true}`))
		if f := clients[u].ExpectRef(wait, "r"); f.Event != proto.EventAck {
			t.Errorf("%s: reply = %+v, want ack", u, f)
		}
	}
}
