// Package fanout owns a worker's Redis subscription to the dispatch channel
// (docs/protocol.md section 4) and feeds every dispatch to the local sockets. It
// resubscribes by itself after Redis goes away and comes back.
//
// Two goroutines started by Run share the work: a reader, the only owner of
// the subscription, moves each message off the Redis connection into a
// bounded queue as soon as it arrives, and a deliverer decodes and delivers
// from that queue. So a worker that falls behind builds its backlog here,
// where it is seen (Backlog, Lagging), rather than in Redis's output buffer
// for the connection, where it is not seen until Redis disconnects the
// subscriber for it (client-output-buffer-limit pubsub) and the worker
// must fill what was published meanwhile from the streams.
//
// Lagging turns on when the backlog reaches a high mark and off only when it
// has fallen to a low mark, so it does not flap with each message; the worker
// refuses new envelopes while it is on, which stops its own share of the
// dispatches at the source. Under a sustained overload it still turns on and
// off several times a second; the log shows one episode per 10 s at most,
// with the count of those it left out. Redis pub/sub delivers at most once:
// what is published while the subscription is down never arrives here, and
// Resubscriptions counts how often that window opened. OnSubscribed tells
// the worker each time the subscription is (re)established, so it can fill
// the window from the recovery streams (package resume).
//
// In per-user mode (PerUser, FANOUT_MODE=per_user) the same connection also
// subscribes to the channel of each user the worker holds a socket of:
// Acquire, on a user's first socket, returns once Redis confirmed it, and
// Release, on the last, lets it go after a linger (users.go). Those
// (un)subscriptions are written in batches by one goroutine of Run's, and
// after a new connection all of them are written again before the
// subscription counts as established. On a Redis Cluster the user channels
// are sharded ones, on one subscription per partition, each with its own
// reader and probe (shards.go).
package fanout

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"

	"github.com/switchboard/switchboard/internal/backoff"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// Deliverer takes decoded dispatches; Deliver must not block.
type Deliverer interface {
	Deliver(d *proto.Dispatch) int
}

// Retry bounds of the resubscribe back-off, and how long the channel may be
// quiet before the connection is checked with a PING.
const (
	healthInterval = 15 * time.Second
	minBackoff     = 50 * time.Millisecond
	maxBackoff     = 2 * time.Second
)

// DefaultQueue is the backlog a Subscriber holds when New is given none: at
// this box's ~20,000 dispatches/s per worker, about 1.5 s of them.
const DefaultQueue = 32768

// Subscriber reads the dispatch channel and delivers each message.
type Subscriber struct {
	rdb redis.UniversalClient
	to  Deliverer
	log *zap.Logger

	// queue holds the messages read but not yet delivered. It is bounded:
	// when it is full the reader stops reading, and the backlog grows in
	// Redis's output buffer for the connection instead, up to Redis's limit.
	queue       chan string
	bytes       *semaphore.Weighted // bounds the bytes queued, as queue's capacity bounds the messages
	maxBytes    int64
	queuedBytes atomic.Int64
	droppedExit atomic.Uint64
	high        int // Lagging turns on at this backlog
	low         int // and off at this one
	backlog     atomic.Int64
	lagging     atomic.Bool
	byteWaits   atomic.Int32 // readers waiting at the bytes bound (enqueue): lagging while any does
	lagMu       sync.Mutex   // orders the reader turning lagging on and the deliverer turning it off
	lagSince    time.Time    // when lagging last turned on; under lagMu
	lagLog      lagLog       // under lagMu
	// lagged is closed when lagging turns on, and made anew when it turns
	// off, so that Acquire's wait for a confirmation ends then; under lagMu.
	lagged chan struct{}

	line         // the shared channel's connection
	resubs       atomic.Uint64
	malformed    atomic.Uint64
	reserved     atomic.Uint64
	recorded     bool // recovery on: dispatches to users and broadcasts carry positions
	unrecorded   atomic.Uint64
	unrecLogged  atomic.Bool
	onSubscribed func()                   // nil: none
	onDisconnect func(*proto.Disconnect)  // nil: disconnects are dropped as malformed
	onRestored   func(down time.Duration) // nil: none
	lostAt       time.Time                // when the subscription was last lost; the reader's only
	// wasLive: the subscription has been established once; the reader's
	// only. Until then a failure is Redis not up yet at start, not a loss:
	// neither logged as one nor counted as a resubscription or an outage.
	wasLive bool

	stalls atomic.Uint64

	perUser bool      // FANOUT_MODE=per_user
	users   *userSubs // per-user mode's user channels on this connection; nil in shared mode and on a cluster
	// shards are a Redis Cluster's partitions in per-user mode, each a
	// sharded subscription of its own (shards.go); nil otherwise.
	shards []*shard
	done   chan struct{} // closed when Run has ended
}

// New returns a Subscriber reading from rdb and delivering to to, holding up
// to queue messages read but not yet delivered (DefaultQueue if queue < 1).
// Lagging turns on at queue/8 of them and off at queue/64.
func New(rdb redis.UniversalClient, to Deliverer, queue int, log *zap.Logger, opts ...Option) *Subscriber {
	if queue < 1 {
		queue = DefaultQueue
	}
	s := &Subscriber{
		rdb: rdb, to: to, log: log,
		queue:    make(chan string, queue),
		maxBytes: DefaultQueueBytes,
		high:     max(queue/8, 1),
		low:      queue / 64,
		done:     make(chan struct{}),
		lagged:   make(chan struct{}),
	}
	s.probe = prober{every: ProbeEvery, within: ProbeWithin, rdb: rdb}
	s.probeChannel = probeChannelName("sb:")
	for _, o := range opts {
		o(s)
	}
	if s.users != nil && streams.IsCluster(rdb) {
		s.shardUsers()
	}
	s.bytes = semaphore.NewWeighted(s.maxBytes)
	return s
}

// Option changes how New builds a Subscriber.
type Option func(*Subscriber)

// DefaultQueueBytes bounds the bytes of the messages read and not yet
// delivered, unless QueueBytes says otherwise.
const DefaultQueueBytes = 64 << 20

// QueueBytes bounds the bytes of the messages read and not yet delivered
// (at least 64 KiB): past it the reader waits, as when the queue is full,
// so large dispatches cannot grow the worker's memory without bound.
func QueueBytes(n int64) Option {
	return func(s *Subscriber) { s.maxBytes = max(n, 64<<10) }
}

// OnSubscribed has the Subscriber call fn each time Redis confirms the
// subscription, the first time and after every resubscription; fn runs on
// the reader, so it must return at once. What was published while the
// subscription was down reached no socket here: fn is where the worker
// has it filled from the streams (docs/protocol.md section 6).
func OnSubscribed(fn func()) Option { return func(s *Subscriber) { s.onSubscribed = fn } }

// OnDisconnect has the Subscriber call fn with each disconnect control
// message (docs/protocol.md section 4), in order with the dispatches; fn
// runs on the deliverer, so it must not block. Without it such a message
// is dropped as malformed, as a worker of an earlier release drops it.
func OnDisconnect(fn func(*proto.Disconnect)) Option {
	return func(s *Subscriber) { s.onDisconnect = fn }
}

// OnRestored has the Subscriber call fn with how long the subscription
// was down each time it is restored after a loss or a stall; fn runs on
// the reader, so it must return at once.
func OnRestored(fn func(down time.Duration)) Option {
	return func(s *Subscriber) { s.onRestored = fn }
}

// Recorded tells the Subscriber that recovery is on (HISTORY_WINDOW > 0):
// a dispatch to users or a broadcast without positions is then a
// publisher that records nothing, counted (Unrecorded) and logged once.
func Recorded() Option { return func(s *Subscriber) { s.recorded = true } }

// Unrecorded returns how many dispatches to users or broadcasts came
// without positions while recovery is on (Recorded); 0 without it.
func (s *Subscriber) Unrecorded() uint64 { return s.unrecorded.Load() }

// Malformed returns how many dispatches were dropped because they did not
// decode.
func (s *Subscriber) Malformed() uint64 { return s.malformed.Load() }

// Reserved returns how many dispatches were dropped because they named one
// of the gateway's own events (connected, ack, error, resync).
func (s *Subscriber) Reserved() uint64 { return s.reserved.Load() }

// Live reports whether the subscription is currently established: on a
// Redis Cluster in per-user mode, every partition's too.
func (s *Subscriber) Live() bool {
	if !s.live.Load() {
		return false
	}
	for _, sh := range s.shards {
		if !sh.live.Load() {
			return false
		}
	}
	return true
}

// BacklogBytes returns the bytes of the messages read from Redis and not
// yet delivered.
func (s *Subscriber) BacklogBytes() int64 { return s.queuedBytes.Load() }

// DroppedAtExit returns how many messages read from Redis were never
// delivered because Run ended.
func (s *Subscriber) DroppedAtExit() uint64 { return s.droppedExit.Load() }

// Backlog returns how many messages have been read from Redis and not yet
// delivered.
func (s *Subscriber) Backlog() int { return int(s.backlog.Load()) }

// Lagging reports whether delivery is behind the channel: on since the
// backlog reached its high mark, until it fell back to its low mark.
func (s *Subscriber) Lagging() bool { return s.lagging.Load() }

// Resubscriptions returns how often the subscription was restored after it
// was lost; each time, what was published meanwhile was lost to this worker.
func (s *Subscriber) Resubscriptions() uint64 { return s.resubs.Load() }

// Run subscribes and delivers until ctx is done. Losing Redis is logged once
// and recovery once; in between it retries with back-off. It returns after
// its goroutines (reader, deliverer, prober) have ended; messages still
// queued then are dropped.
func (s *Subscriber) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer close(s.done)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.deliverLoop(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); s.probeLoop(ctx, &s.line) }()
	for _, u := range s.allUsers() {
		wg.Add(1)
		go func() { defer wg.Done(); s.userLoop(ctx, u) }()
	}
	for _, sh := range s.shards {
		wg.Add(2)
		go func() { defer wg.Done(); s.readShard(ctx, sh) }()
		go func() { defer wg.Done(); s.probeLoop(ctx, &sh.line) }()
	}
	err := s.read(ctx)
	cancel()
	wg.Wait()
	s.live.Store(false)
	dropped := 0
	for len(s.queue) > 0 {
		<-s.queue
		dropped++
	}
	if dropped > 0 {
		// Read from Redis and never delivered: the sockets of this worker
		// are closing too, and their clients resume elsewhere.
		s.droppedExit.Add(uint64(dropped))
		s.log.Warn("dropping the fan-out backlog at exit", zap.Int("dispatches", dropped))
	}
	s.backlog.Store(0)
	s.queuedBytes.Store(0)
	s.lagMu.Lock()
	if s.lagging.Swap(false) {
		// As a turn off does: a closed lagged with lagging off would read
		// as lagging to Acquire's wait.
		s.lagged = make(chan struct{})
	}
	s.lagMu.Unlock()
	return err
}

// read is the reader: it owns the subscription and queues every message.
// Each connection is a PubSub of its own: after a loss, or a stall the
// prober noticed (it closes the current one), the next is a new one.
func (s *Subscriber) read(ctx context.Context) error {
	bo := backoff.Backoff{Min: minBackoff, Max: maxBackoff}
	down := false
	for ctx.Err() == nil {
		ps := s.rdb.Subscribe(ctx)
		s.current(ps)
		// A blocked Receive does not watch ctx; closing the PubSub ends it.
		stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
		err := s.receive(ctx, ps, &bo, &down)
		stop()
		s.current(nil)
		if s.users != nil {
			s.users.detach()
		}
		_ = ps.Close()
		if ctx.Err() != nil {
			break
		}
		s.lost(&down, err)
		if !bo.Wait(ctx) {
			break
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	return ctx.Err()
}

// receive subscribes ps to the dispatch channel, the probe channel and, in
// per-user mode, every user channel wanted, and queues what arrives, until
// the connection fails or is closed. The subscription counts as
// established when the last of those is confirmed (Redis confirms in
// order), so the sweep that follows sees every channel live.
func (s *Subscriber) receive(ctx context.Context, ps *redis.PubSub, bo *backoff.Backoff, down *bool) error {
	chans := []string{proto.Channel, s.probeChannel}
	if s.perUser {
		// Said to a handlers-svc publishing per user (modecheck): this
		// worker takes the user channels.
		chans = append(chans, proto.PerUserMarkerChannel)
	}
	if err := ps.Subscribe(ctx, chans...); err != nil {
		return err
	}
	last := proto.Channel // whose confirmation completes the subscription
	if s.users != nil {
		chans := s.users.attach(ps)
		if err := batched(chans, func(c []string) error { return ps.Subscribe(ctx, c...) }); err != nil {
			return err
		}
		if len(chans) > 0 {
			last = chans[len(chans)-1]
		}
	}
	established := false
	for {
		msg, err := nextMessage(ctx, ps)
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if s.users != nil && m.Channel != proto.Channel && m.Channel != s.probeChannel && m.Channel != proto.PerUserMarkerChannel {
				s.users.confirmed(m.Kind, m.Channel)
			}
			if m.Kind == "subscribe" && m.Channel == last && !established {
				established = true
				s.subscribed(bo, down)
			}
		case *redis.Message:
			if m.Channel == s.probeChannel {
				s.probeSeen(m.Payload)
				continue
			}
			s.enqueue(ctx, &s.line, m.Payload) // false only when ctx is done, which ends the loop
		}
	}
}

// subscribed records a confirmed subscription: live again, and the worker
// told, so it fills what the channel carried while nothing listened.
func (s *Subscriber) subscribed(bo *backoff.Backoff, down *bool) {
	s.live.Store(true)
	bo.Reset()
	if s.onSubscribed != nil {
		s.onSubscribed()
	}
	first := !s.wasLive
	s.wasLive = true
	if !*down || first {
		fields := []zap.Field{zap.String("channel", proto.Channel), zap.Bool("per_user", s.perUser),
			zap.Int("partitions", len(s.shards))}
		if *down {
			fields = append(fields, zap.Duration("waited", time.Since(s.lostAt)))
		}
		*down = false
		s.log.Info("redis subscribed", fields...)
		return
	}
	s.resubs.Add(1)
	d := time.Since(s.lostAt)
	if s.onRestored != nil {
		s.onRestored(d)
	}
	s.log.Warn("redis subscription restored; what was published while it was down is filled from the streams",
		zap.String("channel", proto.Channel), zap.Duration("down", d), zap.Int("user_channels", s.UserChannels()))
	*down = false
}

// enqueue queues one message that l's reader read for the deliverer,
// waiting while the queue is full; it reports false if ctx ended first.
// While it waits, l's prober does not take l's silence for a stall: the
// reader reads nothing, probes included, because the worker is behind,
// not the link, and what Redis holds for it meanwhile is what its
// output buffer is sized for.
func (s *Subscriber) enqueue(ctx context.Context, l *line, payload string) bool {
	// Counted before it is queued, so the deliverer never sees the
	// backlog below zero.
	if n := s.backlog.Add(1); n >= int64(s.high) && !s.lagging.Load() {
		s.setLagging(true, n)
	}
	w := s.weight(payload)
	if !s.bytes.TryAcquire(w) {
		// Held at the bytes bound: lagging too, though the messages
		// may be few (large dispatches).
		l.wait()
		s.byteWaits.Add(1)
		s.setLagging(true, s.backlog.Load())
		err := s.bytes.Acquire(ctx, w)
		s.byteWaits.Add(-1)
		if err != nil {
			l.waiting.Store(false)
			return false
		}
	}
	s.queuedBytes.Add(int64(len(payload)))
	select {
	case s.queue <- payload:
	default:
		l.wait()
		select {
		case s.queue <- payload:
		case <-ctx.Done():
			l.waiting.Store(false)
			return false
		}
	}
	l.waiting.Store(false)
	return true
}

// weight is what a message counts against the bytes bound; one larger
// than the bound counts as the whole bound, so it still goes through.
func (s *Subscriber) weight(payload string) int64 { return min(int64(len(payload)), s.maxBytes) }

// deliverLoop is the deliverer: it delivers queued messages in order until
// ctx is done.
func (s *Subscriber) deliverLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-s.queue:
			s.deliver(p)
			s.bytes.Release(s.weight(p))
			s.queuedBytes.Add(-int64(len(p)))
			if n := s.backlog.Add(-1); n <= int64(s.low) && s.lagging.Load() {
				s.setLagging(false, n)
			}
		}
	}
}

// setLagging turns Lagging on or off and logs the change once; the reader
// turns it on and the deliverer off, so the mutex orders the two.
func (s *Subscriber) setLagging(on bool, backlog int64) {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	if s.lagging.Load() == on {
		return
	}
	// Re-check under the lock against the current backlog, so a change
	// that crossed the other mark meanwhile is not undone.
	n := s.backlog.Load()
	held := s.byteWaits.Load() > 0 // a reader waits at the bytes bound
	if (on && n < int64(s.high) && !held) || (!on && (n > int64(s.low) || held)) {
		return
	}
	s.lagging.Store(on)
	// The deliverer checks lagging without the lock: if it drained the
	// backlog between the check above and the store, it saw lagging off
	// and will not turn it off, so it must not stay on. (A missed turn on
	// is redone by the next message the reader queues.)
	if on && !held && s.backlog.Load() <= int64(s.low) {
		s.lagging.Store(false)
		return
	}
	now := time.Now()
	if on {
		close(s.lagged)
		s.lagSince = now
		if s.lagLog.enter(now) {
			s.log.Warn("fan-out lagging behind the dispatch channel; refusing new envelopes until it catches up",
				zap.Int64("backlog", n), zap.Int("high_mark", s.high), zap.Int("low_mark", s.low),
				zap.Int("episodes_not_logged", s.lagLog.skipped))
			s.lagLog.skipped = 0
		}
		return
	}
	s.lagged = make(chan struct{})
	if s.lagLog.logged {
		s.log.Info("fan-out caught up; accepting envelopes again",
			zap.Int64("backlog", n), zap.Duration("lagged", now.Sub(s.lagSince)))
	}
}

// laggedCh returns whether the fan-out is lagging and the channel closed
// when it next turns lagging (closed already when it is).
func (s *Subscriber) laggedCh() (bool, <-chan struct{}) {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	return s.lagging.Load(), s.lagged
}

// lagLogEvery is the least time between two logged lagging episodes. Under
// a sustained overload Lagging turns on and off every fraction of a
// second, as refusing lets the backlog drain and accepting refills it; one
// pair of lines per episode would flood the log.
const lagLogEvery = 10 * time.Second

// lagLog decides which lagging episodes are logged: the first, and then at
// most one per lagLogEvery, which counts those it skipped.
type lagLog struct {
	last    time.Time // when an episode was last logged
	logged  bool      // the current episode was logged
	skipped int       // episodes not logged since the last that was
}

// enter reports whether an episode starting now is logged.
func (l *lagLog) enter(now time.Time) bool {
	l.logged = l.last.IsZero() || now.Sub(l.last) >= lagLogEvery
	if l.logged {
		l.last = now
	} else {
		l.skipped++
	}
	return l.logged
}

func (s *Subscriber) lost(down *bool, err error) {
	s.live.Store(false)
	if !*down && !s.wasLive {
		s.lostAt = time.Now()
		s.log.Warn("redis not reachable yet, subscribing in the background", zap.Error(err))
		*down = true
		return
	}
	if !*down {
		s.lostAt = time.Now()
		// A lagging subscriber disconnected by Redis (its pub/sub output
		// buffer limit) sees EOF or a reset here, like a Redis restart.
		s.log.Error("redis subscription lost, retrying; what is published until it is restored is filled from the streams then",
			zap.Error(err), zap.Int("backlog", s.Backlog()), zap.Bool("lagging", s.Lagging()))
		*down = true
	}
}

func (s *Subscriber) deliver(payload string) {
	control := s.onDisconnect != nil && proto.IsControl(payload)
	if control && s.disconnect(payload) {
		return
	}
	// Lazily: of the positions of the dispatch's users, only those of the
	// users this worker holds are decoded (the others are checked).
	d, err := proto.DecodeDispatchLazy([]byte(payload))
	if err != nil {
		// Perhaps a disconnect in another JSON form than AppendDisconnect's.
		if s.onDisconnect != nil && !control && s.disconnect(payload) {
			return
		}
		s.malformed.Add(1)
		s.log.Warn("dropping malformed dispatch", zap.Error(err), zap.Int("bytes", len(payload)))
		return
	}
	if proto.Reserved(d.Event) {
		// No publisher may speak for the gateway: a second "connected"
		// or a forged "ack" would mislead clients.
		s.reserved.Add(1)
		s.log.Warn("dropping a dispatch that names one of the gateway's own events", zap.String("event", d.Event))
		return
	}
	if s.recorded && !d.Transient && unrecorded(&d) {
		s.unrecorded.Add(1)
		if s.unrecLogged.CompareAndSwap(false, true) {
			s.log.Warn("a dispatch came without a position: its publisher runs HISTORY_WINDOW=0 (or an earlier release) while this gateway recovers; "+
				"such events are in no stream, and a device away when they were sent resumes recovered without them. Set HISTORY_WINDOW the same on handlers-svc",
				zap.String("event", d.Event))
		}
	}
	s.to.Deliver(&d)
}

// unrecorded reports whether d is a dispatch to users or a broadcast that
// carries no position, which a recording publisher always gives them.
// Events to connections carry none by design.
func unrecorded(d *proto.Dispatch) bool {
	if d.Broadcast {
		return d.BPos == ""
	}
	return len(d.Users) > 0 && !d.HasPos()
}

// disconnect hands payload to onDisconnect if it is a disconnect, and
// reports whether it was. A body that is not is then decoded as a
// dispatch, as a worker that knows no disconnects would.
func (s *Subscriber) disconnect(payload string) bool {
	m, err := proto.DecodeDisconnect([]byte(payload))
	if err != nil {
		return false
	}
	s.onDisconnect(&m)
	return true
}

// nextMessage returns the next message of ps. Through a quiet interval
// (no probe either: the prober waits for the subscription) it checks with
// a PING that the connection still works.
func nextMessage(ctx context.Context, ps *redis.PubSub) (any, error) {
	for {
		msg, err := ps.ReceiveTimeout(ctx, healthInterval)
		if err == nil {
			return msg, nil
		}
		if ne, ok := errors.AsType[net.Error](err); ctx.Err() == nil && ok && ne.Timeout() {
			if err = ps.Ping(ctx); err == nil {
				continue
			}
		}
		return nil, err
	}
}
