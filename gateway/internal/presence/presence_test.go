package presence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// counter is a Recorder.
type counter struct{ n atomic.Int64 }

func (c *counter) PresenceWriteFailed(n int) { c.n.Add(int64(n)) }

// run starts l.Run until the test ends (or stop is called) and returns stop.
func run(t *testing.T, l *Leases) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); l.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// lease returns the expiry (Unix ms) of conn's lease in user's key, and
// whether there is one.
func lease(t *testing.T, rdb redis.UniversalClient, user, conn string) (int64, bool) {
	t.Helper()
	score, err := rdb.ZScore(context.Background(), proto.UserPresenceKey(user), conn).Result()
	if errors.Is(err, redis.Nil) {
		return 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return int64(score), true
}

func client(t testing.TB, r *testkit.Redis) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// TestOpenedAndClosed: a socket's lease is written once it is opened,
// expiring a TTL from then, in a key that expires with it; it is gone
// from Redis by the time Closed returns, and the key with it.
func TestOpenedAndClosed(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := client(t, r)
	ttl := 30 * time.Second
	l := New(rdb, ttl, &counter{}, zap.NewNop())
	run(t, l)
	before := time.Now()
	// Opened's channel closes once the lease is written: the worker
	// announces the socket to the hooks only then.
	for i, c := range []string{"c1", "c2"} {
		count := l.Opened("alice", c)
		select {
		case <-count.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("Opened(%s)'s count was not done", c)
		}
		if _, ok := lease(t, rdb, "alice", c); !ok {
			t.Fatalf("%s's lease is not in Redis when Opened's count is done", c)
		}
		if n, ok := count.Sockets(); !ok || n != i+1 {
			t.Errorf("Opened(%s): alice's sockets = %d, %t; want %d", c, n, ok, i+1)
		}
	}
	exp, _ := lease(t, rdb, "alice", "c1")
	if lo, hi := before.Add(ttl).UnixMilli(), time.Now().Add(ttl).UnixMilli(); exp < lo || exp > hi {
		t.Errorf("lease expires at %d, want within [%d, %d]", exp, lo, hi)
	}
	if pttl := rdb.PTTL(context.Background(), proto.UserPresenceKey("alice")).Val(); pttl <= 0 || pttl > ttl {
		t.Errorf("key's PTTL = %s, want within (0, %s]", pttl, ttl)
	}
	if n := l.Len(); n != 2 {
		t.Errorf("Len = %d, want 2", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n, ok := l.Closed(ctx, "alice", "c1"); !ok || n != 1 {
		t.Errorf("Closed(c1): alice's sockets = %d, %t; want 1", n, ok)
	}
	if _, ok := lease(t, rdb, "alice", "c1"); ok {
		t.Error("c1's lease is still in Redis after Closed returned")
	}
	if _, ok := lease(t, rdb, "alice", "c2"); !ok {
		t.Error("c2's lease went with c1's")
	}
	if n, ok := l.Closed(ctx, "alice", "c2"); !ok || n != 0 {
		t.Errorf("Closed(c2): alice's sockets = %d, %t; want 0", n, ok)
	}
	if n := rdb.Exists(context.Background(), proto.UserPresenceKey("alice")).Val(); n != 0 {
		t.Error("alice's key outlives her last lease")
	}
	if n := l.Len(); n != 0 {
		t.Errorf("Len = %d after both closed, want 0", n)
	}
}

// TestRefreshAndDeadWorker: a live worker's refresh moves its leases'
// expiry on; a worker that dies without removing its leases (its Redis
// client is gone when it stops) leaves leases that lapse within the TTL:
// the key of a user it alone served vanishes, and the stale member of a
// user another worker also serves is removed by that worker's refresh.
func TestRefreshAndDeadWorker(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := client(t, r)
	ttl := MinTTL
	live := New(rdb, ttl, &counter{}, zap.NewNop())
	run(t, live)
	deadRDB := redis.NewClient(&redis.Options{Addr: r.Addr()})
	dead := New(deadRDB, ttl, &counter{}, zap.NewNop())
	stopDead := run(t, dead)

	live.Opened("bob", "live-1")
	dead.Opened("bob", "dead-1")
	dead.Opened("carol", "dead-2")
	testkit.Eventually(t, 5*time.Second, "the three leases are written", func() bool {
		_, a := lease(t, rdb, "bob", "live-1")
		_, b := lease(t, rdb, "bob", "dead-1")
		_, c := lease(t, rdb, "carol", "dead-2")
		return a && b && c
	})
	first, _ := lease(t, rdb, "bob", "live-1")
	testkit.Eventually(t, ttl, "the live lease is refreshed", func() bool {
		exp, ok := lease(t, rdb, "bob", "live-1")
		return ok && exp > first
	})

	// The dead worker's client goes first, so its stop removes nothing.
	_ = deadRDB.Close()
	stopDead()
	if _, ok := lease(t, rdb, "carol", "dead-2"); !ok {
		t.Fatal("the dead worker removed its leases; the test kills nothing")
	}
	testkit.Eventually(t, 2*ttl, "carol's key expires", func() bool {
		return rdb.Exists(context.Background(), proto.UserPresenceKey("carol")).Val() == 0
	})
	testkit.Eventually(t, 2*ttl, "bob's stale lease is removed by the live worker's refresh", func() bool {
		_, ok := lease(t, rdb, "bob", "dead-1")
		return !ok
	})
	if _, ok := lease(t, rdb, "bob", "live-1"); !ok {
		t.Error("bob's live lease lapsed")
	}
}

// TestRedisDownRefreshRepairs: a lease that cannot be written while Redis
// is down is counted and logged with the user, conn and worker, and the
// socket's close is not held longer than its context; the refresh after
// Redis is back writes it.
func TestRedisDownRefreshRepairs(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	core, logs := observer.New(zap.WarnLevel)
	failed := &counter{}
	l := New(rdb, MinTTL, failed, zap.New(core).With(zap.Int("worker", 3)))
	run(t, l)
	r.Stop()
	l.Opened("dave", "c1")
	testkit.Eventually(t, 5*time.Second, "the failed write is counted", func() bool { return failed.n.Load() > 0 })
	entries := logs.FilterMessage("presence not recorded in redis, retried at the next refresh").All()
	if len(entries) == 0 {
		t.Fatal("the failure is not logged")
	}
	if f := entries[0].ContextMap(); f["user"] != "dave" || f["conn"] != "c1" || f["worker"] != int64(3) {
		t.Errorf("log fields %v, want user dave, conn c1, worker 3", f)
	}
	r.Start()
	check := client(t, r)
	testkit.Eventually(t, 2*MinTTL, "the refresh writes the lease", func() bool {
		_, ok := lease(t, check, "dave", "c1")
		return ok
	})
}

// TestStopRemovesLeases: a worker that stops (a graceful shutdown)
// removes the leases of the sockets it still holds.
func TestStopRemovesLeases(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := client(t, r)
	l := New(rdb, 30*time.Second, &counter{}, zap.NewNop())
	stop := run(t, l)
	l.Opened("erin", "c1")
	testkit.Eventually(t, 5*time.Second, "the lease is written", func() bool {
		_, ok := lease(t, rdb, "erin", "c1")
		return ok
	})
	stop()
	if _, ok := lease(t, rdb, "erin", "c1"); ok {
		t.Error("the lease outlives its worker's graceful stop")
	}
	// Closed after Run has returned does not wait.
	l.Closed(context.Background(), "erin", "c1")
}

// TestManySockets: more sockets than one pipeline holds are all leased,
// refreshed and removed.
func TestManySockets(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := client(t, r)
	l := New(rdb, MinTTL, &counter{}, zap.NewNop())
	run(t, l)
	const users = 700 // > batchOps and batchUsers
	for i := range users {
		l.Opened("u"+strconv.Itoa(i), "c"+strconv.Itoa(i))
	}
	testkit.Eventually(t, 5*time.Second, "every lease is written", func() bool {
		_, ok := lease(t, rdb, "u"+strconv.Itoa(users-1), "c"+strconv.Itoa(users-1))
		return ok
	})
	first, _ := lease(t, rdb, "u0", "c0")
	last, _ := lease(t, rdb, "u"+strconv.Itoa(users-1), "c"+strconv.Itoa(users-1))
	testkit.Eventually(t, MinTTL, "the first and last leases are refreshed", func() bool {
		a, _ := lease(t, rdb, "u0", "c0")
		b, _ := lease(t, rdb, "u"+strconv.Itoa(users-1), "c"+strconv.Itoa(users-1))
		return a > first && b > last
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range users {
		wg.Add(1)
		go func() { defer wg.Done(); l.Closed(ctx, "u"+strconv.Itoa(i), "c"+strconv.Itoa(i)) }()
	}
	wg.Wait()
	keys, err := rdb.Keys(ctx, "sb:*:p").Result()
	if err != nil || len(keys) != 0 {
		t.Errorf("%d presence keys left (%v), want none", len(keys), err)
	}
}

// TestCluster: on a Redis Cluster each user's lease is written to the
// node that holds the user's stream, in its slot.
func TestCluster(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(nil)
	l := New(rdb, 30*time.Second, &counter{}, zap.NewNop())
	run(t, l)
	users := make([]string, 0, proto.Partitions)
	seen := map[int]bool{}
	for i := 0; len(users) < proto.Partitions; i++ {
		u := fmt.Sprintf("user-%d", i)
		if p := proto.PartitionOf(u); !seen[p] {
			seen[p] = true
			users = append(users, u)
			l.Opened(u, "conn-"+u)
		}
	}
	ctx := context.Background()
	for _, u := range users {
		testkit.Eventually(t, 5*time.Second, u+"'s lease is written", func() bool {
			_, ok := lease(t, rdb, u, "conn-"+u)
			return ok
		})
		key, stream := proto.UserPresenceKey(u), proto.UserStreamKey(u)
		if slot := rdb.ClusterKeySlot(ctx, key).Val(); slot != int64(proto.Slot(stream)) {
			t.Errorf("%s is in slot %d, %s in %d", key, slot, stream, proto.Slot(stream))
		}
		node := redis.NewClient(&redis.Options{Addr: c.NodeOf(stream).Addr()})
		n := node.Exists(ctx, key).Val()
		_ = node.Close()
		if n != 1 {
			t.Errorf("%s is not on the node of %s", key, stream)
		}
	}
	for _, u := range users {
		l.Closed(ctx, u, "conn-"+u)
		if _, ok := lease(t, rdb, u, "conn-"+u); ok {
			t.Errorf("%s's lease outlives Closed", u)
		}
	}
}

// TestStopWithRedisHung: with Redis hung (it takes commands and answers
// none), a worker's stop is not held for a round trip per batch of the
// removals it owes: the first that times out ends the writes, and the
// leases left expire within the TTL. The client is the gateway's, with
// go-redis's defaults.
func TestStopWithRedisHung(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := client(t, r)
	failed := &counter{}
	l := New(rdb, 30*time.Second, failed, zap.NewNop())
	stop := run(t, l)
	const socks = 6 * batchCmds // a dozen batches of removals
	for i := range socks {
		l.Opened("u"+strconv.Itoa(i), "c"+strconv.Itoa(i))
	}
	last := strconv.Itoa(socks - 1)
	testkit.Eventually(t, 10*time.Second, "every lease is written", func() bool {
		_, ok := lease(t, rdb, "u"+last, "c"+last)
		return ok
	})
	r.Pause(t)
	defer r.Continue()
	start := time.Now()
	stop()
	// One batch that times out: writing every batch took a minute.
	if took, most := time.Since(start), 2*hungBatch; took > most {
		t.Errorf("stop with Redis hung took %s, want at most %s", took.Round(time.Millisecond), most)
	}
	if failed.n.Load() < socks {
		t.Errorf("%d failed commands counted, want the %d removals never written", failed.n.Load(), socks)
	}
}

// hungBatch is about how long one pipeline to a hung Redis takes with
// the gateway's client (go-redis's defaults: a 3 s read timeout that
// outlasts writeTimeout, then a retry), measured at 5 s.
const hungBatch = 6 * time.Second

// TestRefreshWithRedisHungEnds: a refresh that meets a hung Redis ends at
// its first batch that fails, rather than waiting out a timeout for each
// batch of every local socket's lease (and holding the removals queued
// meanwhile, whose queue grows as long): a stop that comes during it
// waits for one more batch at most.
func TestRefreshWithRedisHungEnds(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := client(t, r)
	failed := &counter{}
	l := New(rdb, MinTTL, failed, zap.NewNop())
	stop := run(t, l)
	const socks = 12 * batchUsers // a dozen batches of refresh
	for i := range socks {
		l.Opened("u"+strconv.Itoa(i), "c"+strconv.Itoa(i))
	}
	last := strconv.Itoa(socks - 1)
	testkit.Eventually(t, 10*time.Second, "every lease is written", func() bool {
		_, ok := lease(t, rdb, "u"+last, "c"+last)
		return ok
	})
	r.Pause(t)
	defer r.Continue()
	testkit.Eventually(t, MinTTL+2*hungBatch, "a refresh fails", func() bool { return failed.n.Load() > 0 })
	start := time.Now()
	stop()
	if took, most := time.Since(start), 2*hungBatch; took > most {
		t.Errorf("stop during a refresh with Redis hung took %s, want at most %s", took.Round(time.Millisecond), most)
	}
}

// TestFailedRemovalRetried: a removal that never reaches Redis (the path
// to it stalls, then its connections are cut) is written again at the
// next refresh once Redis is reachable: the closed socket stops counting
// then, not when its lease expires a TTL after its last write.
func TestFailedRemovalRetried(t *testing.T) {
	r := testkit.StartRedis(t)
	check := client(t, r)
	proxy := testkit.StartProxy(t, r.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	failed := &counter{}
	ttl := 30 * time.Second
	l := New(rdb, ttl, failed, zap.NewNop())
	run(t, l)
	l.Opened("frank", "c1")
	testkit.Eventually(t, 5*time.Second, "the lease is written", func() bool {
		_, ok := lease(t, check, "frank", "c1")
		return ok
	})
	exp, _ := lease(t, check, "frank", "c1")

	proxy.Freeze()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	l.Closed(ctx, "frank", "c1")
	cancel()
	testkit.Eventually(t, 3*hungBatch, "the removal fails", func() bool { return failed.n.Load() > 0 })
	proxy.Cut() // what it held is lost
	proxy.Thaw()
	if _, ok := lease(t, check, "frank", "c1"); !ok {
		t.Fatal("the removal reached Redis; the test fails nothing")
	}
	testkit.Eventually(t, time.Until(time.UnixMilli(exp))-time.Second, "the removal is retried before the lease expires", func() bool {
		_, ok := lease(t, check, "frank", "c1")
		return !ok
	})
}

// syncBuffer is a bytes.Buffer safe for the logger's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFailureLogOneWorkerField: the gateway's worker logger already
// carries the worker field (cmd/gateway), so the failure's JSON line has
// it once: a duplicate key is refused or overwritten by log pipelines.
func TestFailureLogOneWorkerField(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	var out syncBuffer
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	log := zap.New(zapcore.NewCore(enc, zapcore.AddSync(&out), zap.InfoLevel)).With(zap.Int("worker", 3))
	failed := &counter{}
	l := New(rdb, MinTTL, failed, log)
	run(t, l)
	r.Stop()
	l.Opened("gina", "c1")
	testkit.Eventually(t, 5*time.Second, "the failure is logged", func() bool {
		return strings.Contains(out.String(), "presence not recorded")
	})
	line := out.String()
	if n := strings.Count(line, `"worker":`); n != 1 {
		t.Errorf("the failure's line has the worker field %d times, want once: %s", n, line)
	}
	if !strings.Contains(line, `"user":"gina"`) || !strings.Contains(line, `"conn":"c1"`) {
		t.Errorf("the failure's line lacks user or conn: %s", line)
	}
}

// newLeases is New of MinTTL for worker 3.
func newLeases(rdb redis.UniversalClient, rec Recorder, log *zap.Logger) *Leases {
	return New(rdb, MinTTL, rec, log)
}

// slowPipelines is a go-redis hook that holds each pipeline for delay
// before sending it, and counts the refresh pipelines (those with a
// ZREMRANGEBYSCORE) sent: a real Redis behind a slow path.
type slowPipelines struct {
	delay     time.Duration
	refreshes atomic.Int64
}

func (h *slowPipelines) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *slowPipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (h *slowPipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		time.Sleep(h.delay) // the slow path being simulated, not a wait for a condition
		err := next(ctx, cmds)
		for _, c := range cmds {
			if c.Name() == "zremrangebyscore" {
				h.refreshes.Add(1)
				break
			}
		}
		return err
	}
}

// TestCloseDuringLongRefresh: a refresh of many users takes many round
// trips; a socket closed during it has its removal written between two
// of its batches, not after the whole pass (by then the close had given
// up waiting, and its disconnect was announced while its lease still
// counted), and the pass does not lease it again.
func TestCloseDuringLongRefresh(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := client(t, r)
	slow := &slowPipelines{delay: 20 * time.Millisecond}
	rdb.AddHook(slow)
	l := New(rdb, MinTTL, &counter{}, zap.NewNop())
	run(t, l)
	const users = 3000 // 18 refresh batches of 170 users
	batches := int64((users + batchUsers - 1) / (batchUsers))
	var last *Count
	for i := range users {
		last = l.Opened("u"+strconv.Itoa(i), "c"+strconv.Itoa(i))
	}
	select {
	case <-last.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the leases were not written")
	}
	testkit.Eventually(t, 10*time.Second, "a refresh pass begins", func() bool { return slow.refreshes.Load() > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l.Closed(ctx, "u7", "c7")
	if ctx.Err() != nil {
		t.Fatal("Closed did not return")
	}
	if got := slow.refreshes.Load(); got >= batches {
		t.Errorf("the removal was written after all %d refresh batches (%d sent): the close waited for the whole pass", batches, got)
	}
	if _, ok := lease(t, rdb, "u7", "c7"); ok {
		t.Error("c7's lease is in Redis when Closed returns")
	}
	testkit.Eventually(t, 10*time.Second, "the pass ends", func() bool { return slow.refreshes.Load() >= batches })
	if _, ok := lease(t, rdb, "u7", "c7"); ok {
		t.Error("the refresh leased the closed c7 again")
	}
}

// TestCountsAtOnce: sockets of one user opened and closed at once on two
// workers; the counts come from Redis in the step that writes each
// lease, so exactly one opening finds 1 (the user came online) and
// exactly one closing finds 0 (went offline), as a connect or disconnect
// hook is told.
func TestCountsAtOnce(t *testing.T) {
	r := testkit.StartRedis(t)
	workers := []*Leases{
		New(client(t, r), 30*time.Second, &counter{}, zap.NewNop()),
		New(client(t, r), 30*time.Second, &counter{}, zap.NewNop()),
	}
	for _, l := range workers {
		run(t, l)
	}
	const sockets = 40
	for round := range 3 {
		user := "zoe" + strconv.Itoa(round)
		counts := make([]*Count, sockets)
		var wg sync.WaitGroup
		for i := range sockets {
			wg.Go(func() { counts[i] = workers[i%2].Opened(user, "c"+strconv.Itoa(i)) })
		}
		wg.Wait()
		seen := map[int]int{}
		for i, c := range counts {
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatalf("socket %d's count not done", i)
			}
			n, ok := c.Sockets()
			if !ok {
				t.Fatalf("socket %d's count not known", i)
			}
			seen[n]++
		}
		for n := 1; n <= sockets; n++ {
			if seen[n] != 1 {
				t.Fatalf("round %d: opening counts %v: want each of 1..%d once", round, seen, sockets)
			}
		}
		left := make([]int, sockets)
		for i := range sockets {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				n, ok := workers[i%2].Closed(ctx, user, "c"+strconv.Itoa(i))
				if !ok {
					n = -1
				}
				left[i] = n
			})
		}
		wg.Wait()
		seen = map[int]int{}
		for _, n := range left {
			seen[n]++
		}
		for n := range sockets {
			if seen[n] != 1 {
				t.Fatalf("round %d: closing counts %v: want each of 0..%d once", round, seen, sockets-1)
			}
		}
	}
}
