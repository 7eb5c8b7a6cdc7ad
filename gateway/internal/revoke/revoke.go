// Package revoke holds a worker's revoked tokens (docs/protocol.md section
// 7, an extension): for each user a backend disconnected with revoke, the
// moment (Unix ms) before which that user's tokens are refused at the
// upgrade. It is kept in memory, so admission checks it at no Redis cost:
// updated from the disconnect control messages (Revoke), and loaded from
// proto.RevokedKey each time the fan-out's subscription is (re)established
// (RequestLoad), so a worker started later, or one that missed messages
// while it was not subscribed, knows them too. Handlers-svc writes the
// hash before it publishes, so a load made after the subscription is
// confirmed misses nothing.
//
// An entry older than the TTL (GATEWAY_REVOKE_TTL) is ignored and pruned:
// the memory is one map entry per user revoked within the TTL.
package revoke

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/internal/backoff"
	"github.com/switchboard/switchboard/proto"
)

// DefaultTTL is how long a revocation lasts when the configuration says
// nothing: handlers-svc's default too.
const DefaultTTL = 24 * time.Hour

// List is one worker's revoked tokens. It is safe for concurrent use.
type List struct {
	rdb redis.UniversalClient
	ttl time.Duration
	log *zap.Logger
	now func() time.Time

	mu     sync.RWMutex
	before map[string]int64 // user -> Unix ms before which (and in whose second) its tokens are refused
	// again: user -> the moment of its latest revoke received by message
	// that asked its clients to reconnect (4002), when that is before's
	again map[string]int64

	load   chan struct{} // a load is asked for; capacity 1
	loaded atomic.Bool   // a load has succeeded
	missed func(users []string)
}

// New returns a List that loads from rdb (which may be set later, with
// SetClient) and forgets an entry ttl after
// its moment.
func New(rdb redis.UniversalClient, ttl time.Duration, log *zap.Logger) *List {
	return &List{rdb: rdb, ttl: ttl, log: log, now: time.Now, before: make(map[string]int64), again: make(map[string]int64), load: make(chan struct{}, 1)}
}

// OnMissed sets fn, which Load calls (holding no lock of l) with the users
// whose entry the hash added or moved later: revokes l had not been told
// of by Revoke, published while the worker was not subscribed, whose
// disconnect message it never got. Set it before Run.
func (l *List) OnMissed(fn func(users []string)) { l.missed = fn }

// SetClient sets the client Load reads with, for a List made before the
// worker connected to Redis; call it before Run.
func (l *List) SetClient(rdb redis.UniversalClient) { l.rdb = rdb }

// Revoked reports whether a token of user issued at iat (zero: the token
// has no iat) is revoked: user has an entry within the TTL, and the token
// has no iat or was issued before the entry's moment or in its second
// (iat has seconds only, so a token of that second may predate it).
func (l *List) Revoked(user string, iat time.Time) bool {
	l.mu.RLock()
	before, ok := l.before[user]
	l.mu.RUnlock()
	if !ok || before < l.now().UnixMilli()-l.ttl.Milliseconds() {
		return false
	}
	return iat.IsZero() || iat.Unix()*1000 <= before
}

// Revoke records that the tokens of users are revoked before the Unix ms
// before, keeping a later moment already recorded, and whether the
// disconnect that said so asked the clients to reconnect; it prunes the
// entries past the TTL.
func (l *List) Revoke(users []string, before int64, reconnect bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range users {
		l.set(u, before)
		if reconnect && l.before[u] == before {
			l.again[u] = before
		}
	}
	l.prune()
}

// Reconnect reports whether the latest revoke of user's tokens asked its
// clients to reconnect (a disconnect with reconnect, 4002), as the worker
// was told by message or loaded from proto.RevokedReconnectKey.
func (l *List) Reconnect(user string) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	at, ok := l.again[user]
	return ok && at == l.before[user]
}

// set records one entry, and reports whether it added it or moved it
// later; l.mu is held.
func (l *List) set(user string, before int64) bool {
	if old, ok := l.before[user]; !ok || old < before {
		l.before[user] = before
		return true
	}
	return false
}

// prune drops the entries past the TTL; l.mu is held. It walks the map:
// it runs only on a revoke or a load, both rare.
func (l *List) prune() {
	oldest := l.now().UnixMilli() - l.ttl.Milliseconds()
	for u, b := range l.before {
		if b < oldest {
			delete(l.before, u)
		}
	}
	for u, b := range l.again {
		if b < oldest || b != l.before[u] {
			delete(l.again, u)
		}
	}
}

// Len returns how many users have an entry (some may be past the TTL
// until the next prune).
func (l *List) Len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.before)
}

// Loaded reports whether the hash has been loaded once: until then the
// worker does not let sockets in.
func (l *List) Loaded() bool { return l.loaded.Load() }

// RequestLoad asks Run to load the hash; it does not block (the fan-out
// calls it on its reader when the subscription is confirmed).
func (l *List) RequestLoad() {
	select {
	case l.load <- struct{}{}:
	default: // one is pending already, and will read the hash after now
	}
}

// Run loads the hash each time RequestLoad asks, retrying a failed load
// with back-off, until ctx ends.
func (l *List) Run(ctx context.Context) {
	bo := backoff.Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.load:
		}
		for {
			err := l.Load(ctx)
			if err == nil {
				bo.Reset()
				break
			}
			if ctx.Err() != nil {
				return
			}
			l.log.Warn("loading the revoked tokens failed; retrying", zap.String("key", proto.RevokedKey), zap.Error(err))
			if !bo.Wait(ctx) {
				return
			}
		}
	}
}

// Load reads the hash once and merges it in: entries are only added or
// moved later, never removed but by the TTL, so a revoke received while
// the read was under way is kept. A field whose value is no number is
// skipped. The users whose entry within the TTL it added or moved later
// go to the OnMissed function.
func (l *List) Load(ctx context.Context) error {
	all, err := l.rdb.HGetAll(ctx, proto.RevokedKey).Result()
	if err != nil {
		return err
	}
	// Read after the moments: a mark newer than its moment read here is
	// no match and is ignored; the message, or the next load, brings it.
	marks, err := l.rdb.HGetAll(ctx, proto.RevokedReconnectKey).Result()
	if err != nil {
		return err
	}
	var missed []string
	l.mu.Lock()
	oldest := l.now().UnixMilli() - l.ttl.Milliseconds()
	for u, v := range all {
		b, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		if l.set(u, b) && b >= oldest {
			missed = append(missed, u)
		}
		if m, ok := marks[u]; ok && m == v && l.before[u] == b {
			l.again[u] = b
		}
	}
	l.prune()
	n := len(l.before)
	l.mu.Unlock()
	l.loaded.Store(true)
	l.log.Debug("revoked tokens loaded", zap.Int("fields", len(all)), zap.Int("users", n), zap.Int("new", len(missed)))
	if len(missed) > 0 && l.missed != nil {
		l.missed(missed)
	}
	return nil
}
