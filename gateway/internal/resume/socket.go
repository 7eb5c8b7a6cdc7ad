package resume

import (
	"slices"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// Conn is what a Socket needs of the WebSocket under it.
type Conn interface {
	ID() string
	User() string
	// IssuedAt returns when the socket's token was issued; zero when
	// unknown.
	IssuedAt() time.Time
	// Send queues a frame without blocking; it reports false when the
	// socket is closing or its queue overflowed (it is then closed).
	Send(frame []byte) bool
	Close(code int, reason string)
	// Queued returns the frames and bytes in the send queue, not yet
	// taken by the socket's writer.
	Queued() (frames, bytes int)
	// WhenDrained has f called once, without blocking and holding no lock
	// of the Conn, when the writer next takes the queue, and reports true;
	// with nothing queued it reports false and keeps nothing. f may never
	// be called when the socket closes.
	WhenDrained(f func()) bool
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
	// paced: the read or release under way stopped short for lack of
	// room in the send queue; waiting: so the next read waits for the
	// writer to take the queue (whenDrained).
	paced, waiting bool
	// swept are the streams' tops a Sweep saw while the socket was
	// holding (sweptSet: one did). The read under way may have been made
	// before them, while the fan-out was not subscribed, and what was
	// published then arrives by no other way: when the read settles, a
	// socket still short of them reads again.
	swept    [2]proto.Pos
	sweptSet bool
	// prev are the ids of the connections this socket's client had before
	// it in its session (Previous): an entry whose dispatch left one of
	// them out, or this socket's own, is not sent from a stream.
	prev []string
}

// cursor is a socket's place in one stream: the position of the last
// event sent (or of the stream's top when the socket joined), and whether
// the stream must be read before the next event of it can be sent.
type cursor struct {
	pos   proto.Pos
	stale bool
	known bool // pos is a position of the stream (false before connect)
	// skipped: pos moved past events the socket was left out of (Skip,
	// leftOut) since the last frame that told the client its place in
	// the stream; its next heartbeat carries pos (Beat). In the padding
	// too.
	skipped bool
	// replaying is how many events of the resume's replay are still to be
	// sent, the next ones of the stream: they are the resume's
	// (Recorder.Resumed), not a gap filled. filled counts the events of a
	// gap sent so far, while it is filled in parts: Recorder.Healed is
	// told once, when the gap is closed. (32 bits each, in the padding
	// after known and skipped: every socket has two cursors.)
	replaying, filled uint32
}

// heldFrame is a frame offered while the socket was holding.
type heldFrame struct {
	frame  []byte
	pos    proto.Pos
	stream streams.Stream
	posed  bool // recoverable: pos and stream are set
	// skip: the socket is left out of the event (Skip); its place moves
	// past it, and nothing is sent. frame is nil.
	skip bool
}

// ID returns the connection id.
func (s *Socket) ID() string { return s.conn.ID() }

// User returns the socket's user.
func (s *Socket) User() string { return s.conn.User() }

// IssuedAt returns when the token of the socket's connection was issued;
// zero when unknown.
func (s *Socket) IssuedAt() time.Time { return s.conn.IssuedAt() }

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
			c.pos, c.skipped = *pos, false
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

// Skip tells the socket of an event whose dispatch leaves it out
// (proto.Dispatch.Except): nothing is sent, but a recoverable one moves
// the socket's place in its stream as if it had been sent, so it is
// neither a gap to fill (which would send it from the stream) nor, for a
// gap it ends, a cause to resync. A transient one is simply not sent. Skip
// never blocks.
func (s *Socket) Skip(broadcast bool, pos *proto.Pos) {
	if pos == nil {
		return
	}
	stream := streams.UserStream
	if broadcast {
		stream = streams.BroadcastStream
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.r.enabled {
		return
	}
	f := heldFrame{pos: *pos, stream: stream, posed: true, skip: true}
	if s.holding {
		s.hold(f)
		return
	}
	c := &s.cur[stream]
	if pos.Epoch == c.pos.Epoch {
		switch {
		case pos.Off <= c.pos.Off:
			return
		case pos.Off == c.pos.Off+1:
			c.pos, c.skipped = *pos, true
			return
		}
	}
	// A gap before it: filled from the stream, whose entry of this event
	// names the socket and is not sent (leftOut).
	c.stale = true
	s.holding = true
	s.hold(f)
	s.r.schedule(s)
}

// Previous tells the socket the ids of the connections its client had
// before it in its session, which it named when it resumed: an event
// whose dispatch left one of them out is not sent to it (the client had it
// left out then), on the resume's replay nor after, from its streams
// (leftOut) nor live (PrevConns: the hub skips it). Call it before the
// socket is registered in the hub.
func (s *Socket) Previous(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prev = ids
}

// PrevConns returns the ids Previous gave (hub.Resumed): the hub leaves
// the socket out of a live dispatch that leaves one of them out, as
// leftOut does for an entry of its streams.
func (s *Socket) PrevConns() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.prev
}

// Beat queues the socket's heartbeat frame (docs/protocol.md section 2):
// plain, the frame its user's sockets share, unless events the socket was
// left out of (Skip, leftOut) moved its place in a stream since the last
// frame that told the client its place there; then a frame of its own
// with that place (pos, bpos: those that moved so), so the client's
// position moves past them, and a resume after they expired recovers.
// The place is read and the frame queued under the socket's lock, as every
// frame that carries a position is: every frame up to the place is queued
// before the heartbeat, and none after it. Beat never blocks; it reports
// whether the frame was queued.
func (s *Socket) Beat(plain []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, b := &s.cur[streams.UserStream], &s.cur[streams.BroadcastStream]
	if s.closed || (!u.skipped && !b.skipped) {
		return s.conn.Send(plain)
	}
	var posBuf, bposBuf [proto.MaxPosLen]byte
	var pos, bpos []byte
	if u.skipped {
		pos = u.pos.Append(posBuf[:0])
	}
	if b.skipped {
		bpos = b.pos.Append(bposBuf[:0])
	}
	size := len(`{"event":"","id":"","pos":"","bpos":""}`) + len(proto.EventHeartbeat) + len(s.conn.User()) + len(pos) + len(bpos) + 8
	if !s.conn.Send(proto.AppendHeartbeatAt(make([]byte, 0, size), s.conn.User(), pos, bpos)) {
		return false
	}
	u.skipped, b.skipped = false, false
	return true
}

// leftOut reports whether e's dispatch left this socket out: its except
// list names the socket's connection or one of its previous ones. s.mu is
// held.
func (s *Socket) leftOut(e *streams.Entry) bool {
	if len(e.Except) == 0 {
		return false
	}
	id := s.conn.ID()
	for _, x := range e.Except {
		if x == id || slices.Contains(s.prev, x) {
			return true
		}
	}
	return false
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
	s.gone()
}

// gone drops what the socket holds and takes no more frames: its
// connection has ended, or refused a frame (it is closing). s.mu is held.
func (s *Socket) gone() {
	s.closed, s.waiting = true, false
	s.held, s.heldN = nil, 0
}

// whenDrained has s read again when its writer has taken the send queue,
// and reports true; false when nothing is queued (read now). s.mu is held.
func (s *Socket) whenDrained() bool {
	if s.conn.WhenDrained(s.onDrained) {
		s.waiting = true
		return true
	}
	return false
}

// onDrained is Conn.WhenDrained's callback: the writer has taken the send
// queue, so the read that waited for room can be made.
func (s *Socket) onDrained() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.waiting || s.closed {
		return
	}
	s.waiting = false
	s.r.schedule(s)
}

// queries returns the reads the socket needs: one per stale stream, from
// its cursor, each for at most what b lets into the send queue. s.mu is
// held.
func (s *Socket) queries(b *budget) []streams.Query {
	var qs []streams.Query
	for st := streams.UserStream; st <= streams.BroadcastStream; st++ {
		c := &s.cur[st]
		if c.stale {
			qs = append(qs, b.limit(streams.Query{Stream: st, User: s.conn.User(), From: c.pos, After: c.known, Max: s.r.cfg.MaxReplay}))
		}
	}
	return qs
}

// queueMargin: a socket's send queue is filled from its streams to all
// but 1/queueMargin of its bounds, left for what is sent besides meanwhile
// (pongs, replies to the client's requests), and at least MarginFrames
// frames: a read that sends a part of one stream may also find the
// other's gap unfillable, and its resync frame goes whatever the budget;
// a ping tick queues a ping and, for a socket that asked, a heartbeat
// frame. A queue under queueMargin·MarginFrames frames filled to the brim
// would close its socket for them. The defaults (1024 frames) then still
// replay GATEWAY_MAX_REPLAY (1000) small events at once.
const queueMargin = 64

// MarginFrames is the least of a socket's send queue a replay leaves free:
// a resync, a ping and a heartbeat (queueMargin).
const MarginFrames = 3

// MarginBytes is the least of a socket's send queue bytes a replay leaves
// free: the largest resync and heartbeat frames (a ping's bytes are not
// counted). A queue of 1 MiB leaves 16 KiB anyway; at the smallest
// GATEWAY_SEND_QUEUE_BYTES 1/queueMargin would not hold a resync for a
// long user id whose characters JSON escapes.
const MarginBytes = proto.MaxResyncFrame + proto.MaxHeartbeatFrame

// budget is what may still be queued to a socket: frames and bytes, -1
// for no bound. When its queue was empty (open), the first frame goes
// whatever its size, so that every read makes progress; one larger than
// the queue is then a slow consumer, as it would be live.
type budget struct {
	frames, bytes int
	open, used    bool
}

// budget returns what may be queued to s now. s.mu is held.
func (s *Socket) budget() budget {
	cfg := &s.r.cfg
	b := budget{frames: -1, bytes: -1}
	if cfg.QueueFrames <= 0 && cfg.QueueBytes <= 0 {
		return b
	}
	frames, bytes := s.conn.Queued()
	b.open = frames == 0
	if cfg.QueueFrames > 0 {
		b.frames = max(cfg.QueueFrames-max(cfg.QueueFrames/queueMargin, MarginFrames)-frames, 0)
	}
	if cfg.QueueBytes > 0 {
		b.bytes = max(cfg.QueueBytes-max(cfg.QueueBytes/queueMargin, MarginBytes)-bytes, 0)
	}
	return b
}

// take reports whether a frame of n bytes may be queued, and counts it.
func (b *budget) take(n int) bool {
	fits := b.frames != 0 && (b.bytes < 0 || n <= b.bytes)
	if !fits && (!b.open || b.used) {
		return false
	}
	b.used = true
	if b.frames > 0 {
		b.frames--
	}
	if b.bytes >= 0 {
		b.bytes = max(b.bytes-n, 0)
	}
	return true
}

// full reports whether nothing may be queued: the queue is not empty and
// has no room left.
func (b *budget) full() bool {
	return !b.open && (b.frames == 0 || b.bytes == 0)
}

// limit bounds q's entries by what b lets through (at least one).
func (b *budget) limit(q streams.Query) streams.Query {
	if b.frames >= 0 {
		q.Count = max(b.frames, 1)
	}
	if b.bytes >= 0 {
		q.Bytes = max(b.bytes, 1)
		q.Overhead = len(`{"event":"","id":"","args":,"bpos":""}`) + len(q.User) + proto.MaxPosLen
	}
	return q
}

// heal applies the read of a stale stream: the entries that fill the gap
// are sent, as many as b lets into the send queue (the stream stays stale
// for the rest, read when the queue has room); a gap that cannot be filled
// (another epoch: the store lost data; entries trimmed or too many) is
// announced with a resync frame, and the socket carries on from the
// stream's top. It reports whether the stream's epoch is the socket's, so
// a frame of another epoch held after it is stale. s.mu is held.
func (s *Socket) heal(st streams.Stream, res streams.Result, b *budget) (sameEpoch bool) {
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
	case res.Top.Off-c.pos.Off > uint64(s.r.cfg.MaxReplay):
		reason = ReasonTooMany
	case !continues(res.Entries, c.pos.Off, res.Top.Off):
		// Trimmed past the socket's place: while the socket was away, or
		// while a replay waited for room in a queue that drained slowly.
		reason = ReasonExpired
	}
	if reason != "" {
		s.healed(c)
		s.resync(st, res.Top, reason)
		return true
	}
	c.filled += s.sendEntries(st, res.Entries, b)
	if !s.closed && c.pos.Off < res.Top.Off {
		c.stale, s.paced = true, true // the rest when the queue has room
		return true
	}
	s.healed(c)
	return true
}

// healed tells the recorder of the gap c has filled, if any. s.mu is
// held.
func (s *Socket) healed(c *cursor) {
	if c.filled > 0 {
		s.r.rec.Healed(int(c.filled))
		c.filled = 0
	}
}

// resync tells the client that the socket carries on from top of st,
// without the events before it that it missed; a broadcast stream's
// resync also says where the socket is in the user stream. s.mu is held.
func (s *Socket) resync(st streams.Stream, top proto.Pos, reason string) {
	r := proto.Resync{Reason: reason}
	if st == streams.BroadcastStream {
		r.BPos = top.String()
		// The contract's resync carries pos: the socket's place in the
		// user stream, unmoved, so a client that reads only pos carries on
		// from where it is in the user stream, and never from bpos.
		if u := &s.cur[streams.UserStream]; u.known {
			r.Pos = u.pos.String()
		}
	} else {
		r.Pos = top.String()
	}
	s.conn.Send(proto.AppendResync(nil, s.conn.User(), &r))
	s.cur[st] = cursor{pos: top, known: true}
	s.r.rec.Resynced(reason)
}

// sendEntries sends entries of stream st, in order, as long as b lets
// them into the send queue, moving the cursor to each; it stops at a frame
// the connection refuses (it is closing: the socket is gone). The events
// of the resume's replay (the cursor's replaying) it sends are counted as
// replayed (Recorder.Replayed); it returns how many it sent past them,
// that fill a gap. s.mu is held.
func (s *Socket) sendEntries(st streams.Stream, entries []streams.Entry, b *budget) (filled uint32) {
	c := &s.cur[st]
	replayed := 0
	for i := range entries {
		e := &entries[i]
		if s.leftOut(e) || e.Undeliverable {
			// Left out (or no socket can be sent it): the place moves
			// past it, nothing is sent, and it is neither replayed nor a
			// gap filled.
			c.pos, c.skipped = e.Pos, true
			if c.replaying > 0 {
				c.replaying--
			}
			continue
		}
		f := entryFrame(st, s.conn.User(), *e)
		if !b.take(len(f)) {
			break
		}
		if !s.conn.Send(f) {
			s.gone()
			break
		}
		c.pos, c.skipped = e.Pos, false
		if c.replaying > 0 {
			c.replaying--
			replayed++
		} else {
			filled++
		}
	}
	if replayed > 0 {
		s.r.rec.Replayed(replayed)
	}
	return filled
}

// entryFrame returns the frame of entry e of stream st for a socket of user.
func entryFrame(st streams.Stream, user string, e streams.Entry) []byte {
	var posBuf [proto.MaxPosLen]byte
	pos := e.Pos.Append(posBuf[:0])
	size := len(`{"event":"","id":"","args":,"bpos":""}`) + len(e.Event) + len(user) + len(e.Args) + len(pos) + 8
	return proto.AppendEventAt(make([]byte, 0, size), e.Event, user, e.Args, st.FrameKey(), pos)
}

// continues reports whether entries are the offsets from+1 onwards, in
// order, at least one and none past top: the first of the events after
// from, of which a stream, trimmed only from its start, then lacks none.
func continues(entries []streams.Entry, from, top uint64) bool {
	if len(entries) == 0 || uint64(len(entries)) > top-from {
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
// must be read again. So it does, setting paced, at the first frame b does
// not let into the send queue.
// confirmed tells, per stream, whether the read just made found the
// stream in the socket's epoch. s.mu is held.
func (s *Socket) release(confirmed [2]bool, b *budget) bool {
	held, early := s.held, s.early
	s.held, s.heldN, s.early = nil, 0, 0
	keep := func(rest []heldFrame) bool {
		for _, f := range rest {
			s.held = append(s.held, f)
			s.heldN += len(f.frame)
		}
		return false
	}
	for i, f := range held {
		if !f.posed {
			if !b.take(len(f.frame)) {
				s.paced = true
				return keep(held[i:])
			}
			s.conn.Send(f.frame)
			continue
		}
		c := &s.cur[f.stream]
		if !c.stale && f.pos.Epoch == c.pos.Epoch {
			if f.pos.Off <= c.pos.Off {
				if !f.skip {
					s.r.rec.Duplicate()
				}
				continue
			}
			if f.pos.Off == c.pos.Off+1 && f.skip {
				c.pos, c.skipped = f.pos, true
				continue
			}
			if f.pos.Off == c.pos.Off+1 {
				if !b.take(len(f.frame)) {
					s.paced = true
					return keep(held[i:])
				}
				c.pos, c.skipped = f.pos, false
				s.conn.Send(f.frame)
				continue
			}
		}
		if !c.stale && f.pos.Epoch != c.pos.Epoch && confirmed[f.stream] && i < early {
			// Older than the epoch the stream is in: a message delayed
			// past a reset of the store.
			if !f.skip {
				s.r.rec.Duplicate()
			}
			continue
		}
		c.stale = true
		return keep(held[i:])
	}
	return true
}
