// Package presence records, in Redis, which users have sockets open on a
// gateway worker (docs/protocol.md section 7, an extension): for each
// local socket a lease, a member of its user's sorted set
// (proto.UserPresenceKey) whose score is the Unix time in ms it expires.
// handlers-svc counts the unexpired leases.
//
// Leases holds the worker's local sockets by user and owns every write: one
// goroutine (Run) writes the leases of sockets opened and the removals of
// sockets closed in pipelined batches, and every TTL/3 writes the leases
// of all local sockets again (a refresh), each user's key with a PEXPIRE of
// the TTL, so the key of a user with no live lease vanishes. No socket has
// a goroutine or a timer of its own. The sockets of a worker that dies
// without removing them expire by themselves within the TTL.
//
// Opened never blocks on Redis: it queues the write. Closed waits, within
// its context, until the removal is written, so whatever announces the
// close afterwards finds the lease gone. A write that fails is counted and
// logged (at most once per logEvery) and left to the next refresh, which
// writes every lease again and every removal that failed whose lease has
// not expired yet (a lease not removed otherwise counts until it expires,
// within the TTL). A batch that fails as a whole (Redis down or hung) ends
// the writes of its pass, whose other writes are counted as failed and
// left likewise, so a hung Redis holds the writer, and the worker's stop,
// for one batch, not one per batch. Since one goroutine writes in order, a refresh
// never writes back the lease of a socket whose removal was queued before
// it, and a removal queued during a refresh is written after it.
package presence

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/internal/logevery"
	"github.com/switchboard/switchboard/proto"
)

// MinTTL is the shortest lease: below it a refresh, every TTL/3, would
// have less than a second to reach Redis before leases lapse.
const MinTTL = 3 * time.Second

// Bounds of the writes.
const (
	// batchCmds bounds the Redis commands one pipeline runs: a refresh of
	// many sockets is written in several, each a bounded round trip.
	batchCmds = 512
	// batchOps is the most leases or removals in one pipeline: a script
	// each, of 2 or 3 commands.
	batchOps = batchCmds / 2
	// batchUsers is the most users in one pipeline of a refresh: 3
	// commands each. (A script for the users of a partition made less
	// garbage, but cost Redis a quarter more CPU per user.)
	batchUsers = batchCmds / 3
	// writeTimeout bounds one pipeline's round trip.
	writeTimeout = 2 * time.Second
	// logEvery is how often, at most, failed writes are logged.
	logEvery = 30 * time.Second
	// indexFrom is the most sockets of a user looked up by a scan of its
	// list, beyond which they are indexed (GATEWAY_MAX_CONNS_PER_USER may
	// be 0, unlimited).
	indexFrom = 16
	// keepPending is the largest queue of writes whose array is kept for
	// the next writes: one of a connect storm is let go.
	keepPending = 4 * batchOps
)

// Recorder counts failed writes; the worker's metrics implement it.
type Recorder interface {
	// PresenceWriteFailed counts n leases whose write (at a socket's
	// open, or a refresh) or removal (at its close) failed.
	PresenceWriteFailed(n int)
}

// Leases is one worker's socket leases. It is safe for concurrent use.
// The zero value is not usable; call New.
type Leases struct {
	rdb    redis.UniversalClient
	ttl    time.Duration
	ttlArg any // ttl in ms, as the scripts take it
	rec    Recorder
	failed *logevery.Log
	now    func() time.Time

	mu      sync.Mutex
	local   map[string]*sockets // user -> its open local sockets
	n       int                 // sockets in local
	pending []op                // writes not yet taken by Run, in order
	spare   []op                // the array of writes taken and written, for the next ones
	written chan struct{}       // closed once the writes now pending are written (or failed)

	kick    chan struct{} // capacity 1: writes are pending
	stopped chan struct{} // closed when Run returns

	// unremoved are the removals that failed, retried at each refresh
	// until written or until the lease they remove has expired anyway:
	// at most the sockets closed in one TTL. Run's goroutine alone uses it.
	unremoved []retry

	// Run's goroutine alone uses these, kept from batch to batch and
	// from pass to pass, so a refresh makes little garbage: the users of
	// a pass, the arguments of a batch's commands, its commands, and
	// those of them to send again once Redis has its scripts back.
	names []string
	args  []any
	batch []queued
	again []redis.Cmder
}

// retry is a removal that failed, and when the lease it removes expires
// at the latest.
type retry struct {
	op
	until time.Time
}

// op is one queued write: a socket's lease, or its removal; count, for
// the writes of Opened and Closed, takes the user's count after it.
type op struct {
	user      string // for the log
	key, conn any    // the user's key and the socket's id, strings
	add       bool
	count     *Count
}

// queued is a command of a batch: what it writes (for a refresh, the
// user's first socket), for its count and the log, and how many leases;
// or, part, a further command of the same write (a refresh's
// ZREMRANGEBYSCORE and PEXPIRE of the user's key).
type queued struct {
	cmd    *redis.Cmd
	op     op
	leases int
	part   bool
}

// Count is the number of a user's sockets with an unexpired lease right
// after one socket's lease was written or removed, counted by Redis in
// the same step (a script), so that of two sockets of one user opened at
// once exactly one finds 1, and of two closed at once exactly one finds
// 0. It is known once Done is closed and the write succeeded.
type Count struct {
	done <-chan struct{} // the batch's written channel
	n    int
	ok   bool // set by Run's goroutine before done is closed
}

// Done is closed once the write has been tried.
func (c *Count) Done() <-chan struct{} { return c.done }

// Sockets returns the count, and false while the write has not been
// tried, or when it failed.
func (c *Count) Sockets() (int, bool) {
	select {
	case <-c.done:
		return c.n, c.ok
	default:
		return 0, false
	}
}

// New returns Leases of ttl (at least MinTTL) written to rdb, failures
// counted by rec and logged to log, which carries the worker's field.
func New(rdb redis.UniversalClient, ttl time.Duration, rec Recorder, log *zap.Logger) *Leases {
	if ttl < MinTTL {
		panic("presence: TTL below MinTTL")
	}
	return &Leases{
		rdb: rdb, ttl: ttl, rec: rec, now: time.Now,
		ttlArg:  strconv.FormatInt(ttl.Milliseconds(), 10),
		failed:  logevery.New(log, "presence not recorded in redis, retried at the next refresh", logEvery),
		local:   make(map[string]*sockets),
		written: make(chan struct{}),
		kick:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
	}
}

// Opened records the lease of socket conn of user, which has just become
// deliverable. It queues the write and returns at once, with the user's
// Count after it, done once the write has been tried: what announces the
// socket waits on it, so that whoever hears of the socket finds its
// lease.
func (l *Leases) Opened(user, conn string) *Count {
	l.mu.Lock()
	s := l.local[user]
	if s == nil {
		s = &sockets{key: proto.UserPresenceKey(user)}
		l.local[user] = s
	}
	id, added := s.add(conn)
	if added {
		l.n++
	}
	c := &Count{done: l.written}
	l.pending = append(l.pending, op{user: user, key: s.key, conn: id, add: true, count: c})
	l.mu.Unlock()
	l.wake()
	return c
}

// Closed removes the lease of socket conn of user, which has ended, and
// waits until the removal is written, ctx ends or Run has returned. It
// returns the user's Count after the removal, and false when it is not
// known (not written in time, or failed).
func (l *Leases) Closed(ctx context.Context, user, conn string) (int, bool) {
	c := l.closing(user, conn)
	select {
	case <-c.done:
	case <-ctx.Done():
	case <-l.stopped:
	}
	return c.Sockets()
}

// closing queues the removal of the lease of socket conn of user, and
// returns the user's Count after it.
func (l *Leases) closing(user, conn string) *Count {
	l.mu.Lock()
	var key, id any
	if s := l.local[user]; s != nil {
		key, id = s.key, s.remove(conn)
		if id != nil {
			l.n--
		}
		if len(s.conns) == 0 {
			delete(l.local, user)
		}
	}
	if key == nil {
		key = proto.UserPresenceKey(user)
	}
	if id == nil {
		id = conn
	}
	c := &Count{done: l.written}
	l.pending = append(l.pending, op{user: user, key: key, conn: id, count: c})
	l.mu.Unlock()
	l.wake()
	return c
}

// Forget removes the lease of socket conn of user, a socket of another
// worker, which died with it (not one of l's): it queues the removal and
// returns at once, with the user's Count after it, as Opened does.
func (l *Leases) Forget(user, conn string) *Count { return l.closing(user, conn) }

// Len returns the number of local sockets holding a lease.
func (l *Leases) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *Leases) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Run writes the queued leases and removals, and refreshes every lease
// every TTL/3, until ctx ends; then it writes the removals queued and
// removes the leases of the sockets still open, which end with the worker
// (removeAll): with Redis down or hung, within the time of one batch.
func (l *Leases) Run(ctx context.Context) {
	defer close(l.stopped)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.removeAll()
			return
		case <-l.kick:
			l.flush()
		case <-t.C:
			if ctx.Err() != nil {
				continue // select picks at random among the ready cases: stop first
			}
			l.flush()
			l.retryRemovals()
			l.refresh(ctx)
		}
	}
}

// flush writes the pending writes, in order, and wakes the Closed calls
// waiting for them. With none pending it does nothing: no Count waits on
// the written channel of an empty queue.
func (l *Leases) flush() {
	l.mu.Lock()
	if len(l.pending) == 0 {
		l.mu.Unlock()
		return
	}
	ops, written := l.pending, l.written
	l.pending, l.spare, l.written = l.spare, nil, make(chan struct{})
	l.mu.Unlock()
	l.write(ops)
	close(written)
	if cap(ops) <= keepPending {
		clear(ops) // let the Counts go
		l.mu.Lock()
		l.spare = ops[:0]
		l.mu.Unlock()
	}
}

// write writes ops in order, in batches. A batch that fails as a whole
// (Redis down, or hung until the client's timeout) ends the writes: the
// rest would each wait as long, holding every other write and the
// worker's stop. The ops not written are counted as failed; the next
// refresh writes the leases, and the leases not removed expire within the
// TTL.
func (l *Leases) write(ops []op) {
	now := l.now()
	var nowArg, expArg any = strconv.FormatInt(now.UnixMilli(), 10), strconv.FormatInt(now.Add(l.ttl).UnixMilli(), 10)
	for len(ops) > 0 {
		n := min(len(ops), batchOps)
		for _, o := range ops[:n] {
			var args []any
			switch {
			case o.add:
				args = []any{"evalsha", addSHA, 1, o.key, o.conn, nowArg, expArg, l.ttlArg}
			case o.count != nil:
				args = []any{"evalsha", removeSHA, 1, o.key, o.conn, nowArg}
			default: // a removal retried, or at the stop: no one waits for its count
				args = []any{"zrem", o.key, o.conn}
			}
			cmd := redis.NewCmd(context.Background(), args...)
			if o.add || o.count != nil {
				cmd.SetFirstKeyPos(scriptKeyPos)
			}
			l.batch = append(l.batch, queued{cmd: cmd, op: o, leases: 1})
		}
		failed, whole := l.exec()
		for _, q := range l.batch {
			if q.op.count == nil {
				continue
			}
			if v, err := q.cmd.Int(); err == nil {
				q.op.count.n, q.op.count.ok = v, true
			}
		}
		l.endBatch()
		if failed {
			l.keepRemovals(ops[:n])
		}
		ops = ops[n:]
		if whole {
			if len(ops) > 0 {
				l.rec.PresenceWriteFailed(len(ops))
			}
			l.keepRemovals(ops)
			return
		}
	}
}

// endBatch lets the commands of the batch written go.
func (l *Leases) endBatch() {
	clear(l.batch)
	l.batch = l.batch[:0]
}

// keepRemovals keeps the removals among ops, which may not have been
// written, to retry (retryRemovals). A removal written twice is harmless:
// connection ids are never reused.
func (l *Leases) keepRemovals(ops []op) {
	until := l.now().Add(l.ttl) // no lease of theirs expires later
	for _, o := range ops {
		if !o.add {
			o.count = nil // its Closed has its answer: not known
			l.unremoved = append(l.unremoved, retry{op: o, until: until})
		}
	}
}

// retryRemovals writes again the removals that failed whose leases have
// not expired yet: once Redis is back, a closed socket stops counting
// within TTL/3 rather than when its lease expires.
func (l *Leases) retryRemovals() {
	if len(l.unremoved) == 0 {
		return
	}
	now := l.now()
	ops := make([]op, 0, len(l.unremoved))
	for _, r := range l.unremoved {
		if now.Before(r.until) {
			ops = append(ops, r.op)
		}
	}
	l.unremoved = nil
	l.write(ops)
}

// refresh writes the leases of every local socket again, and removes the
// expired leases of other workers' sockets from the same keys. It ends
// early when ctx does: the stop removes the leases. The writes queued
// meanwhile go out between its batches, not after the whole pass (which
// takes hundreds of round trips with tens of thousands of users): a
// close waits for its removal at most presenceRemoveWait, and then its
// disconnect would be announced while the lease still counted. Each
// batch reads its users' sockets when it is written, so a socket closed
// during the pass is not leased again.
func (l *Leases) refresh(ctx context.Context) {
	l.mu.Lock()
	names := l.names[:0]
	for name := range l.local {
		names = append(names, name)
	}
	l.mu.Unlock()
	defer func() {
		clear(names[:cap(names)])
		l.names = names[:0]
	}()
	now := l.now()
	var expArg, staleArg any = strconv.FormatInt(now.Add(l.ttl).UnixMilli(), 10), "(" + strconv.FormatInt(now.UnixMilli(), 10)
	for rest := names; len(rest) > 0 && ctx.Err() == nil; {
		n := min(len(rest), batchUsers)
		batch := rest[:n]
		rest = rest[n:]
		// The batch's commands take their arguments from one array, kept
		// for the next batches: a command is done with them once the
		// batch is written.
		args := l.args[:0]
		queue := func(q queued, n int) {
			q.cmd = redis.NewCmd(context.Background(), args[len(args)-n:len(args):len(args)]...)
			l.batch = append(l.batch, q)
		}
		l.mu.Lock()
		for _, name := range batch {
			s := l.local[name]
			if s == nil {
				continue // closed since the pass began
			}
			args = append(args, "zadd", s.key)
			for _, c := range s.conns {
				args = append(args, expArg, c)
			}
			queue(queued{op: op{user: name, key: s.key, conn: s.conns[0], add: true}, leases: len(s.conns)}, 2+2*len(s.conns))
			args = append(args, "zremrangebyscore", s.key, "-inf", staleArg)
			queue(queued{part: true}, 4)
			args = append(args, "pexpire", s.key, l.ttlArg)
			queue(queued{part: true}, 3)
		}
		l.mu.Unlock()
		whole := false
		if len(l.batch) > 0 {
			_, whole = l.exec()
		}
		l.endBatch()
		clear(args)
		l.args = args[:0]
		if whole && len(rest) > 0 { // as in write
			l.mu.Lock()
			skipped := 0
			for _, name := range rest {
				if s := l.local[name]; s != nil {
					skipped += len(s.conns)
				}
			}
			l.mu.Unlock()
			if skipped > 0 {
				l.rec.PresenceWriteFailed(skipped)
			}
			return
		}
		// After the batch: a removal queued while it was read is written
		// after the lease it read.
		l.flush()
	}
}

// removeAll removes, as the worker stops, the leases of the sockets still
// open and of those whose removal is pending, in one pass: with Redis hung
// the stop waits for one batch, not one per batch. Pending leases are not
// written: their sockets end with the worker.
func (l *Leases) removeAll() {
	l.mu.Lock()
	ops, written := l.pending, l.written
	l.pending, l.written = nil, make(chan struct{})
	removals := ops[:0]
	for _, o := range ops {
		if !o.add {
			removals = append(removals, o)
		}
	}
	for user, s := range l.local {
		for _, c := range s.conns {
			removals = append(removals, op{user: user, key: s.key, conn: c})
		}
	}
	l.local, l.n = make(map[string]*sockets), 0
	l.mu.Unlock()
	now := l.now()
	for _, r := range l.unremoved {
		if now.Before(r.until) {
			removals = append(removals, r.op)
		}
	}
	l.unremoved = nil
	defer close(written)
	l.write(removals)
}
