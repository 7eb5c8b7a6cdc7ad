package worker

import (
	"testing"

	"github.com/switchboard/switchboard/gateway/internal/connid"
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

// fakeSocket counts its pings.
type fakeSocket struct {
	id    string
	pings int
}

func (s *fakeSocket) ID() string { return s.id }
func (s *fakeSocket) Ping()      { s.pings++ }

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
	p.tick(slot)
	for _, s := range socks {
		if want := btoi(pingSlot(s.id) == slot); s.pings != want {
			t.Fatalf("socket %s of slot %d pinged %d times by a tick of slot %d, want %d", s.id, pingSlot(s.id), s.pings, slot, want)
		}
	}
	for s := range uint32(pingSlots) {
		if s != slot {
			p.tick(s)
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
		p.tick(s)
	}
	if gone.pings != 1 {
		t.Errorf("a removed socket was pinged again (%d pings)", gone.pings)
	}
	if socks[1].pings != 2 {
		t.Errorf("a socket still listed was pinged %d times in two rounds, want 2", socks[1].pings)
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
