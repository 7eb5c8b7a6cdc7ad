package worker

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/proto"
)

// pingSlots is how many parts the ping period is cut into: each socket is
// pinged in its own slot, by a hash of its id, so each is pinged exactly
// every PingPeriod while a tick wakes only 1/pingSlots of them. Pinging
// every socket at once started a writer goroutine per socket at the same
// moment: at 10,000 idle sockets that burst alone added ~4 KB of resident
// memory per socket.
const pingSlots = 100

// expiryHorizon is how far ahead a visit of a socket's slot looks for its
// expiry: beyond the next visit (one PingPeriod later), with room for late
// ticks.
const expiryHorizon = 2 * ws.PingPeriod

// pingee is what the pinger needs of a socket (a *ws.Conn).
type pingee interface {
	comparable
	ID() string
	// Ping queues a ping without blocking.
	Ping()
	// Expires returns when the socket's token stops being accepted, so
	// the socket must close; the zero time when never.
	Expires() time.Time
	// Close starts closing the socket with code and reason, without
	// blocking; closing a closed socket does nothing.
	Close(code int, reason string)
}

// beater queues a socket's heartbeat frame (a *resume.Socket: Beat).
type beater interface {
	// Beat queues plain, or a heartbeat of the socket's own that carries
	// its positions, without blocking.
	Beat(plain []byte) bool
}

// beat is how a socket that asked for heartbeats is sent one.
type beat struct {
	to    beater
	frame []byte // the plain frame, shared by the user's sockets
}

// pinger pings every socket once per ping interval (GATEWAY_PING_INTERVAL,
// ws.PingPeriod by default), sends a socket that asked for them its
// heartbeat frame with each ping, and closes each socket
// with 4001 (token expired) once its Expires has passed. A socket is in the
// list of its slot from when it is accepted (add) until it has ended
// (remove), so a tick touches the sockets of its slot only, not every
// socket of the worker.
//
// Expiry costs no timer per socket: each visit of a socket (when it is
// added, and at every ping) looks at its Expires, and a socket that
// expires before its next visits goes into the expiring heap, which every
// tick pops; so a socket closes within a tick (ws.PingPeriod/pingSlots) of
// its expiry, and only the sockets about to expire are in the heap. It is
// safe for concurrent use.
//
// The heartbeat goes with every ping, even to a socket that was sent
// other frames during the interval: the pinger visits a socket once an
// interval, so skipping the busy ones would leave up to two intervals
// between two frames, and the client would have to wait that long to
// take its socket for dead. It is queued with the ping, so both usually
// go out in one write. It is the socket's (beater) to queue: the plain
// frame, or one that carries the socket's positions when events it was
// left out of moved them (resume.Socket.Beat).
type pinger[C pingee] struct {
	slots    [pingSlots]pingList[C]
	expiring expiring[C]
}

// pingList is the sockets of one slot.
type pingList[C pingee] struct {
	mu    sync.Mutex
	conns map[C]struct{}
	beats map[C]beat // the sockets of conns that asked for heartbeats
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
	p.expiring.watch(c, time.Now())
}

// heartbeat has every later ping of c, added before, come with a
// heartbeat frame that to queues: frame, its plain one (built once, shared
// by the ticks; not modified after), or one of its own. Call it once c's
// first frame is queued, which must come first.
func (p *pinger[C]) heartbeat(c C, to beater, frame []byte) {
	l := &p.slots[pingSlot(c.ID())]
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.conns[c]; !ok {
		return // removed already
	}
	if l.beats == nil {
		l.beats = make(map[C]beat)
	}
	l.beats[c] = beat{to: to, frame: frame}
}

// remove takes c out of the list of its slot. (If it was about to expire,
// the expiring heap keeps it until then; closing it again does nothing.)
func (p *pinger[C]) remove(c C) {
	l := &p.slots[pingSlot(c.ID())]
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
	delete(l.beats, c)
}

// probe takes and releases every lock of p in turn (Worker.Probe).
func (p *pinger[C]) probe() {
	for i := range p.slots {
		p.slots[i].mu.Lock()
		p.slots[i].mu.Unlock()
	}
	p.expiring.mu.Lock()
	p.expiring.mu.Unlock()
}

// tick pings the sockets of slot and watches their expiry.
func (p *pinger[C]) tick(slot uint32, now time.Time) {
	l := &p.slots[slot]
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Ping()
		p.expiring.watch(c, now)
	}
	for _, b := range l.beats {
		b.to.Beat(b.frame)
	}
}

// run ticks each slot in turn, every interval/pingSlots, and closes
// the sockets that have expired, until ctx is done. expiryHorizon, two
// default periods, still reaches past the next visit at the longest
// interval config allows.
func (p *pinger[C]) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval / pingSlots)
	defer t.Stop()
	slot := uint32(0)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			slot = (slot + 1) % pingSlots
			p.tick(slot, now)
			p.expire(now)
		}
	}
}

// expire closes, with 4001, every watched socket whose Expires is not
// after now.
func (p *pinger[C]) expire(now time.Time) {
	for _, c := range p.expiring.due(now) {
		c.Close(proto.CloseTokenExpired, proto.ReasonTokenExpired)
	}
}

// expiring is the sockets that expire before their slot's next visits,
// soonest first.
type expiring[C pingee] struct {
	mu   sync.Mutex
	heap expiryHeap[C]
	// in is the sockets in heap: each is there once, however many visits
	// find it within expiryHorizon (a socket's expiry never changes). At
	// a short GATEWAY_PING_INTERVAL a slot is visited horizon/interval
	// times before the expiry, and a copy per visit grew the heap.
	in map[C]struct{}
}

// watch puts c in the heap if it expires within expiryHorizon of now and
// is not there yet.
func (e *expiring[C]) watch(c C, now time.Time) {
	at := c.Expires()
	if at.IsZero() || at.Sub(now) > expiryHorizon {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.in[c]; ok {
		return
	}
	if e.in == nil {
		e.in = make(map[C]struct{})
	}
	e.in[c] = struct{}{}
	heap.Push(&e.heap, expiry[C]{c: c, at: at.UnixNano()})
}

// due takes out and returns the sockets whose expiry is not after now.
func (e *expiring[C]) due(now time.Time) []C {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []C
	for len(e.heap) > 0 && e.heap[0].at <= now.UnixNano() {
		c := heap.Pop(&e.heap).(expiry[C]).c
		delete(e.in, c)
		out = append(out, c)
	}
	return out
}

// expiry is a socket and when it expires, in Unix nanoseconds.
type expiry[C pingee] struct {
	c  C
	at int64
}

// expiryHeap is a min-heap of expiries (container/heap).
type expiryHeap[C pingee] []expiry[C]

func (h expiryHeap[C]) Len() int           { return len(h) }
func (h expiryHeap[C]) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap[C]) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap[C]) Push(x any)        { *h = append(*h, x.(expiry[C])) }
func (h *expiryHeap[C]) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = expiry[C]{} // let the socket go
	*h = old[:len(old)-1]
	return x
}

// pingSlot returns the ping slot of a connection id (FNV-1a).
func pingSlot(id string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return h % pingSlots
}
