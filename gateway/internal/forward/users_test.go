package forward_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/gateway/internal/forward"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestUserAllowanceSharedBySockets: a user's sockets on a worker share one
// allowance, so opening more sockets does not multiply what the user may
// send; another user's allowance is their own.
func TestUserAllowanceSharedBySockets(t *testing.T) {
	n := testkit.StartNATS(t)
	respond(t, n, func(m *nats.Msg) { _ = m.Respond([]byte(`{"ok":true}`)) })
	// A rate too small to refill within the test: the burst is all.
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait, MaxInFlight: 8, UserRate: 0.001, UserBurst: 3})
	a1, _ := g.dial(t, "alice")
	a2, _ := g.dial(t, "alice")
	bob, _ := g.dial(t, "bob")
	for i, cl := range []*testkit.Client{a1, a2, a1} {
		ref := string(rune('a' + i))
		cl.Send("e", nil, ref)
		if f := cl.ExpectRef(wait, ref); f.Event != proto.EventAck {
			t.Fatalf("envelope %d of alice's burst: %+v", i, f)
		}
	}
	a2.Send("e", nil, "over")
	if e := expectError(t, a2, "over", proto.CodeRateLimited); !strings.Contains(e.Message, "this user") {
		t.Errorf("message %q, want it to name the user's allowance", e.Message)
	}
	bob.Send("e", nil, "b")
	if f := bob.ExpectRef(wait, "b"); f.Event != proto.EventAck {
		t.Fatalf("bob was limited by alice's allowance: %+v", f)
	}
}

// TestUserAllowanceWaitsThenRefuses: a socket over its user's allowance
// waits for it (UserWait) rather than being refused at once, so a user's
// burst a little over the allowance is served, only later; a frame that
// would wait longer than UserWait is refused.
func TestUserAllowanceWaitsThenRefuses(t *testing.T) {
	n := testkit.StartNATS(t)
	respond(t, n, func(m *nats.Msg) { _ = m.Respond([]byte(`{"ok":true}`)) })
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait, MaxInFlight: 8, UserRate: 20, UserBurst: 1, UserWait: time.Second})
	a1, _ := g.dial(t, "alice")
	a2, _ := g.dial(t, "alice")
	start := time.Now()
	for i := range 6 {
		cl := []*testkit.Client{a1, a2}[i%2]
		ref := fmt.Sprint(i)
		cl.Send("e", nil, ref)
		if f := cl.ExpectRef(wait, ref); f.Event != proto.EventAck {
			t.Fatalf("envelope %d, within a second's wait of the allowance: %+v", i, f)
		}
	}
	// One at once, five more at 20/s: a quarter of a second at least.
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("6 envelopes at 20/s with a burst of 1 took %s: the allowance was not applied", d)
	}

	slow := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait, MaxInFlight: 8, UserRate: 0.001, UserBurst: 1, UserWait: 50 * time.Millisecond})
	b, _ := slow.dial(t, "bob")
	b.Send("e", nil, "first")
	if f := b.ExpectRef(wait, "first"); f.Event != proto.EventAck {
		t.Fatalf("bob's first: %+v", f)
	}
	b.Send("e", nil, "second")
	expectError(t, b, "second", proto.CodeRateLimited)
}

// TestInFlightBytesBound: the args of requests in flight are bounded in
// bytes, not only in number: a large envelope over the bound is refused
// at once with unavailable while others are held.
func TestInFlightBytesBound(t *testing.T) {
	n := testkit.StartNATS(t)
	held := make(chan *nats.Msg, 4)
	respond(t, n, func(m *nats.Msg) { held <- m })
	g := startGateway(t, natsConn(t, n), forward.Config{Timeout: wait, MaxInFlight: 8, WorkerInFlightBytes: 1000})
	cl, _ := g.dial(t, "alice")
	cl.Send("slow", strings.Repeat("x", 600), "r1")
	first := <-held
	cl.Send("slow", strings.Repeat("y", 600), "r2")
	if e := expectError(t, cl, "r2", proto.CodeUnavailable); e.Message != "gateway overloaded, retry later" {
		t.Errorf("message %q, want the overload one", e.Message)
	}
	_ = first.Respond([]byte(`{"ok":true}`))
	if f := cl.ExpectRef(wait, "r1"); f.Event != proto.EventAck {
		t.Fatalf("r1: %+v", f)
	}
	cl.Send("slow", strings.Repeat("z", 600), "r3")
	_ = (<-held).Respond([]byte(`{"ok":true}`))
	if f := cl.ExpectRef(wait, "r3"); f.Event != proto.EventAck {
		t.Fatalf("r3, after the bytes were freed: %+v", f)
	}
}
