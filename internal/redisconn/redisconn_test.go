package redisconn_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/redisconn"
	"github.com/switchboard/switchboard/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestIsCluster(t *testing.T) {
	for s, want := range map[string]bool{
		"redis://127.0.0.1:6379/0":                  false,
		"redis://a:1?addr=b:2&addr=c:3":             true,
		"rediss://u:p@a:1?addr=b:2":                 true,
		"redis://a:1?dial_timeout=1s":               false,
		"unix:///run/redis.sock":                    false,
		"redis://a:1/0?addr=b:2&read_timeout=200ms": true,
	} {
		if got := redisconn.IsCluster(s); got != want {
			t.Errorf("IsCluster(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestNew: one server's URL makes a *redis.Client that answers; a cluster
// URL a *redis.ClusterClient that reaches every node; both carry the
// tuning.
func TestNew(t *testing.T) {
	ctx := context.Background()
	var connects atomic.Int32
	tune := redisconn.Tuning{NoRetries: true, ContextTimeoutEnabled: true,
		OnConnect: func(context.Context, *redis.Conn) error { connects.Add(1); return nil }}

	srv := testkit.StartRedis(t)
	one, err := redisconn.New(srv.URL(), tune)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	c, ok := one.(*redis.Client)
	// go-redis keeps MaxRetries -1 as 0: no retry.
	if !ok || c.Options().MaxRetries != 0 || !c.Options().ContextTimeoutEnabled {
		t.Fatalf("one server: %T %+v", one, c.Options())
	}
	if err := one.Ping(ctx).Err(); err != nil || connects.Load() == 0 {
		t.Fatalf("ping %v, %d connects", err, connects.Load())
	}
	wantRawDialer(t, c.Options().Dialer, "tcp", srv.Addr())

	cl := testkit.StartRedisCluster(t, 3)
	many, err := redisconn.New(cl.URL(), tune)
	if err != nil {
		t.Fatal(err)
	}
	defer many.Close()
	cc, ok := many.(*redis.ClusterClient)
	if !ok || cc.Options().MaxRetries != -1 || !cc.Options().ContextTimeoutEnabled {
		t.Fatalf("cluster: %T", many)
	}
	if got := redisconn.Addrs(many); !slices.Equal(got, cl.Addrs()) {
		t.Fatalf("Addrs = %q, want %q", got, cl.Addrs())
	}
	wantRawDialer(t, cc.Options().Dialer, "tcp", cl.Addrs()[0])
	var masters atomic.Int32
	if err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		masters.Add(1)
		return m.Ping(ctx).Err()
	}); err != nil || masters.Load() != 3 {
		t.Fatalf("%d masters, %v", masters.Load(), err)
	}
}

// TestCheck: a REDIS_URL whose database index the server does not have is
// refused, naming REDIS_URL and the database; one it has, and a Redis
// that cannot be reached, are not (the service starts and waits for it).
func TestCheck(t *testing.T) {
	ctx := context.Background()
	rd := testkit.StartRedis(t)
	bad := "redis://" + rd.Addr() + "/99"
	err := redisconn.Check(ctx, bad, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "REDIS_URL") || !strings.Contains(err.Error(), "database 99") ||
		!strings.Contains(err.Error(), "DB index is out of range") {
		t.Errorf("Check(%s) = %v, want an error naming REDIS_URL, database 99 and Redis's reply", bad, err)
	}
	if err := redisconn.Check(ctx, "redis://"+rd.Addr()+"/15", 5*time.Second); err != nil {
		t.Errorf("Check of database 15 = %v, want nil", err)
	}
	down := "redis://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)) + "/99"
	if err := redisconn.Check(ctx, down, 5*time.Second); err != nil {
		t.Errorf("Check of a Redis that is down = %v, want nil: not a configuration error", err)
	}
	// What a service's own client gets, retrying, is told apart the same way.
	rdb, err := redisconn.New(bad, redisconn.Tuning{})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); !redisconn.Misconfigured(err) {
		t.Errorf("Misconfigured(%v) = false, want true", err)
	}
	if redisconn.Misconfigured(errors.New("dial tcp: connection refused")) || redisconn.Misconfigured(nil) {
		t.Error("Misconfigured holds for an unreachable Redis or no error")
	}
}
