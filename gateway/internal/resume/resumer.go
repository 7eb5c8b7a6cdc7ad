package resume

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/internal/backoff"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// Reasons of a resync frame, and of a resume that did not recover.
const (
	ReasonStoreLost = "store lost events"      // another epoch: Redis lost data
	ReasonExpired   = "missed events expired"  // past the history window
	ReasonTooMany   = "too many missed events" // over GATEWAY_MAX_REPLAY
	ReasonInvalid   = "unknown position"       // not a position, or ahead of the stream
)

// Outcomes of a resume, for Recorder.Resumed.
const (
	OutcomeRecovered = "recovered"
	OutcomeStoreLost = "store_lost"
	OutcomeExpired   = "expired"
	OutcomeTooMany   = "too_many"
	OutcomeInvalid   = "invalid_position"
	OutcomeOff       = "recovery_off" // HISTORY_WINDOW=0: nothing is kept
)

// Recorder counts what the resumer does, for metrics. It is called with
// sockets' locks held, so it must be cheap and must not block.
type Recorder interface {
	Resumed(outcome string) // a connect with a resume position
	// Replayed counts events of a resume's replay queued to the socket,
	// as they are: a replay fed in parts may be cut short (a resync, the
	// socket closing), and what it never sent is not counted.
	Replayed(events int)
	Healed(events int)      // a gap on a live socket filled
	Resynced(reason string) // a gap that could not be filled
	Duplicate()             // an event a socket already had, dropped
	TransientDropped()      // a transient event dropped while a socket held frames
}

// Config tunes a Resumer.
type Config struct {
	// Enabled turns recovery on (HISTORY_WINDOW > 0): positions are
	// tracked, resumes read the streams. Off, every event is transient.
	Enabled bool
	// MaxReplay is the most events one resume replays (GATEWAY_MAX_REPLAY)
	// and the largest gap healed in place.
	MaxReplay int
	// HeldFrames and HeldBytes bound what a socket holds while it reads;
	// past them it reads its streams again afterwards.
	HeldFrames int
	HeldBytes  int
	// Readers is how many sockets are read for at once after connect.
	Readers int
	// QueueFrames and QueueBytes are the bounds of a socket's send queue
	// (ws.Limits; 0 = no bound). What a socket is sent from its streams (a
	// replay, a gap filled) and the frames it held meanwhile are fed to it
	// a part at a time, each fitting in its queue, the next read from the
	// stream when the socket's writer has taken the queue: a replay larger
	// than the queue is not a slow consumer.
	QueueFrames int
	QueueBytes  int
	// MetaTTL is what Run keeps the metas of the sockets' streams at,
	// refreshing them every streams.KeepEvery(MetaTTL) while it holds a
	// socket of their user (Keep); 0 is streams.MetaTTL, what the scripts
	// set.
	MetaTTL time.Duration
}

// DefaultConfig is the configuration of the contract's defaults.
func DefaultConfig() Config {
	return Config{Enabled: true, MaxReplay: 1000, HeldFrames: 1000, HeldBytes: 1 << 20, Readers: 16}
}

// Resumer places sockets in their streams and keeps them there: it resumes
// a socket at connect, fills gaps on live sockets, and checks every socket
// after the fan-out (re)subscribed. See the package doc for its
// concurrency.
type Resumer struct {
	cfg     Config
	enabled bool
	rdb     redis.UniversalClient
	rec     Recorder
	log     *zap.Logger

	mu      sync.Mutex
	queue   []*Socket     // sockets waiting for a read
	wake    chan struct{} // one token: the queue grew
	stopped bool
	sweep   chan struct{} // one token: a sweep is due
}

// New returns a Resumer reading with rdb. Run must run for gaps to be
// filled.
func New(rdb redis.UniversalClient, cfg Config, rec Recorder, log *zap.Logger) *Resumer {
	if cfg.Readers < 1 {
		cfg.Readers = 1
	}
	if cfg.MetaTTL <= 0 {
		cfg.MetaTTL = streams.MetaTTL
	}
	return &Resumer{cfg: cfg, enabled: cfg.Enabled, rdb: rdb, rec: rec, log: log,
		wake: make(chan struct{}, 1), sweep: make(chan struct{}, 1)}
}

// NewSocket returns the Socket of conn. Until Connect it holds every frame
// offered, so register it for delivery first, then call Connect.
func (r *Resumer) NewSocket(conn Conn) *Socket {
	return &Socket{conn: conn, r: r, holding: true}
}

// ErrUnavailable is Connect's error when the streams cannot be read.
var ErrUnavailable = errors.New("resume: the recovery store cannot be read")

// Connect places s in its streams and sends its "connected" frame
// (docs/protocol.md sections 2 and 6), head with the socket's conn id and
// positions filled in (head gives the rest: worker, heartbeat, max_frame): after the
// positions resume and bresume when the client gave them (the wire form;
// "" for none) and they can be recovered, with the events missed since
// following it; otherwise at the streams' tops. Then the frames s held
// meanwhile go out. It fails with ErrUnavailable, having sent nothing,
// when Redis cannot be read: close the socket, the client comes back.
func (r *Resumer) Connect(ctx context.Context, s *Socket, head proto.Connected, resume, bresume string) error {
	c := head
	c.Conn = s.conn.ID()
	if !r.enabled {
		if resume != "" || bresume != "" {
			// Recovery is off (HISTORY_WINDOW=0): nothing is recovered,
			// and connected says so, as it answers every resume.
			c.Recovered, c.Missed = new(false), new(0)
			r.rec.Resumed(OutcomeOff)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.conn.Send(proto.AppendConnectedFrame(nil, s.conn.User(), &c))
		for _, f := range s.held {
			s.conn.Send(f.frame) // every event is transient
		}
		s.held, s.heldN, s.holding = nil, 0, false
		return nil
	}
	asked := [2]string{resume, bresume}
	resumed := asked[streams.UserStream] != "" || asked[streams.BroadcastStream] != ""
	s.mu.Lock()
	s.early = len(s.held) // held before the read
	b := s.budget()
	s.mu.Unlock()
	if resumed {
		// connected goes first; in its longest form, not known yet.
		b.take(connectedLen(s.conn.User(), &c, r.cfg.MaxReplay))
	}
	var from [2]proto.Pos
	var valid [2]bool
	qs := make([]streams.Query, 2)
	for st := streams.UserStream; st <= streams.BroadcastStream; st++ {
		from[st], valid[st] = proto.ParsePos(asked[st])
		qs[st] = b.limit(streams.Query{Stream: st, User: s.conn.User(), From: from[st], After: valid[st], Max: r.cfg.MaxReplay})
	}
	res, err := streams.Read(ctx, r.rdb, qs)
	if err != nil {
		r.log.Warn("cannot read the recovery streams for a new socket", zap.String("user", s.conn.User()),
			zap.String("conn", s.conn.ID()), zap.Error(err))
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}

	// Recovered only if every stream asked for is: then everything after
	// both positions follows. Otherwise nothing is replayed. The read
	// returned the first of the events missed (as many as fit in the send
	// queue); the rest follow as the socket's writer takes the queue, read
	// from the stream, which lacks none of them: it loses only its oldest
	// (a stream is trimmed from its start), and it has the first.
	outcome, missed := OutcomeRecovered, 0
	for st := streams.UserStream; st <= streams.BroadcastStream; st++ {
		if asked[st] == "" {
			continue
		}
		if o := recoverable(from[st], valid[st], res[st], r.cfg.MaxReplay-missed); o != OutcomeRecovered {
			outcome = o
			break
		}
		missed += int(res[st].Top.Off - from[st].Off)
	}
	recovered := resumed && outcome == OutcomeRecovered

	s.mu.Lock()
	defer s.mu.Unlock()
	for st := streams.UserStream; st <= streams.BroadcastStream; st++ {
		start := res[st].Top
		if recovered && asked[st] != "" && from[st].Off != start.Off {
			// Below the top: the read's entries, each with its own
			// position, take the cursor on from here. At the top, the
			// top's own position: a client's with the right offset but
			// another time would have a later gap read from the wrong
			// place in the stream.
			start = from[st]
		}
		s.cur[st] = cursor{pos: start, known: true}
	}
	c.Pos, c.BPos = s.cur[streams.UserStream].pos.String(), s.cur[streams.BroadcastStream].pos.String()
	if resumed {
		n := 0
		if recovered {
			// What is sent: the entries read that left this socket or
			// a previous one of its client out are not (Socket.Skip).
			// Those of a replay read in parts, past the first part,
			// are not known yet, and counted.
			n = missed
			for st := streams.UserStream; st <= streams.BroadcastStream; st++ {
				if asked[st] == "" {
					continue
				}
				for i := range res[st].Entries {
					if e := &res[st].Entries[i]; s.leftOut(e) || e.Undeliverable {
						n--
					}
				}
			}
		}
		c.Recovered, c.Missed = &recovered, &n
		r.rec.Resumed(outcome)
	}
	frame := proto.AppendConnectedFrame(nil, s.conn.User(), &c)
	s.conn.Send(frame)
	if !resumed {
		b.take(len(frame))
	}
	if recovered {
		for st := streams.UserStream; st <= streams.BroadcastStream; st++ {
			if asked[st] == "" {
				continue
			}
			cur := &s.cur[st]
			cur.replaying = uint32(min(res[st].Top.Off-from[st].Off, math.MaxUint32))
			s.sendEntries(st, res[st].Entries, &b)
			if cur.pos.Off < res[st].Top.Off {
				cur.stale, s.paced = true, true // the rest when the queue has room
			}
		}
	}
	r.settle(s, [2]bool{true, true}, &b)
	return nil
}

// connectedLen returns the length of the longest connected frame c can
// be for user (positions of the longest form, missed at most max).
func connectedLen(user string, c *proto.Connected, max int) int {
	long, yes := strings.Repeat("0", proto.MaxPosLen), true
	head := *c
	head.Pos, head.BPos, head.Recovered, head.Missed = long, long, &yes, &max
	return len(proto.AppendConnectedFrame(nil, user, &head))
}

// recoverable says whether a resume from `from` (valid: it parsed) can be
// recovered from res with at most max events: the outcome.
func recoverable(from proto.Pos, valid bool, res streams.Result, max int) string {
	switch {
	case !valid || (from.Epoch == res.Top.Epoch && from.Off > res.Top.Off):
		return OutcomeInvalid
	case from.Epoch != res.Top.Epoch:
		return OutcomeStoreLost
	case res.Top.Off == from.Off:
		return OutcomeRecovered
	case res.Top.Off-from.Off > uint64(max):
		return OutcomeTooMany
	case !continues(res.Entries, from.Off, res.Top.Off):
		// A time is never later than the top's, and the read finds what
		// follows the position's entry while the stream holds it: this
		// is no position of ours, not one whose events expired.
		if from.MS > res.Top.MS || (res.Oldest != 0 && res.Oldest <= from.Off+1) {
			return OutcomeInvalid
		}
		return OutcomeExpired
	}
	return OutcomeRecovered
}

// settle ends a read of s: it releases the frames held, as far as b lets
// them into the send queue, and either lets s go live or, when they show
// another gap (or frames were dropped while held), queues it for another
// read; when the read or the release stopped short for lack of room in
// the send queue, that read waits for the socket's writer to take the
// queue. s.mu is held.
func (r *Resumer) settle(s *Socket, confirmed [2]bool, b *budget) {
	if s.closed {
		return
	}
	if s.sweptSet {
		s.sweptSet = false
		for st, top := range s.swept {
			if c := &s.cur[st]; top.Epoch != c.pos.Epoch || top.Off > c.pos.Off {
				c.stale = true
			}
		}
	}
	if s.overrun {
		s.overrun = false
		s.cur[streams.UserStream].stale, s.cur[streams.BroadcastStream].stale = true, true
	}
	if s.release(confirmed, b) && !s.cur[streams.UserStream].stale && !s.cur[streams.BroadcastStream].stale {
		s.holding, s.paced = false, false
		return
	}
	s.holding = true
	if s.paced {
		s.paced = false
		if s.whenDrained() {
			return
		}
	}
	r.schedule(s)
}

// schedule queues s for a read, unless it is queued already. s.mu is
// held.
func (r *Resumer) schedule(s *Socket) {
	if s.queued {
		return
	}
	s.queued = true
	r.mu.Lock()
	if !r.stopped {
		r.queue = append(r.queue, s)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// RequestSweep asks Run to Sweep every socket soon; it never blocks, and
// requests made while one waits are one.
func (r *Resumer) RequestSweep() {
	select {
	case r.sweep <- struct{}{}:
	default:
	}
}

// Run reads for the sockets queued (gaps to fill) with Config.Readers
// goroutines, sweeps the sockets that sockets lists when asked to
// (RequestSweep), and keeps their streams' metas (Keep) every
// streams.KeepEvery(Config.MetaTTL), until ctx is done; it returns once
// its goroutines have ended.
func (r *Resumer) Run(ctx context.Context, sockets func() []*Socket) {
	var wg sync.WaitGroup
	for range r.cfg.Readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.readLoop(ctx)
		}()
	}
	if r.enabled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.keepLoop(ctx, sockets)
		}()
	}
	wait := backoff.Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-r.sweep:
			if err := r.Sweep(ctx, sockets()); err != nil && ctx.Err() == nil {
				r.log.Warn("cannot check the sockets against their streams; retrying", zap.Error(err))
				r.RequestSweep()
				wait.Wait(ctx)
				continue
			}
			wait.Reset()
		}
	}
	r.mu.Lock()
	r.stopped = true
	r.queue = nil
	r.mu.Unlock()
	wg.Wait()
}

func (r *Resumer) readLoop(ctx context.Context) {
	for {
		s := r.next()
		if s == nil {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
				continue
			}
		}
		r.fill(ctx, s)
		// Another reader may be needed for what is still queued.
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

func (r *Resumer) next() *Socket {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return nil
	}
	s := r.queue[0]
	r.queue[0] = nil
	r.queue = r.queue[1:]
	return s
}

// fill reads the stale streams of s and applies them, until s is live,
// closed, waits for its send queue to drain, or ctx is done; a failed read
// is retried with back-off while s holds its frames.
func (r *Resumer) fill(ctx context.Context, s *Socket) {
	wait := backoff.Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}
	for {
		s.mu.Lock()
		if s.closed {
			s.queued = false
			s.mu.Unlock()
			return
		}
		b := s.budget()
		if b.full() && s.whenDrained() {
			// Nothing more fits: read when the writer has taken the queue.
			s.queued = false
			s.mu.Unlock()
			return
		}
		if b.full() { // the writer took the queue meanwhile
			b = s.budget()
		}
		qs := s.queries(&b)
		s.early = len(s.held) // held before the read
		s.mu.Unlock()

		var res []streams.Result
		var err error
		if len(qs) > 0 { // none: only held frames wait for room
			res, err = streams.Read(ctx, r.rdb, qs)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("cannot read a stream to fill a gap; retrying", zap.String("user", s.conn.User()),
				zap.String("conn", s.conn.ID()), zap.Error(err))
			if !wait.Wait(ctx) {
				return
			}
			continue
		}
		s.mu.Lock()
		var confirmed [2]bool
		if !s.closed {
			for i, q := range qs {
				confirmed[q.Stream] = s.heal(q.Stream, res[i], &b)
			}
		}
		s.queued = false
		r.settle(s, confirmed, &b) // may queue s again
		s.mu.Unlock()
		return
	}
}

// Sweep checks sockets against the tops of their streams, after the
// fan-out (re)subscribed: what was published while it was not subscribed
// reached no socket. A socket behind its stream, or in another epoch, or
// whose stream Redis kept across a restart (it may have lost the events
// after it: streams.CurrentTops), is queued for a read, which fills the
// gap (or resyncs). The metas are read
// in pipelined batches. A socket busy with a read (at connect, or filling
// a gap) keeps the tops seen here: that read may have been made while the
// fan-out was not subscribed, so when it settles the socket reads again if
// it is still short of them.
func (r *Resumer) Sweep(ctx context.Context, sockets []*Socket) error {
	if !r.enabled || len(sockets) == 0 {
		return nil
	}
	index := map[string]int{}
	metas, parts := []string{proto.BroadcastMetaKey}, []int{proto.BroadcastPartition}
	for _, s := range sockets {
		u := s.conn.User()
		if _, ok := index[u]; !ok {
			index[u] = len(metas)
			metas, parts = append(metas, proto.UserMetaKey(u)), append(parts, proto.PartitionOf(u))
		}
	}
	// As the scripts see them: a stream that Redis kept across a restart
	// may have lost its last events, and a socket at its top must learn it.
	tops, err := streams.CurrentTops(ctx, r.rdb, metas, parts)
	if err != nil {
		return fmt.Errorf("sweep: read the streams' tops: %w", err)
	}
	behind := 0
	for _, s := range sockets {
		s.mu.Lock()
		if !s.closed && s.holding {
			s.swept, s.sweptSet = [2]proto.Pos{tops[index[s.conn.User()]], tops[0]}, true
		}
		if !s.closed && !s.holding {
			for st, top := range [2]proto.Pos{tops[index[s.conn.User()]], tops[0]} {
				c := &s.cur[st]
				if top.Epoch != c.pos.Epoch || top.Off > c.pos.Off {
					c.stale = true
				}
			}
			if s.cur[streams.UserStream].stale || s.cur[streams.BroadcastStream].stale {
				s.holding = true
				r.schedule(s)
				behind++
			}
		}
		s.mu.Unlock()
	}
	if behind > 0 {
		r.log.Info("sockets behind their streams after a subscription; filling", zap.Int("sockets", behind),
			zap.Int("checked", len(sockets)))
	}
	return nil
}
