package redisconn_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redisconn"
	"github.com/switchboard/switchboard/internal/serverurl"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestDialTimeoutZeroMeansNone shows that REDIS_URL's dial_timeout=0 (or
// any value <= 0), which go-redis reads as "disable timeouts" and turns
// into -1, makes every dial fail at once with "i/o timeout": dialer()
// replaces only a zero timeout with go-redis's 5 s, and a net.Dialer with
// a negative Timeout has a deadline in the past. serverurl.Redis accepts
// the URL (the docs invite go-redis's options as query parameters), so
// both services start and wait for a Redis that answers, for ever,
// logging "waiting for Redis" / "redis not reachable yet". Against a real
// Redis: either the URL is refused at start or the client reaches it.
func TestDialTimeoutZeroMeansNone(t *testing.T) {
	srv := testkit.StartRedis(t)
	for _, q := range []string{"?dial_timeout=0", "?dial_timeout=-1", "?dial_timeout=0s"} {
		url := srv.URL() + q
		if serverurl.Redis(url) != nil {
			continue // refused at start: fine
		}
		rdb, err := redisconn.New(url, redisconn.Tuning{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = rdb.Ping(ctx).Err()
		cancel()
		_ = rdb.Close()
		if err != nil {
			t.Errorf("%s: accepted by serverurl.Redis, but PING to a running Redis = %v", url, err)
		}
	}
}
