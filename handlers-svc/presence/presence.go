// Package presence tells handlers and other backends which users have
// sockets open, and on how many devices (docs/protocol.md section 7, an
// extension). Gateway workers keep, for every socket, a lease in its
// user's sorted set (proto.UserPresenceKey): member the connection id,
// score the Unix time in ms the lease expires, refreshed every third of
// GATEWAY_PRESENCE_TTL and removed when the socket closes. A Reader counts
// the leases that have not expired: a socket of a worker that died counts
// until its lease does, at most GATEWAY_PRESENCE_TTL. Expired leases are
// ignored by their score; the gateways remove them.
//
//	p := presence.New(rdb)
//	online, err := p.Count(ctx, "alice", "bob") // map[alice:2 bob:0]
//
// It implements event.Presence for handlers (handlers.Deps.Presence). A
// Reader only reads, and is safe for concurrent use. Scores come from the
// gateways' clocks and are compared with this process's: keep the clocks
// within a small part of the TTL of each other (NTP does).
package presence

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// batch is the most users counted in one pipeline.
const batch = 512

// Reader reads the presence the gateways record.
type Reader struct {
	rdb redis.UniversalClient
	now func() time.Time
}

// New returns a Reader of rdb, which may be a Redis Cluster client.
func New(rdb redis.UniversalClient) *Reader {
	return &Reader{rdb: rdb, now: time.Now}
}

// Count returns, for each of users, how many sockets the user has open
// now, on every gateway worker: 0 for a user with none. An empty list is
// an empty map, without a round trip.
func (r *Reader) Count(ctx context.Context, users ...string) (map[string]int, error) {
	out := make(map[string]int, len(users))
	if len(users) == 0 {
		return out, nil
	}
	after := r.after()
	for len(users) > 0 {
		n := min(len(users), batch)
		p := r.rdb.Pipeline()
		cmds := make([]*redis.IntCmd, n)
		for i, u := range users[:n] {
			cmds[i] = p.ZCount(ctx, proto.UserPresenceKey(u), after, "+inf")
		}
		if _, err := p.Exec(ctx); err != nil {
			return nil, storeError(ctx, "count presence", err)
		}
		for i, u := range users[:n] {
			out[u] = int(cmds[i].Val())
		}
		users = users[n:]
	}
	return out, nil
}

// Conns returns the connection ids of user's open sockets, sorted; none
// for a user with none. An id is what a dispatch to connections takes.
func (r *Reader) Conns(ctx context.Context, user string) ([]string, error) {
	conns, err := r.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: proto.UserPresenceKey(user), Start: r.after(), Stop: "+inf", ByScore: true,
	}).Result()
	if err != nil {
		return nil, storeError(ctx, "read presence", err)
	}
	slices.Sort(conns)
	return conns, nil
}

// after is the score range's open start: leases expiring after now.
func (r *Reader) after() string {
	return "(" + strconv.FormatInt(r.now().UnixMilli(), 10)
}

// storeError is a failed read's error: the context's when it ended (or a
// deadline the client met), else an *event.Error with code unavailable
// wrapping the cause.
func storeError(ctx context.Context, what string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", what, ctxErr)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return &event.Error{Code: proto.CodeUnavailable, Message: "presence unavailable", Err: fmt.Errorf("%s: %w", what, err)}
}
