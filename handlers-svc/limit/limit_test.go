package limit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/limit"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sender(t *testing.T, cfg limit.Config) *limit.Sender {
	t.Helper()
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return limit.New(rdb, cfg)
}

func code(err error) proto.Code {
	var e *event.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// TestToUserBoundsOnePair: one sender's bytes to one recipient are bounded
// (a rate far below what the test sends, so the burst is all); another
// recipient, another sender and the sender themself are not affected.
func TestToUserBoundsOnePair(t *testing.T) {
	toUserBoundsOnePair(t, sender(t, limit.Config{BytesPerSecond: 1, BytesBurst: 50000}))
}

// TestToUserBoundsOnePairOnACluster: the same with the counters on a
// Redis Cluster.
func TestToUserBoundsOnePairOnACluster(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	toUserBoundsOnePair(t, limit.New(c.Client(nil), limit.Config{BytesPerSecond: 1, BytesBurst: 50000}))
}

func toUserBoundsOnePair(t *testing.T, s *limit.Sender) {
	ctx := context.Background()
	for i := range 2 {
		if err := s.ToUser(ctx, "mallory", "bob", 24000); err != nil {
			t.Fatalf("message %d of the burst: %v", i, err)
		}
	}
	if err := s.ToUser(ctx, "mallory", "bob", 24000); code(err) != proto.CodeRateLimited {
		t.Fatalf("over the burst: %v, want rate_limited", err)
	}
	for _, tt := range []struct{ from, to string }{{"mallory", "carol"}, {"alice", "bob"}, {"mallory", "mallory"}} {
		if err := s.ToUser(ctx, tt.from, tt.to, 24000); err != nil {
			t.Errorf("%s to %s: %v, want allowed", tt.from, tt.to, err)
		}
	}
	if err := s.ToUser(ctx, "mallory", "bob", 60000); code(err) != proto.CodeRateLimited {
		t.Errorf("more than a whole burst at once: %v, want rate_limited", err)
	}
}

// TestRecipientsBoundsOneSender: the users one sender reaches are counted
// across calls.
func TestRecipientsBoundsOneSender(t *testing.T) {
	s := sender(t, limit.Config{RecipientsPerSecond: 1, RecipientsBurst: 150})
	ctx := context.Background()
	if err := s.Recipients(ctx, "mallory", 100); err != nil {
		t.Fatal(err)
	}
	if err := s.Recipients(ctx, "mallory", 100); code(err) != proto.CodeRateLimited {
		t.Fatalf("250 recipients with a burst of 150: %v, want rate_limited", err)
	}
	if err := s.Recipients(ctx, "alice", 100); err != nil {
		t.Fatalf("another sender: %v", err)
	}
}

// TestNilAndOffAllowEverything: no Sender, or a bound set to 0, limits
// nothing.
func TestNilAndOffAllowEverything(t *testing.T) {
	var none *limit.Sender
	ctx := context.Background()
	if none.ToUser(ctx, "a", "b", 1<<30) != nil || none.Recipients(ctx, "a", 1<<30) != nil {
		t.Fatal("a nil Sender limited")
	}
	off := sender(t, limit.Config{})
	if off.ToUser(ctx, "a", "b", 1<<30) != nil || off.Recipients(ctx, "a", 1<<30) != nil {
		t.Fatal("a Sender with every bound off limited")
	}
}

// TestOpenWhenRedisDown: a limiter that cannot reach Redis lets the
// message through (the dispatch after it answers unavailable itself), but
// a context that ended is its error.
func TestOpenWhenRedisDown(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	s := limit.New(rdb, limit.DefaultConfig())
	srv.Stop()
	if err := s.ToUser(context.Background(), "alice", "bob", 20000); err != nil { // beyond the local share
		t.Errorf("with Redis down: %v, want allowed", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Recipients(ctx, "alice", 100); !errors.Is(err, context.Canceled) { // beyond the local share: Redis decides
		t.Errorf("with the context ended: %v, want context.Canceled", err)
	}
}

// TestOrdinaryTrafficStaysLocal: what fits in an instance's own share of a
// bound costs no round trip to Redis; what goes beyond it is counted there,
// and the bound still holds.
func TestOrdinaryTrafficStaysLocal(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	// Local share: 100 B/s, a burst of 100 B; in Redis: 800 B/s, 1,600 B.
	s := limit.New(rdb, limit.Config{BytesPerSecond: 800, BytesBurst: 1600})
	ctx := context.Background()
	calls := func() int {
		stats, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range strings.Split(stats, "\n") {
			if strings.HasPrefix(line, "cmdstat_evalsha:") || strings.HasPrefix(line, "cmdstat_eval:") {
				var c int
				_, _ = fmt.Sscanf(line[strings.IndexByte(line, ':')+1:], "calls=%d", &c)
				n += c
			}
		}
		return n
	}
	before := calls()
	for i := range 10 {
		if err := s.ToUser(ctx, "alice", "bob", 10); err != nil {
			t.Fatalf("small message %d: %v", i, err)
		}
	}
	if n := calls() - before; n != 0 {
		t.Errorf("10 messages within the local share made %d script calls in Redis, want 0", n)
	}
	allowed := 0
	for range 40 {
		if s.ToUser(ctx, "alice", "bob", 100) == nil {
			allowed++
		}
	}
	if calls() == before {
		t.Error("messages beyond the local share were not counted in Redis")
	}
	// At most the local burst and Redis's burst, plus what both refilled
	// meanwhile (the loop takes well under a second: 900 B at most).
	if allowed == 0 || allowed*100 > 100+1600+900 {
		t.Errorf("%d of 40 100-byte messages allowed, want 1 to 26", allowed)
	}
}
