package loadgen

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestOverflowedSendIsNotMissing: a send the load generator dropped itself
// (its socket's send queue full: client_overflow) never reached the
// gateway, yet schedule records it in the tracker before trying the write
// and leaves it there, so Tally counts its 2*D deliveries as missing and
// its ack as a missing ack: the report's "missing" column, which says the
// stack lost deliveries, also counts sends that were never made. The same
// holds for a write that failed (send_errors).
func TestOverflowedSendIsNotMissing(t *testing.T) {
	const devices = 1
	g := &Generator{cfg: Config{Users: 2, Devices: devices}}
	full := func(user int) *sock {
		// A socket whose flusher still has sendQueue sends waiting: write
		// drops the next send without touching the connection.
		return &sock{g: g, user: user, flushing: true, waiting: sendQueue}
	}
	g.socks = []*sock{full(0), full(1)}
	rs := &runState{id: 1, rate: 1000, start: time.Now(), endSeqs: 1, tracker: NewTracker(1, devices)}
	g.schedule(rs, rand.New(rand.NewPCG(1, 2)), 0)
	if n := g.overflow.Load(); n != 1 {
		t.Fatalf("client overflow %d, want 1: the test's socket did not drop the send", n)
	}
	tally := rs.tracker.Tally()
	if tally.Missing != 0 || tally.MissingAcks != 0 {
		t.Errorf("a send dropped by the load generator counts as %d missing deliveries and %d missing acks; want 0 and 0 (it is one client overflow, and the gateway never saw it)",
			tally.Missing, tally.MissingAcks)
	}
}
