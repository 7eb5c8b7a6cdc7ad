package fanout

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/proto"
)

// subscribeBatch is the most channels one SUBSCRIBE or UNSUBSCRIBE names.
// The commands of a batch are written one after the other without waiting
// for their confirmations, which the reader receives: many sockets
// connecting at once cost a few writes, not a round trip each.
const subscribeBatch = 512

// DefaultLinger is how long a user's channel stays subscribed after the
// user's last local socket closed, unless PerUser says otherwise: a client
// that reconnects within it (a page reload, a network blip) costs no
// subscription round trip.
const DefaultLinger = 5 * time.Second

// PerUser has the Subscriber also subscribe, on the same connection as the
// shared channel, to the channel of each user a socket of this worker
// belongs to (FANOUT_MODE=per_user, proto.UserChannel): from the user's
// first socket (Acquire) until linger after the last (Release).
func PerUser(linger time.Duration) Option {
	return func(s *Subscriber) {
		s.perUser = true
		s.users = &userSubs{linger: max(linger, 0), byChan: map[string]*userSub{},
			idle: map[*userSub]struct{}{}, wake: make(chan struct{}, 1)}
	}
}

// subState is where a user's channel is on the current connection.
type subState uint8

const (
	subPending subState = iota // SUBSCRIBE to write, or written and not confirmed
	subLive                    // confirmed: its dispatches arrive
	subLeaving                 // UNSUBSCRIBE written, not confirmed
)

// userSub is one user's channel. Its fields are guarded by userSubs.mu.
type userSub struct {
	channel string
	refs    int // Acquires not yet Released
	state   subState
	// sent: pending, its SUBSCRIBE was written on the current connection.
	sent bool
	// again: leaving, and Acquired since; it is subscribed again once
	// the UNSUBSCRIBE is confirmed, so that confirmations stay in order.
	again bool
	// ready is closed when the channel turns live; a new one is made each
	// time it stops being live.
	ready     chan struct{}
	idleSince time.Time // when refs last fell to 0
}

// userSubs is the set of user channels of a Subscriber in per-user mode.
// Acquire and Release change it from the sockets' goroutines; the reader
// writes the subscriptions of a new connection and receives every
// confirmation; userLoop writes the (un)subscriptions in between. Each
// channel has at most one command in flight, so the confirmations, which
// Redis sends in order, are never mistaken for one another.
type userSubs struct {
	linger time.Duration
	// sharded: the channels are sharded ones (SSUBSCRIBE), on a Redis
	// Cluster partition's connection (shards.go).
	sharded bool

	mu     sync.Mutex
	byChan map[string]*userSub
	idle   map[*userSub]struct{} // refs == 0, to drop once linger passed
	ps     *redis.PubSub         // the current connection; nil between two
	toSend []*userSub            // pending and not sent on ps
	live   int                   // channels confirmed on ps
	wake   chan struct{}         // one token: toSend grew
}

// Acquire makes sure this worker receives the dispatches of user's channel
// (per-user mode; in shared mode it returns nil at once): it returns once
// Redis confirmed the subscription, so a stream read after it misses
// nothing; ErrLagging while the fan-out is lagging, or once it starts to
// before the confirmation; or ctx's error if ctx ended first (Redis
// unreachable). Every Acquire, whatever it returned, is matched by one
// Release when the socket it was for ends.
func (s *Subscriber) Acquire(ctx context.Context, user string) error {
	u := s.usersOf(user)
	if u == nil {
		return nil
	}
	ch := proto.UserChannel(user)
	u.mu.Lock()
	e := u.byChan[ch]
	if e == nil {
		e = &userSub{channel: ch, ready: make(chan struct{})}
		u.byChan[ch] = e
		u.queue(e)
	}
	e.refs++
	if e.refs == 1 {
		delete(u.idle, e)
		if e.state == subLeaving {
			e.again = true
		}
	}
	live, ready := e.state == subLive, e.ready
	u.mu.Unlock()
	if live {
		return nil
	}
	// Redis's confirmation would wait behind the backlog, perhaps until
	// ctx ends: while lagging, and once lagging starts during the wait,
	// the socket is told at once to come back later (1013), as its sends
	// would be refused now anyway.
	lagging, lagged := s.laggedCh()
	if lagging {
		return ErrLagging
	}
	select {
	case <-ready:
		return nil
	case <-lagged:
		select {
		case <-ready: // confirmed as well: nothing to refuse
			return nil
		default:
			return ErrLagging
		}
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return errStopped
	}
}

// ErrLagging is Acquire's error while the fan-out is behind (Lagging) and
// the user's channel is not subscribed yet.
var ErrLagging = errors.New("fanout: behind its backlog; come back later")

// errStopped is Acquire's error once Run has ended.
var errStopped = errors.New("fanout: stopped")

// Release ends one Acquire of user's channel. After the last, the channel
// stays subscribed for the linger, for a socket of user that comes back.
func (s *Subscriber) Release(user string) {
	u := s.usersOf(user)
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	e := u.byChan[proto.UserChannel(user)]
	if e == nil || e.refs == 0 {
		return
	}
	if e.refs--; e.refs == 0 {
		e.idleSince = time.Now()
		u.idle[e] = struct{}{}
	}
}

// UserChannels returns how many user channels are subscribed now
// (confirmed by Redis): 0 in shared mode.
func (s *Subscriber) UserChannels() int {
	n := 0
	for _, u := range s.allUsers() {
		u.mu.Lock()
		n += u.live
		u.mu.Unlock()
	}
	return n
}

// usersOf returns the set user's channel belongs to: nil in shared mode,
// its partition's on a Redis Cluster (shards.go), the one set otherwise.
func (s *Subscriber) usersOf(user string) *userSubs {
	if s.shards != nil {
		return s.shards[proto.PartitionOf(user)].users
	}
	return s.users
}

// allUsers returns every set of user channels.
func (s *Subscriber) allUsers() []*userSubs {
	if s.shards != nil {
		out := make([]*userSubs, len(s.shards))
		for i, sh := range s.shards {
			out[i] = sh.users
		}
		return out
	}
	if s.users != nil {
		return []*userSubs{s.users}
	}
	return nil
}

// queue has e's SUBSCRIBE written on the current connection. u.mu is held.
func (u *userSubs) queue(e *userSub) {
	e.state, e.sent = subPending, false
	if u.ps == nil {
		return // attach sends it with the next connection's
	}
	u.toSend = append(u.toSend, e)
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// unready makes e wait for a confirmation again. u.mu is held.
func (u *userSubs) unready(e *userSub) {
	if e.state == subLive {
		u.live--
		e.ready = make(chan struct{})
	}
}

// attach makes ps the current connection and returns the channels to
// subscribe on it: the channel of every user with a socket here, each
// marked sent, since the reader writes them at once.
func (u *userSubs) attach(ps *redis.PubSub) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.ps = ps
	u.toSend = u.toSend[:0]
	chans := make([]string, 0, len(u.byChan))
	for ch, e := range u.byChan {
		if e.refs == 0 {
			// Lingering, or leaving: no socket wants it now, and one
			// that comes back subscribes it anew.
			delete(u.byChan, ch)
			delete(u.idle, e)
			continue
		}
		u.unready(e)
		e.state, e.sent, e.again = subPending, true, false
		chans = append(chans, ch)
	}
	return chans
}

// detach records that the connection is gone: no channel is live until
// the next one is attached.
func (u *userSubs) detach() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.ps = nil
	u.toSend = u.toSend[:0]
	for _, e := range u.byChan {
		u.unready(e)
		if e.state == subLive {
			e.state = subPending
		}
		e.sent = false
	}
}

// confirmed applies Redis's confirmation of kind ("subscribe" or
// "unsubscribe", or their sharded forms) for channel, received on the
// current connection. It reports false for an unsubscribe nobody asked
// for: a Redis Cluster node that stopped serving the channel's slot (a
// failover, a slot moved) unsubscribes its sharded subscribers, and the
// connection must then be made anew, at the slot's new master.
func (u *userSubs) confirmed(kind, channel string) bool {
	switch kind {
	case "ssubscribe":
		kind = "subscribe"
	case "sunsubscribe":
		kind = "unsubscribe"
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	e := u.byChan[channel]
	if e == nil {
		return true
	}
	if kind == "unsubscribe" && e.state != subLeaving && u.sharded {
		return false
	}
	switch {
	case kind == "subscribe" && e.state == subPending && e.sent:
		e.state = subLive
		u.live++
		close(e.ready)
	case kind == "unsubscribe" && e.state == subLeaving:
		if e.again {
			e.again = false
			u.queue(e)
			return true
		}
		delete(u.byChan, channel)
	}
	return true
}

// subscribe writes one SUBSCRIBE (SSUBSCRIBE when sharded) of chans on ps.
func (u *userSubs) subscribe(ctx context.Context, ps *redis.PubSub, chans []string) error {
	if u.sharded {
		return ps.SSubscribe(ctx, chans...)
	}
	return ps.Subscribe(ctx, chans...)
}

// unsubscribe writes one UNSUBSCRIBE (SUNSUBSCRIBE when sharded) of chans.
func (u *userSubs) unsubscribe(ctx context.Context, ps *redis.PubSub, chans []string) error {
	if u.sharded {
		return ps.SUnsubscribe(ctx, chans...)
	}
	return ps.Unsubscribe(ctx, chans...)
}

// take returns the connection and what to write on it now: the pending
// channels not yet sent, and the channels idle for the linger, which turn
// leaving.
func (u *userSubs) take(now time.Time) (ps *redis.PubSub, sub, unsub []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.ps == nil {
		return nil, nil, nil
	}
	for _, e := range u.toSend {
		if e.state == subPending && !e.sent {
			e.sent = true
			sub = append(sub, e.channel)
		}
	}
	clear(u.toSend)
	u.toSend = u.toSend[:0]
	for e := range u.idle {
		if e.state != subLive || now.Sub(e.idleSince) < u.linger {
			continue // a pending channel lingers once it is live
		}
		delete(u.idle, e)
		u.unready(e)
		e.state = subLeaving
		unsub = append(unsub, e.channel)
	}
	return u.ps, sub, unsub
}

// lingerTick is how often userLoop looks for channels idle past the
// linger: a channel is released between linger and linger + lingerTick
// after its last socket.
func (u *userSubs) lingerTick() time.Duration {
	return min(max(u.linger/4, 10*time.Millisecond), time.Second)
}

// userLoop writes the (un)subscriptions of user channels, in batches,
// whenever Acquire asks for one or a linger ends, until ctx is done. A
// write that fails closes the connection, so the reader starts a new one
// and subscribes every channel there, as after any loss.
func (s *Subscriber) userLoop(ctx context.Context, u *userSubs) {
	t := time.NewTicker(u.lingerTick())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-u.wake:
			// Woken by an Acquire, this goroutine would run next, on the
			// Acquire's own P, and take that one channel alone: a burst of
			// connects would make one command each. Yielding first lets
			// the goroutines that are runnable queue theirs too; on a quiet
			// worker it returns at once.
			runtime.Gosched()
		case <-t.C:
		}
		ps, sub, unsub := u.take(time.Now())
		if ps == nil {
			continue
		}
		err := batched(sub, func(chans []string) error { return u.subscribe(ctx, ps, chans) })
		if err == nil {
			err = batched(unsub, func(chans []string) error { return u.unsubscribe(ctx, ps, chans) })
		}
		if err != nil && ctx.Err() == nil && u.current(ps) {
			// (A connection the reader has already left is being replaced:
			// nothing to say.)
			s.log.Warn("cannot change the user channels' subscriptions; reconnecting", zap.Error(err),
				zap.Int("subscribe", len(sub)), zap.Int("unsubscribe", len(unsub)))
			_ = ps.Close()
		}
	}
}

// current reports whether ps is still the connection the user channels
// are on.
func (u *userSubs) current(ps *redis.PubSub) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.ps == ps
}

// batched calls write with chans in batches of subscribeBatch.
func batched(chans []string, write func([]string) error) error {
	for len(chans) > 0 {
		n := min(len(chans), subscribeBatch)
		if err := write(chans[:n]); err != nil {
			return err
		}
		chans = chans[n:]
	}
	return nil
}
