package redisconn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Misconfigured reports whether err is Redis refusing what REDIS_URL asks
// of every connection, so that no retry can succeed: a database index the
// server does not have ("ERR DB index is out of range", the reply to the
// SELECT go-redis sends on each new connection). Redis down, unreachable
// or loading is not: it comes back.
func Misconfigured(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "ERR DB index is out of range")
}

// Check makes one round trip, within limit, to the Redis s names (s has
// passed serverurl.Redis) and returns an error naming REDIS_URL when Redis
// refuses it as Misconfigured, for a service to refuse to start with. It
// returns nil otherwise, Redis unreachable included: the service starts
// and waits for it as before. The client it uses writes nothing (no
// OnConnect) and is closed before it returns.
func Check(ctx context.Context, s string, limit time.Duration) error {
	rdb, err := New(s, Tuning{NoRetries: true, ContextTimeoutEnabled: true})
	if err != nil {
		return nil // the caller's own New reports it
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); Misconfigured(err) {
		return fmt.Errorf("REDIS_URL: %w", URLError(rdb, err))
	}
	return nil
}

// URLError returns err, Misconfigured, with the database REDIS_URL named,
// which Redis's reply does not say; the URL itself, which may hold a
// password, is not quoted.
func URLError(rdb redis.UniversalClient, err error) error {
	if c, ok := rdb.(*redis.Client); ok {
		return fmt.Errorf("database %d, which this Redis does not have (its databases setting; 16 by default): %w", c.Options().DB, err)
	}
	return err
}
