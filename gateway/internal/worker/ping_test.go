package worker

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/connid"
	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/proto"
)

// TestPingSlotsSpread checks that connection ids spread over the ping
// slots, so no tick pings a large share of the sockets at once.
func TestPingSlotsSpread(t *testing.T) {
	ids := connid.New()
	var counts [pingSlots]int
	const n = 100 * pingSlots
	for range n {
		s := pingSlot(ids.Next())
		if s >= pingSlots {
			t.Fatalf("slot %d out of range", s)
		}
		counts[s]++
	}
	for s, c := range counts {
		if c < n/pingSlots/2 || c > n/pingSlots*2 {
			t.Errorf("slot %d has %d of %d ids, want about %d", s, c, n, n/pingSlots)
		}
	}
}

// fakeSocket counts its pings, records the frames sent and its close.
type fakeSocket struct {
	id        string
	pings     int
	sent      []string
	expires   time.Time
	closeCode int
	closes    int
}

func (s *fakeSocket) ID() string { return s.id }
func (s *fakeSocket) Ping()      { s.pings++ }
func (s *fakeSocket) Beat(data []byte) bool {
	s.sent = append(s.sent, string(data))
	return true
}
func (s *fakeSocket) Expires() time.Time { return s.expires }
func (s *fakeSocket) Close(code int, _ string) {
	if s.closes++; s.closes == 1 {
		s.closeCode = code
	}
}

// TestPingerTicksTouchOneSlot: a tick pings the sockets of its slot and no
// other; a full round of ticks pings every socket once; a removed socket
// is pinged no more.
func TestPingerTicksTouchOneSlot(t *testing.T) {
	var p pinger[*fakeSocket]
	ids := connid.New()
	socks := make([]*fakeSocket, 10*pingSlots)
	for i := range socks {
		socks[i] = &fakeSocket{id: ids.Next()}
		p.add(socks[i])
	}
	const slot = 7
	now := time.Now()
	p.tick(slot, now)
	for _, s := range socks {
		if want := btoi(pingSlot(s.id) == slot); s.pings != want {
			t.Fatalf("socket %s of slot %d pinged %d times by a tick of slot %d, want %d", s.id, pingSlot(s.id), s.pings, slot, want)
		}
	}
	for s := range uint32(pingSlots) {
		if s != slot {
			p.tick(s, now)
		}
	}
	for _, s := range socks {
		if s.pings != 1 {
			t.Fatalf("socket %s pinged %d times in a round of ticks, want once", s.id, s.pings)
		}
	}
	gone := socks[0]
	p.remove(gone)
	for s := range uint32(pingSlots) {
		p.tick(s, now)
	}
	if gone.pings != 1 {
		t.Errorf("a removed socket was pinged again (%d pings)", gone.pings)
	}
	if socks[1].pings != 2 {
		t.Errorf("a socket still listed was pinged %d times in two rounds, want 2", socks[1].pings)
	}
}

// TestPingerHeartbeats: a socket that asked for heartbeats gets its frame
// with every ping, one that did not never gets one, and a removed socket
// gets none again.
func TestPingerHeartbeats(t *testing.T) {
	var p pinger[*fakeSocket]
	ids := connid.New()
	beat := &fakeSocket{id: ids.Next()}
	quiet := &fakeSocket{id: ids.Next()}
	p.add(beat)
	p.add(quiet)
	frame := proto.AppendHeartbeat(nil, "alice")
	p.heartbeat(beat, beat, frame)
	never := &fakeSocket{id: ids.Next()}
	p.heartbeat(never, never, frame) // never added (or removed already): ignored

	round := func() {
		for s := range uint32(pingSlots) {
			p.tick(s, time.Now())
		}
	}
	round()
	round()
	if len(beat.sent) != 2 || beat.sent[0] != string(frame) || beat.sent[1] != string(frame) {
		t.Fatalf("after two rounds of pings (%d) the heartbeat socket was sent %q, want the heartbeat twice", beat.pings, beat.sent)
	}
	if len(quiet.sent) != 0 || quiet.pings != 2 {
		t.Fatalf("a socket without heartbeats was sent %q and pinged %d times, want nothing and 2 pings", quiet.sent, quiet.pings)
	}
	if len(never.sent) != 0 || never.pings != 0 {
		t.Fatalf("a socket never added was sent %q and pinged %d times", never.sent, never.pings)
	}
	p.remove(beat)
	round()
	if len(beat.sent) != 2 {
		t.Errorf("a removed socket was sent %d heartbeats, want still 2", len(beat.sent))
	}
	if l := &p.slots[pingSlot(beat.id)]; len(l.beats) != 0 {
		t.Errorf("remove left %d heartbeats in the slot", len(l.beats))
	}
}

// TestExpiredTokenAttack: a socket whose token expires is closed with 4001
// once its Expires passes, not left open for as long as the client likes;
// the pinger finds it through the visits it already makes, without a timer
// per socket, and holds in its heap only the sockets about to expire.
func TestExpiredTokenAttack(t *testing.T) {
	var p pinger[*fakeSocket]
	ids := connid.New()
	now := time.Now()
	soon := &fakeSocket{id: ids.Next(), expires: now.Add(10 * time.Second)}
	later := &fakeSocket{id: ids.Next(), expires: now.Add(time.Hour)}
	never := &fakeSocket{id: ids.Next()}
	closedEarly := &fakeSocket{id: ids.Next(), expires: now.Add(5 * time.Second)}
	for _, s := range []*fakeSocket{soon, later, never, closedEarly} {
		p.add(s)
	}
	if n := len(p.expiring.heap); n != 2 {
		t.Fatalf("%d sockets in the expiring heap after add, want the 2 that expire within %s", n, expiryHorizon)
	}
	p.remove(closedEarly)

	p.expire(now.Add(9 * time.Second))
	if soon.closes != 0 {
		t.Fatalf("closed %s before its expiry", soon.id)
	}
	p.expire(now.Add(11 * time.Second))
	if soon.closes != 1 || soon.closeCode != proto.CloseTokenExpired {
		t.Fatalf("after its expiry: %d closes with code %d, want 1 with %d", soon.closes, soon.closeCode, proto.CloseTokenExpired)
	}
	if later.closes != 0 || never.closes != 0 {
		t.Fatal("sockets not yet expired were closed")
	}

	// later is found by its slot's visit some minutes before its expiry.
	visit := now.Add(time.Hour - ws.PingPeriod)
	p.tick(pingSlot(later.id), visit)
	p.expire(now.Add(time.Hour - time.Second))
	if later.closes != 0 {
		t.Fatal("closed before its expiry")
	}
	p.expire(now.Add(time.Hour))
	if later.closes != 1 || later.closeCode != proto.CloseTokenExpired {
		t.Errorf("%s: %d closes with code %d after its expiry, want 1 with 4001", later.id, later.closes, later.closeCode)
	}
	p.expire(now.Add(100 * time.Hour))
	if never.closes != 0 {
		t.Error("a socket without expiry was closed")
	}
	if n := len(p.expiring.heap); n != 0 {
		t.Errorf("%d sockets left in the expiring heap, want none", n)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// listed returns how many sockets the pinger's lists hold.
func (p *pinger[C]) listed() int {
	n := 0
	for i := range p.slots {
		l := &p.slots[i]
		l.mu.Lock()
		n += len(l.conns)
		l.mu.Unlock()
	}
	return n
}

// TestExpiringHeapHoldsSocketOnce: at a short GATEWAY_PING_INTERVAL a
// slot is visited many times within expiryHorizon of a socket's expiry;
// each visit must not push the socket into the expiring heap again, or the
// heap grows by a copy per visit (horizon/interval of them: 500 at 100ms),
// and keeps every closed socket that many times until its expiry.
func TestExpiringHeapHoldsSocketOnce(t *testing.T) {
	var p pinger[*fakeSocket]
	ids := connid.New()
	now := time.Now()
	s := &fakeSocket{id: ids.Next(), expires: now.Add(expiryHorizon - time.Second)}
	p.add(s)
	const interval = 100 * time.Millisecond
	visits := 0
	for at := now; at.Before(s.expires.Add(-time.Second)); at = at.Add(interval) {
		p.tick(pingSlot(s.id), at)
		p.expire(at)
		visits++
	}
	if n := len(p.expiring.heap); n != 1 {
		t.Fatalf("the expiring heap holds %d entries for one socket after %d visits, want 1", n, visits)
	}
	p.expire(s.expires)
	if s.closes != 1 || s.closeCode != proto.CloseTokenExpired {
		t.Fatalf("at its expiry: %d closes with code %d, want 1 with %d", s.closes, s.closeCode, proto.CloseTokenExpired)
	}
	if n := len(p.expiring.heap); n != 0 {
		t.Fatalf("%d entries left in the expiring heap after the expiry, want none", n)
	}
	// Watched again after it expired (a visit before its removal): closed
	// again at once, which does nothing, and not kept.
	p.tick(pingSlot(s.id), s.expires.Add(time.Second))
	p.expire(s.expires.Add(time.Second))
	if n := len(p.expiring.heap); n != 0 {
		t.Fatalf("%d entries in the expiring heap after a visit past the expiry, want none", n)
	}
}
