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
	// batchCmds is the most commands in one pipeline: a refresh of many
	// sockets is written in several, each a bounded round trip.
	batchCmds = 512
	// writeTimeout bounds one pipeline's round trip.
	writeTimeout = 2 * time.Second
	// logEvery is how often, at most, failed writes are logged.
	logEvery = 30 * time.Second
)

// Recorder counts failed writes; the worker's metrics implement it.
type Recorder interface {
	// PresenceWriteFailed counts n lease commands (ZADD, ZREM) that
	// failed.
	PresenceWriteFailed(n int)
}

// Leases is one worker's socket leases. It is safe for concurrent use.
// The zero value is not usable; call New.
type Leases struct {
	rdb    redis.UniversalClient
	ttl    time.Duration
	rec    Recorder
	failed *logevery.Log
	now    func() time.Time

	mu      sync.Mutex
	local   map[string]map[string]struct{} // user -> ids of its open local sockets
	pending []op                           // writes not yet taken by Run, in order
	written chan struct{}                  // closed once the writes now pending are written (or failed)

	kick    chan struct{} // capacity 1: writes are pending
	stopped chan struct{} // closed when Run returns

	// unremoved are the removals that failed, retried at each refresh
	// until written or until the lease they remove has expired anyway:
	// at most the sockets closed in one TTL. Run's goroutine alone uses it.
	unremoved []retry
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
	user, conn string
	add        bool
	count      *Count
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

// Scripts of a socket's lease and its removal: each returns the user's
// unexpired leases after it (KEYS[1] the user's key; ARGV the socket,
// then the time now in Unix ms; for a lease, its expiry and the key's
// TTL in ms). Numbers go as decimal strings.
const (
	addScript = `redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[2], '+inf')`
	removeScript = `redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[2], '+inf')`
)

// New returns Leases of ttl (at least MinTTL) written to rdb, failures
// counted by rec and logged to log, which carries the worker's field.
func New(rdb redis.UniversalClient, ttl time.Duration, rec Recorder, log *zap.Logger) *Leases {
	if ttl < MinTTL {
		panic("presence: TTL below MinTTL")
	}
	return &Leases{
		rdb: rdb, ttl: ttl, rec: rec, now: time.Now,
		failed:  logevery.New(log, "presence not recorded in redis, retried at the next refresh", logEvery),
		local:   make(map[string]map[string]struct{}),
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
	conns := l.local[user]
	if conns == nil {
		conns = make(map[string]struct{}, 1)
		l.local[user] = conns
	}
	conns[conn] = struct{}{}
	c := &Count{done: l.written}
	l.pending = append(l.pending, op{user: user, conn: conn, add: true, count: c})
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
	if conns := l.local[user]; conns != nil {
		delete(conns, conn)
		if len(conns) == 0 {
			delete(l.local, user)
		}
	}
	c := &Count{done: l.written}
	l.pending = append(l.pending, op{user: user, conn: conn, count: c})
	l.mu.Unlock()
	l.wake()
	return c
}

// Len returns the number of local sockets holding a lease.
func (l *Leases) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, conns := range l.local {
		n += len(conns)
	}
	return n
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
// waiting for them.
func (l *Leases) flush() {
	l.mu.Lock()
	ops, written := l.pending, l.written
	l.pending, l.written = nil, make(chan struct{})
	l.mu.Unlock()
	defer close(written)
	l.write(ops)
}

// write writes ops in order, in batches. A batch that fails as a whole
// (Redis down, or hung until the client's timeout) ends the writes: the
// rest would each wait as long, holding every other write and the
// worker's stop. The ops not written are counted as failed; the next
// refresh writes the leases, and the leases not removed expire within the
// TTL.
func (l *Leases) write(ops []op) {
	now := l.now()
	exp := float64(now.Add(l.ttl).UnixMilli())
	nowMS := strconv.FormatInt(now.UnixMilli(), 10)
	expMS := strconv.FormatInt(now.Add(l.ttl).UnixMilli(), 10)
	ttlMS := strconv.FormatInt(l.ttl.Milliseconds(), 10)
	counted := make([]*redis.Cmd, 0, batchCmds/2)
	for len(ops) > 0 {
		n := min(len(ops), batchCmds/2) // at most 2 commands each
		counted = counted[:0]
		failed, whole := l.exec(func(p redis.Pipeliner) []op {
			for _, o := range ops[:n] {
				key := proto.UserPresenceKey(o.user)
				switch {
				case o.count != nil && o.add:
					counted = append(counted, p.Eval(context.Background(), addScript, []string{key}, o.conn, nowMS, expMS, ttlMS))
				case o.count != nil:
					counted = append(counted, p.Eval(context.Background(), removeScript, []string{key}, o.conn, nowMS))
				case o.add:
					p.ZAdd(context.Background(), key, redis.Z{Score: exp, Member: o.conn})
					p.PExpire(context.Background(), key, l.ttl)
				default:
					p.ZRem(context.Background(), key, o.conn)
				}
			}
			return ops[:n]
		})
		i := 0
		for _, o := range ops[:n] {
			if o.count == nil {
				continue
			}
			if v, err := counted[i].Int(); err == nil {
				o.count.n, o.count.ok = v, true
			}
			i++
		}
		if failed {
			l.keepRemovals(ops[:n])
		}
		ops = ops[n:]
		if whole {
			skipped := 0
			for _, o := range ops {
				skipped += 1 + btoi(o.add)
			}
			if skipped > 0 {
				l.rec.PresenceWriteFailed(skipped)
			}
			l.keepRemovals(ops)
			return
		}
	}
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

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
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
	names := make([]string, 0, len(l.local))
	for name := range l.local {
		names = append(names, name)
	}
	l.mu.Unlock()
	now := l.now()
	exp := float64(now.Add(l.ttl).UnixMilli())
	stale := "(" + strconv.FormatInt(now.UnixMilli(), 10)
	for len(names) > 0 && ctx.Err() == nil {
		n := min(len(names), batchCmds/3) // 3 commands each
		batch := names[:n]
		names = names[n:]
		type user struct {
			name    string
			members []redis.Z
		}
		users := make([]user, 0, len(batch))
		l.mu.Lock()
		for _, name := range batch {
			conns := l.local[name]
			if len(conns) == 0 {
				continue // closed since the pass began
			}
			u := user{name: name, members: make([]redis.Z, 0, len(conns))}
			for c := range conns {
				u.members = append(u.members, redis.Z{Score: exp, Member: c})
			}
			users = append(users, u)
		}
		l.mu.Unlock()
		whole := false
		if len(users) > 0 {
			_, whole = l.exec(func(p redis.Pipeliner) []op {
				ops := make([]op, 0, len(users))
				for _, u := range users {
					key := proto.UserPresenceKey(u.name)
					p.ZAdd(context.Background(), key, u.members...)
					p.ZRemRangeByScore(context.Background(), key, "-inf", stale)
					p.PExpire(context.Background(), key, l.ttl)
					ops = append(ops, op{user: u.name, conn: u.members[0].Member.(string), add: true})
				}
				return ops
			})
		}
		if whole && len(names) > 0 { // as in write
			l.rec.PresenceWriteFailed(3 * len(names))
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
	for user, conns := range l.local {
		for c := range conns {
			removals = append(removals, op{user: user, conn: c})
		}
	}
	l.local = make(map[string]map[string]struct{})
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

// exec runs the commands fill queues on one pipeline, within
// writeTimeout, and counts and logs those that failed; fill returns the
// ops they write, for the log's fields. It reports whether any command
// failed, and whether the pipeline failed as a whole: every command
// failed, or its time ran out.
func (l *Leases) exec(fill func(redis.Pipeliner) []op) (failed, whole bool) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	p := l.rdb.Pipeline()
	ops := fill(p)
	cmds, err := p.Exec(ctx)
	if err == nil {
		return false, false
	}
	n := 0
	for _, c := range cmds {
		if c.Err() != nil {
			n++
		}
	}
	whole = n == 0 || n == len(cmds) || ctx.Err() != nil
	if n == 0 { // the pipeline failed as a whole
		n = len(cmds)
	}
	l.rec.PresenceWriteFailed(n)
	first := ops[0]
	l.failed.Failed(err, zap.String("user", first.user), zap.String("conn", first.conn),
		zap.Int("failed_commands", n))
	return true, whole
}

// expiry returns the score of a lease written now.
func (l *Leases) expiry() float64 { return float64(l.now().Add(l.ttl).UnixMilli()) }
