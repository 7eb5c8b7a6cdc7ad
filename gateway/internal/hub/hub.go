// Package hub is the registry of one worker's local sockets: by connection id
// and by user id, many sockets per user. It is safe for concurrent use, and
// Deliver never blocks: it hands frames to the sockets' bounded queues.
//
// It is also the one count of a worker's sockets, in all and per user, that
// the socket caps are checked against: a socket being opened holds a place
// (Reserve) from before its upgrade until it is registered (AddReserved)
// or given up (Cancel), so concurrent upgrades cannot overshoot a cap.
package hub

import (
	"errors"
	"slices"
	"sync"

	"github.com/switchboard/switchboard/proto"
)

// Conn is what the hub needs of a socket.
type Conn interface {
	ID() string
	User() string
	// Offer hands the socket the frame of one event without blocking and
	// reports whether it was taken (queued or held for it). pos is the
	// event's position in the broadcast stream (broadcast) or in the
	// user's, or nil for a transient event. frame may be shared by
	// sockets and must not be modified.
	Offer(broadcast bool, pos *proto.Pos, frame []byte) bool
	// Skip tells the socket of an event it is left out of
	// (proto.Dispatch.Except) without blocking: it sends nothing, but a
	// recoverable event (pos not nil) moves its place in the stream, so
	// that the event is no gap to fill.
	Skip(broadcast bool, pos *proto.Pos)
}

// Resumed is implemented by a Conn whose client named, when it resumed,
// the connections it had before it (resume.Socket): a dispatch that
// leaves one of them out leaves this one out too (Conn.Skip), live as in
// a replay or a gap filled from the stream, so that whether the client
// gets an event does not depend on which way it came.
type Resumed interface {
	// PrevConns returns the ids of those connections; nil for none.
	PrevConns() []string
}

// Hub indexes local sockets. The zero value is not usable; call New.
type Hub[C Conn] struct {
	mu sync.RWMutex
	// users lists each user's sockets: a slice, not a map, since a user
	// has a few devices and most sockets are a user's only one on a worker
	// (a one-entry map costs ~250 bytes more, per socket).
	users map[string][]C // user id -> conns
	conns map[string]C   // conn id -> conn
	// Places held by Reserve for sockets being opened: per user, and in
	// all. A few at a time, for the length of an upgrade.
	reserved      map[string]int
	reservedTotal int
	// positions: events are delivered with their positions
	// (docs/protocol.md section 6); off, every event is transient.
	positions bool
}

// Probe takes and releases the hub's lock, and so returns at once unless
// a holder never releases it: the worker's watchdog heartbeat waits for it
// (a deadlock around the hub stops the beats, and the worker is killed and
// restarted).
func (h *Hub[C]) Probe() {
	h.mu.Lock()
	h.mu.Unlock()
}

// Option changes how New builds a Hub.
type Option func(*hubOptions)

type hubOptions struct{ positions bool }

// WithPositions delivers recoverable events with their positions, in the
// frame ("pos", "bpos") and to Conn.Offer: recovery is on.
func WithPositions() Option { return func(o *hubOptions) { o.positions = true } }

// New returns an empty Hub.
func New[C Conn](opts ...Option) *Hub[C] {
	var o hubOptions
	for _, opt := range opts {
		opt(&o)
	}
	return &Hub[C]{users: make(map[string][]C), conns: make(map[string]C), reserved: make(map[string]int), positions: o.positions}
}

// Why Reserve refused a place.
var (
	// ErrFull: the hub has its cap of sockets.
	ErrFull = errors.New("hub: at its cap of sockets")
	// ErrUserFull: the user has its cap of sockets.
	ErrUserFull = errors.New("hub: user at its cap of sockets")
)

// Reserve holds a place for one more socket of user, which is being opened,
// unless the hub already has maxConns sockets, registered or reserved
// (ErrFull), or user has maxPerUser (ErrUserFull); 0 is no cap. The place
// is then taken by AddReserved, or given back by Cancel.
func (h *Hub[C]) Reserve(user string, maxConns, maxPerUser int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if maxConns > 0 && len(h.conns)+h.reservedTotal >= maxConns {
		return ErrFull
	}
	if maxPerUser > 0 && len(h.users[user])+h.reserved[user] >= maxPerUser {
		return ErrUserFull
	}
	h.reserved[user]++
	h.reservedTotal++
	return nil
}

// Cancel gives back a place Reserve held for user, whose socket was not
// opened after all.
func (h *Hub[C]) Cancel(user string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unreserveLocked(user)
}

func (h *Hub[C]) unreserveLocked(user string) {
	if n := h.reserved[user] - 1; n > 0 {
		h.reserved[user] = n
	} else {
		delete(h.reserved, user) // a user without places keeps no entry
	}
	h.reservedTotal--
}

// AddReserved registers c in the place Reserve held for its user.
func (h *Hub[C]) AddReserved(c C) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unreserveLocked(c.User())
	h.addLocked(c)
}

// Add registers c for delivery, without a place reserved for it (so
// whatever the caps); adding a registered id again replaces it.
func (h *Hub[C]) Add(c C) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.addLocked(c)
}

func (h *Hub[C]) addLocked(c C) {
	if old, ok := h.conns[c.ID()]; ok {
		h.removeLocked(old)
	}
	h.conns[c.ID()] = c
	h.users[c.User()] = append(h.users[c.User()], c)
}

// Remove unregisters c; removing an unknown socket does nothing.
func (h *Hub[C]) Remove(c C) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.conns[c.ID()]; !ok {
		return
	}
	h.removeLocked(c)
}

func (h *Hub[C]) removeLocked(c C) {
	delete(h.conns, c.ID())
	list := h.users[c.User()]
	for i := range list {
		if list[i].ID() != c.ID() {
			continue
		}
		last := len(list) - 1
		list[i] = list[last]
		var zero C
		list[last] = zero // no reference kept past the end
		list = list[:last]
		break
	}
	if len(list) == 0 {
		delete(h.users, c.User())
	} else {
		h.users[c.User()] = list
	}
}

// Len returns the number of local sockets.
func (h *Hub[C]) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.conns)
}

// UserLen returns the number of local sockets of user.
func (h *Hub[C]) UserLen(user string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.users[user])
}

// Each calls fn for every local socket, for shutdown. fn must not
// call back into the hub.
func (h *Hub[C]) Each(fn func(C)) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, c := range h.conns {
		fn(c)
	}
}

// Snapshot returns the local sockets.
func (h *Hub[C]) Snapshot() []C {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]C, 0, len(h.conns))
	for _, c := range h.conns {
		out = append(out, c)
	}
	return out
}

// Matching returns the local sockets of each of users and each of conns,
// each socket once: the targets of a disconnect (docs/protocol.md section
// 4), which the caller closes outside the hub's lock.
func (h *Hub[C]) Matching(users, conns []string) []C {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []C
	seen := make(map[string]struct{}) // conn ids in out
	add := func(c C) {
		if _, dup := seen[c.ID()]; !dup {
			seen[c.ID()] = struct{}{}
			out = append(out, c)
		}
	}
	for _, user := range users {
		for _, c := range h.users[user] {
			add(c)
		}
	}
	for _, id := range conns {
		if c, ok := h.conns[id]; ok {
			add(c)
		}
	}
	return out
}

// Deliver sends d to its local targets and returns how many sockets it was
// queued for; see DeliverCounted.
func (h *Hub[C]) Deliver(d *proto.Dispatch) int {
	sent, _ := h.DeliverCounted(d)
	return sent
}

// DeliverCounted sends d to its local targets and returns how many sockets
// took it and how many refused it (closing, a full queue, or an event they
// had already). The frame carries the receiving socket's user id (and the
// user's position of the event), so it is encoded once per target user and
// shared by that user's sockets. A socket named several times (as a user's
// and as a connection) gets it once; so does one named as a connection
// whose user is in d.SkipUsers, which another message of the dispatch
// reaches (docs/protocol.md section 4). A socket named in d.Except gets
// nothing (Conn.Skip) and is counted in neither; so does one whose
// client named one of them as a previous connection (Resumed).
func (h *Hub[C]) DeliverCounted(d *proto.Dispatch) (n, dropped int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	except := userSet{list: d.Except} // conn ids, looked up as users are
	offer := func(c C, broadcast bool, pos *proto.Pos, frame []byte) {
		if len(d.Except) > 0 && leftOut(c, &except) {
			c.Skip(broadcast, pos)
			return
		}
		if c.Offer(broadcast, pos, frame) {
			n++
		} else {
			dropped++
		}
	}
	if d.Broadcast {
		bpos, ok := h.position(d.BPos)
		for user, byConn := range h.users {
			frame := h.frame(d, user, proto.KeyBPos, bpos, ok)
			for _, c := range byConn {
				offer(c, true, posOrNil(&bpos, ok), frame)
			}
		}
		return n, dropped
	}
	var seen map[string]struct{} // users already delivered to, when needed
	if len(d.Users) > 1 || (len(d.Users) > 0 && len(d.Conns) > 0) {
		seen = make(map[string]struct{}, len(d.Users))
	}
	// Users are taken last first: a user named twice gets the position of
	// its last mention, as a body's "pos" object read into a map gives it
	// (proto.Dispatch.UserPos).
	for i, user := range slices.Backward(d.Users) {
		byConn := h.users[user]
		if len(byConn) == 0 {
			continue
		}
		if seen != nil {
			if _, dup := seen[user]; dup {
				continue
			}
			seen[user] = struct{}{}
		}
		pos, ok := h.userPosition(d, i)
		frame := h.frame(d, user, proto.KeyPos, pos, ok)
		for _, c := range byConn {
			offer(c, false, posOrNil(&pos, ok), frame)
		}
	}
	if len(d.Conns) == 0 {
		return n, dropped
	}
	var sentConns map[string]struct{}
	if len(d.Conns) > 1 {
		sentConns = make(map[string]struct{}, len(d.Conns))
	}
	skip := userSet{list: d.SkipUsers}
	for _, id := range d.Conns {
		c, ok := h.conns[id]
		if !ok {
			continue
		}
		if _, done := seen[c.User()]; done {
			continue // reached through its user
		}
		if skip.has(c.User()) {
			continue // reached through its user, by another message
		}
		if sentConns != nil {
			if _, dup := sentConns[id]; dup {
				continue
			}
			sentConns[id] = struct{}{}
		}
		offer(c, false, nil, h.frame(d, c.User(), "", proto.Pos{}, false)) // events to connections are transient
	}
	return n, dropped
}

// userSet answers whether a user is in list: by a scan while the list is
// short, by a map once it is long, built at the first question, so that a
// dispatch none of whose connections is local costs nothing.
type userSet struct {
	list []string
	set  map[string]struct{}
}

// leftOut reports whether except names c's connection or, for a Resumed
// c, one of its previous ones.
func leftOut[C Conn](c C, except *userSet) bool {
	if except.has(c.ID()) {
		return true
	}
	if r, ok := any(c).(Resumed); ok {
		for _, id := range r.PrevConns() {
			if except.has(id) {
				return true
			}
		}
	}
	return false
}

// userSetScan is the longest list userSet scans.
const userSetScan = 16

func (s *userSet) has(user string) bool {
	if len(s.list) <= userSetScan {
		return slices.Contains(s.list, user)
	}
	if s.set == nil {
		s.set = make(map[string]struct{}, len(s.list))
		for _, u := range s.list {
			s.set[u] = struct{}{}
		}
	}
	_, ok := s.set[user]
	return ok
}

// position parses the position of an event, when the hub delivers
// positions and the dispatch has one.
func (h *Hub[C]) position(s string) (proto.Pos, bool) {
	if !h.positions || s == "" {
		return proto.Pos{}, false
	}
	return proto.ParsePos(s)
}

// userPosition is the position of the event of d to d.Users[i], when the
// hub delivers positions and d has one: the only positions of a dispatch
// a worker decodes are those of the users it holds.
func (h *Hub[C]) userPosition(d *proto.Dispatch, i int) (proto.Pos, bool) {
	if !h.positions {
		return proto.Pos{}, false
	}
	return h.position(d.UserPos(i))
}

func posOrNil(p *proto.Pos, ok bool) *proto.Pos {
	if !ok {
		return nil
	}
	return p
}

// frame encodes d for the sockets of user in one allocation of the right
// size, with the event's position under key when it has one; the frame is
// shared by those sockets and never modified.
func (h *Hub[C]) frame(d *proto.Dispatch, user, key string, pos proto.Pos, posed bool) []byte {
	size := len(`{"event":"","id":"","args":,"bpos":""}`) + len(d.Event) + len(user) + len(d.Args) + 8
	if !posed {
		return proto.AppendEvent(make([]byte, 0, size), d.Event, user, d.Args)
	}
	var buf [proto.MaxPosLen]byte
	p := pos.Append(buf[:0])
	return proto.AppendEventAt(make([]byte, 0, size+len(p)), d.Event, user, d.Args, key, p)
}
