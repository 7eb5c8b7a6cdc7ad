package forward_test

import (
	"strings"
	"testing"

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
