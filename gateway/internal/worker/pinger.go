package worker

import (
	"context"
	"sync"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/ws"
)

// pingSlots is how many parts the ping period is cut into: each socket is
// pinged in its own slot, by a hash of its id, so each is pinged exactly
// every PingPeriod while a tick wakes only 1/pingSlots of them. Pinging
// every socket at once started a writer goroutine per socket at the same
// moment: at 10,000 idle sockets that burst alone added ~4 KB of resident
// memory per socket.
const pingSlots = 100

// pingee is what the pinger needs of a socket (a *ws.Conn).
type pingee interface {
	comparable
	ID() string
	// Ping queues a ping without blocking.
	Ping()
}

// pinger pings every socket once per ws.PingPeriod. A socket is in the
// list of its slot from when it is accepted (add) until it has ended
// (remove), so a tick touches the sockets of its slot only, not every
// socket of the worker. It is safe for concurrent use.
type pinger[C pingee] struct {
	slots [pingSlots]pingList[C]
}

// pingList is the sockets of one slot.
type pingList[C pingee] struct {
	mu    sync.Mutex
	conns map[C]struct{}
}

// add puts c in the list of its slot.
func (p *pinger[C]) add(c C) {
	l := &p.slots[pingSlot(c.ID())]
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns == nil {
		l.conns = make(map[C]struct{})
	}
	l.conns[c] = struct{}{}
}

// remove takes c out of the list of its slot.
func (p *pinger[C]) remove(c C) {
	l := &p.slots[pingSlot(c.ID())]
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// tick pings the sockets of slot.
func (p *pinger[C]) tick(slot uint32) {
	l := &p.slots[slot]
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Ping()
	}
}

// run ticks each slot in turn, every ws.PingPeriod/pingSlots, until ctx is
// done.
func (p *pinger[C]) run(ctx context.Context) {
	t := time.NewTicker(ws.PingPeriod / pingSlots)
	defer t.Stop()
	slot := uint32(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			slot = (slot + 1) % pingSlots
			p.tick(slot)
		}
	}
}

// pingSlot returns the ping slot of a connection id (FNV-1a).
func pingSlot(id string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return h % pingSlots
}
