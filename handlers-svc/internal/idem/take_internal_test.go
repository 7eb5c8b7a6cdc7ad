package idem

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/testkit"
)

// TestTakeTwiceIsOurs: the reservation script sent again with the same
// reservation (a cluster client retries a command whose reply it lost)
// finds its own value and holds the key, instead of reading it as another
// request's, pending: the caller would have waited on itself, and the key
// read unknown for its TTL though nothing ran.
func TestTakeTwiceIsOurs(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	s := New(rdb, time.Minute)
	ctx := context.Background()
	res := &Reservation{Key: "k", hash: "h", value: statePending + "h:token.0"}
	for i := range 2 {
		got, answer, err := s.take(ctx, res)
		if err != nil || got != res || answer != nil {
			t.Fatalf("take #%d: %v, %q, %v; want the reservation", i+1, got, answer, err)
		}
	}
	// Another request's reservation is still pending to it.
	other := &Reservation{Key: "k", hash: "h", value: statePending + "h:other.0"}
	if got, _, err := s.take(ctx, other); got != nil || err != ErrPending {
		t.Fatalf("another request: %v, %v; want ErrPending", got, err)
	}
}
