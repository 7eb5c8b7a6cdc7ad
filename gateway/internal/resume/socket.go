package resume

import (
	"sync"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// Conn is what a Socket needs of the WebSocket under it.
type Conn interface {
	ID() string
	User() string
	// Send queues a frame without blocking; it reports false when the
	// socket is closing or its queue overflowed (it is then closed).
	Send(frame []byte) bool
	Close(code int, reason string)
}

// Socket is one client socket with its place in its user's stream and in
// the broadcast stream. Frames reach it through Offer, in the order the
// fan-out received them; it sends each recoverable event once, in offset
// order, and holds the frames that arrive while it reads a stream (at
// connect, or to fill a gap) to send them after what it read.
type Socket struct {
	conn Conn
	r    *Resumer

	mu      sync.Mutex
	cur     [2]cursor // by streams.Stream
	holding bool      // frames are held: a read is due or running
	queued  bool      // waiting for, or in, a read by the resumer
	held    []heldFrame
	heldN   int // bytes held
	// early is how many frames at the head of held were held before the
	// read under way was made: a frame of another epoch than that read
	// found is older than it (a message delayed past a reset of the
	// store), while one held after may be newer (the stream started a new
	// epoch since), so the stream is read again for it.
	early   int
	overrun bool // frames were dropped from held: read again after
	closed  bool
	// swept are the streams' tops a Sweep saw while the socket was
	// holding (sweptSet: one did). The read under way may have been made
	// before them, while the fan-out was not subscribed, and what was
	// published then arrives by no other way: when the read settles, a
	// socket still short of them reads again.
	swept    [2]proto.Pos
	sweptSet bool
}

// cursor is a socket's place in one stream: the position of the last
// event sent (or of the stream's top when the socket joined), and whether
// the stream must be read before the next event of it can be sent.
type cursor struct {
	pos   proto.Pos
	stale bool
	known bool // pos is a position of the stream (false before connect)
}

// heldFrame is a frame offered while the socket was holding.
type heldFrame struct {
	frame  []byte
	pos    proto.Pos
	stream streams.Stream
	posed  bool // recoverable: pos and stream are set
}

// ID returns the connection id.
func (s *Socket) ID() string { return s.conn.ID() }

// User returns the socket's user.
func (s *Socket) User() string { return s.conn.User() }

// Close closes the socket's connection with code and reason.
func (s *Socket) Close(code int, reason string) { s.conn.Close(code, reason) }

// Offer hands the socket one frame of a dispatch: an event of the
// broadcast stream or of its user's. pos is the event's position in its
// stream, or nil for a transient event, which is sent as it comes. A
// recoverable event is sent when it is the next of its stream, dropped
// when the socket already had it, and otherwise (a gap, or another epoch)
// held while the stream is read. Offer never blocks; it reports whether
// the frame was queued for the socket or held for it.
func (s *Socket) Offer(broadcast bool, pos *proto.Pos, frame []byte) bool {
	stream := streams.UserStream
	if broadcast {
		stream = streams.BroadcastStream
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.holding {
		return s.hold(heldFrame{frame: frame, pos: derefPos(pos), stream: stream, posed: pos != nil})
	}
	if pos == nil || !s.r.enabled {
		return s.conn.Send(frame)
	}
	c := &s.cur[stream]
	if pos.Epoch == c.pos.Epoch {
		switch {
		case pos.Off <= c.pos.Off:
			s.r.rec.Duplicate()
			return false
		case pos.Off == c.pos.Off+1:
			c.pos = *pos
			return s.conn.Send(frame)
		}
	}
	// A gap, or an epoch the socket is not in: read the stream.
	c.stale = true
	s.holding = true
	s.hold(heldFrame{frame: frame, pos: *pos, stream: stream, posed: true})
	s.r.schedule(s)
	return true
}

func derefPos(p *proto.Pos) proto.Pos {
	if p == nil {
		return proto.Pos{}
	}
	return *p
}

// hold keeps f until the read under way ends. Past the bounds, f is
// dropped: a recoverable one is read again from its stream afterwards; a
// transient one is lost, as a transient event is to a socket that is away.
// s.mu is held.
func (s *Socket) hold(f heldFrame) bool {
	if len(s.held) >= s.r.cfg.HeldFrames || s.heldN+len(f.frame) > s.r.cfg.HeldBytes {
		s.overrun = true
		if f.posed {
			s.cur[f.stream].stale = true
		} else {
			s.r.rec.TransientDropped()
		}
		return false
	}
	s.held = append(s.held, f)
	s.heldN += len(f.frame)
	return true
}

// Closed tells the socket its connection has ended: it takes no more
// frames and drops what it holds.
func (s *Socket) Closed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.held, s.heldN = nil, 0
}

// queries returns the reads the socket needs: one per stale stream, from
// its cursor. s.mu is held.
func (s *Socket) queries() []streams.Query {
	var qs []streams.Query
	for st := streams.UserStream; st <= streams.BroadcastStream; st++ {
		c := &s.cur[st]
		if c.stale {
			qs = append(qs, streams.Query{Stream: st, User: s.conn.User(), From: c.pos, After: c.known, Max: s.r.cfg.MaxReplay})
		}
	}
	return qs
}

// heal applies the read of a stale stream: the entries that fill the gap
// are sent; a gap that cannot be filled (another epoch: the store lost
// data; entries trimmed or too many) is announced with a resync frame, and
// the socket carries on from the stream's top. It reports whether the
// stream's epoch is the socket's, so a frame of another epoch held after
// it is stale. s.mu is held.
func (s *Socket) heal(st streams.Stream, res streams.Result) (sameEpoch bool) {
	c := &s.cur[st]
	c.stale = false
	sameEpoch = res.Top.Epoch == c.pos.Epoch
	if sameEpoch && c.pos.Off == res.Top.Off {
		return true // nothing missed: what was held is a duplicate or stale
	}
	reason := ""
	switch {
	case !sameEpoch || c.pos.Off > res.Top.Off: // the stream went back: it lost events
		reason = ReasonStoreLost
	case !contiguous(res.Entries, c.pos.Off, res.Top.Off):
		reason = ReasonExpired
		if res.Top.Off-c.pos.Off > uint64(s.r.cfg.MaxReplay) {
			reason = ReasonTooMany
		}
	}
	if reason != "" {
		s.resync(st, res.Top, reason)
		return true
	}
	for _, e := range res.Entries {
		s.sendEntry(st, e)
	}
	s.r.rec.Healed(len(res.Entries))
	return true
}

// resync tells the client that the socket carries on from top of st,
// without the events before it that it missed. s.mu is held.
func (s *Socket) resync(st streams.Stream, top proto.Pos, reason string) {
	r := proto.Resync{Reason: reason}
	if st == streams.BroadcastStream {
		r.BPos = top.String()
	} else {
		r.Pos = top.String()
	}
	s.conn.Send(proto.AppendResync(nil, s.conn.User(), &r))
	s.cur[st] = cursor{pos: top, known: true}
	s.r.rec.Resynced(reason)
}

// sendEntry sends one recorded event and moves the cursor to it. s.mu is
// held.
func (s *Socket) sendEntry(st streams.Stream, e streams.Entry) {
	s.conn.Send(entryFrame(st, s.conn.User(), e))
	s.cur[st].pos = e.Pos
}

// entryFrame returns the frame of entry e of stream st for a socket of user.
func entryFrame(st streams.Stream, user string, e streams.Entry) []byte {
	var posBuf [proto.MaxPosLen]byte
	pos := e.Pos.Append(posBuf[:0])
	size := len(`{"event":"","id":"","args":,"bpos":""}`) + len(e.Event) + len(user) + len(e.Args) + len(pos) + 8
	return proto.AppendEventAt(make([]byte, 0, size), e.Event, user, e.Args, st.FrameKey(), pos)
}

// contiguous reports whether entries are exactly the offsets from+1 to
// top, in order.
func contiguous(entries []streams.Entry, from, top uint64) bool {
	if uint64(len(entries)) != top-from {
		return false
	}
	for i, e := range entries {
		if e.Pos.Off != from+1+uint64(i) {
			return false
		}
	}
	return true
}

// release sends the held frames that can go now, in order, after a read:
// transient ones, and recoverable ones that are next in their stream (a
// duplicate, or a frame of another epoch than a stream just confirmed, is
// dropped, if it was held before the read was made). At the first frame
// that shows a new gap, or another epoch that may be newer than the read,
// it keeps that frame and the rest held and reports false: the stream
// must be read again.
// confirmed tells, per stream, whether the read just made found the
// stream in the socket's epoch. s.mu is held.
func (s *Socket) release(confirmed [2]bool) bool {
	held, early := s.held, s.early
	s.held, s.heldN, s.early = nil, 0, 0
	for i, f := range held {
		if !f.posed {
			s.conn.Send(f.frame)
			continue
		}
		c := &s.cur[f.stream]
		if !c.stale && f.pos.Epoch == c.pos.Epoch {
			if f.pos.Off <= c.pos.Off {
				s.r.rec.Duplicate()
				continue
			}
			if f.pos.Off == c.pos.Off+1 {
				c.pos = f.pos
				s.conn.Send(f.frame)
				continue
			}
		}
		if !c.stale && f.pos.Epoch != c.pos.Epoch && confirmed[f.stream] && i < early {
			// Older than the epoch the stream is in: a message delayed
			// past a reset of the store.
			s.r.rec.Duplicate()
			continue
		}
		c.stale = true
		for _, rest := range held[i:] {
			s.held = append(s.held, rest)
			s.heldN += len(rest.frame)
		}
		return false
	}
	return true
}
