// Package limit bounds what one user can make handlers-svc push to other
// users, so that no sender can knock a recipient offline or load everyone
// (docs/security.md). It keeps its counters in Redis (with
// github.com/go-redis/redis_rate, a GCRA over one key per counter), so the
// bounds hold across every handlers-svc instance.
//
// Two bounds, each a rate with a burst:
//
//   - bytes from one sender to one recipient (ToUser), or to the members
//     of one room (ToRoom): a phone's link carries less than a few sockets
//     of one sender could push at it, and a recipient whose queue
//     overflows is closed as a slow consumer;
//   - recipients one sender reaches per second, counted over mentions and
//     room members (a room's messages, and the notices of joining and
//     leaving it): one message to a big room, or a post mentioning many
//     users, is recorded in every recipient's stream.
//
// Each bound has a first tier in the process: an instance admits an eighth
// of the rate (a sixteenth of the burst) of each counter by itself, and
// only what goes beyond it is counted in Redis. Ordinary traffic then costs
// no round trip, and N instances together allow at most 1 + N/8 times the
// bound.
//
// A nil *Sender allows everything, so handlers built without one (in unit
// tests, with eventtest) need no Redis.
package limit

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// Config are the bounds; a zero rate turns its bound off.
type Config struct {
	// BytesPerSecond and BytesBurst bound the bytes of events one sender
	// sends one recipient.
	BytesPerSecond, BytesBurst int
	// RecipientsPerSecond and RecipientsBurst bound the users one sender
	// reaches.
	RecipientsPerSecond, RecipientsBurst int
}

// DefaultConfig is what handlers-svc applies when not told otherwise: 64
// KiB/s to one recipient (a burst of 256 KiB, ten of the largest
// messages), and 1,000 recipients/s with a burst of 1,000: one message a
// second to a full room, or ten posts mentioning a hundred users each. A
// larger burst is work done all at once in Redis, which every other
// user's dispatches wait behind.
func DefaultConfig() Config {
	return Config{BytesPerSecond: 64 << 10, BytesBurst: 256 << 10, RecipientsPerSecond: 1000, RecipientsBurst: 1000}
}

// Sender applies Config to each sender.
type Sender struct {
	rl               *redis_rate.Limiter
	bytes, reachable redis_rate.Limit
	// The first tier of each bound, in this process (local.go).
	localBytes, localReachable *local
}

// New returns a Sender that keeps its counters in rdb.
func New(rdb redis.UniversalClient, cfg Config) *Sender {
	return &Sender{
		rl:        redis_rate.NewLimiter(rdb),
		bytes:     redis_rate.Limit{Rate: cfg.BytesPerSecond, Burst: max(cfg.BytesBurst, cfg.BytesPerSecond), Period: time.Second},
		reachable: redis_rate.Limit{Rate: cfg.RecipientsPerSecond, Burst: max(cfg.RecipientsBurst, cfg.RecipientsPerSecond), Period: time.Second},

		localBytes:     newLocal(cfg.BytesPerSecond, max(cfg.BytesBurst, cfg.BytesPerSecond)),
		localReachable: newLocal(cfg.RecipientsPerSecond, max(cfg.RecipientsBurst, cfg.RecipientsPerSecond)),
	}
}

// ToUser takes n bytes of from's allowance toward to, or returns a
// rate_limited *event.Error when they are over it (nothing is taken then).
// A user writing to themself is limited too: what it sends itself is
// recorded in its stream for the recovery window like anyone's (and a
// sender's copy of its own messages, message_sent, is such a write).
func (s *Sender) ToUser(ctx context.Context, from, to string, n int) error {
	if s == nil || s.bytes.Rate <= 0 {
		return nil
	}
	why := "too much sent to this user: slow down"
	if from == to {
		why = "too much sent: slow down" // the sender's own copies: "this user" would be the sender
	}
	return s.take(ctx, s.localBytes, "sb:limit:bytes:"+from+"\x00"+to, s.bytes, n, why)
}

// ToRoom takes n bytes of from's allowance toward the members of room,
// or returns a rate_limited *event.Error when they are over it (nothing
// is taken then). It bounds, with the rate of ToUser, what one sender
// pushes to each member through one room: every member gets each
// message, so the room's counter is each member's, at the cost of one
// counter rather than one per member.
func (s *Sender) ToRoom(ctx context.Context, from, room string, n int) error {
	if s == nil || s.bytes.Rate <= 0 {
		return nil
	}
	return s.take(ctx, s.localBytes, "sb:limit:roombytes:"+from+"\x00"+room, s.bytes, n,
		"too much sent to this room: slow down")
}

// RecipientsBurst returns the most recipients one charge may take (0: no
// bound), for a dispatch that must go out however many it reaches, such
// as a room's room_left: charged at most this, it waits for the whole
// allowance instead of being refused for good.
func (s *Sender) RecipientsBurst() int {
	if s == nil || s.reachable.Rate <= 0 {
		return 0
	}
	return s.reachable.Burst
}

// Recipients takes k recipients of from's allowance, or returns a
// rate_limited *event.Error when they are over it.
func (s *Sender) Recipients(ctx context.Context, from string, k int) error {
	if s == nil || s.reachable.Rate <= 0 || k == 0 {
		return nil
	}
	return s.take(ctx, s.localReachable, "sb:limit:recipients:"+from, s.reachable, k,
		"too many recipients reached: slow down")
}

func (s *Sender) take(ctx context.Context, first *local, key string, l redis_rate.Limit, n int, msg string) error {
	if n > l.Burst {
		// More than a burst can never be allowed: refuse it outright
		// rather than make the sender wait forever.
		return event.NewError(proto.CodeRateLimited, msg)
	}
	if first.allow(key, n, time.Now()) {
		return nil // within this instance's own share: no round trip
	}
	res, err := s.rl.AllowN(ctx, key, l, n)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("limit %s: %w", key, ctxErr) // out of time: timeout
		}
		// Open on failure: the dispatch that follows needs Redis too, and
		// answers unavailable itself when it is down (logged once, by the
		// dispatcher); a limiter's hiccup alone must not refuse a message.
		return nil
	}
	if res.Allowed < n {
		return event.NewError(proto.CodeRateLimited, msg)
	}
	return nil
}
