package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// partlyFull is a 3-master cluster one of whose masters refuses writes
// (maxmemory 1, noeviction: OOM before the script runs), with a user on
// it, a user on another master, and an idempotency key whose record is
// on another master too, so that keyed dispatches can be reserved.
type partlyFull struct {
	rdb        *redis.ClusterClient
	d          *dispatch.Dispatcher
	node       *redis.Client // the full master
	alice, bob string        // alice's master is full, bob's is not
	key        string        // an idempotency key not on the full master
}

func startPartlyFull(t *testing.T, ctx context.Context) *partlyFull {
	t.Helper()
	c := testkit.StartRedisCluster(t, 3)
	p := &partlyFull{rdb: c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})}
	p.d = dispatch.New(p.rdb, dispatch.Options{Window: time.Minute})
	users := spreadUsers(50)
	p.alice = users[0]
	full := c.NodeOf(proto.UserStreamKey(p.alice))
	for _, u := range users[1:] {
		if c.NodeOf(proto.UserStreamKey(u)).Addr() != full.Addr() {
			p.bob = u
			break
		}
	}
	for i := 0; p.key == ""; i++ {
		if k := fmt.Sprintf("partly-%d", i); c.NodeOf(proto.IdempotencyKey(k)).Addr() != full.Addr() {
			p.key = k
		}
	}
	// Warm up: run keys recorded, connections open, slots known.
	warm, err := p.d.Dispatch(ctx, dispatch.Message{Event: "warm", Users: []string{p.alice, p.bob}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := warm.Users[p.bob], p.lastPos(t, ctx, p.bob); got != want {
		t.Fatalf("warm-up: bob at %q, his stream's last event at %q: lastPos does not read positions as Dispatch gives them", got, want)
	}
	p.node = redis.NewClient(&redis.Options{Addr: full.Addr()})
	t.Cleanup(func() { _ = p.node.Close() })
	if err := p.node.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	p.fill(t, ctx)
	return p
}

func (p *partlyFull) fill(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := p.node.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
}

func (p *partlyFull) mend(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := p.node.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
}

func (p *partlyFull) xlen(t *testing.T, ctx context.Context, user string) int64 {
	t.Helper()
	n, err := p.rdb.XLen(ctx, proto.UserStreamKey(user)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return n
}

// lastPos returns the position of the last event of user's stream, as
// Dispatch returns it (epoch.id).
func (p *partlyFull) lastPos(t *testing.T, ctx context.Context, user string) string {
	t.Helper()
	ep, err := p.rdb.HGet(ctx, proto.UserMetaKey(user), "e").Result()
	if err != nil {
		t.Fatal(err)
	}
	xs, err := p.rdb.XRevRangeN(ctx, proto.UserStreamKey(user), "+", "-", 1).Result()
	if err != nil || len(xs) != 1 {
		t.Fatalf("last event of %s: %v %v", user, xs, err)
	}
	return ep + "." + xs[0].ID
}

// TestClusterPartlyDeliveredTellsWhoGotIt: on a Redis Cluster a dispatch
// to users of two masters, one of which refuses it (OOM), is recorded and
// published for the other master's users and fails with timeout "partly
// delivered". Found by review: the caller was told nothing of who got it
// (clusterResult dropped the positions of the partitions that ran), so it
// could not finish the delivery without sending it again to those who
// had it. The positions of the users that have it, and only theirs, come
// with the error.
func TestClusterPartlyDeliveredTellsWhoGotIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startPartlyFull(t, ctx)
	defer p.mend(t, context.Background())
	a0, b0 := p.xlen(t, ctx, p.alice), p.xlen(t, ctx, p.bob)

	pos, err := p.d.Dispatch(ctx, dispatch.Message{Event: "e", Users: []string{p.alice, p.bob}})

	if a, b := p.xlen(t, ctx, p.alice), p.xlen(t, ctx, p.bob); a != a0 || b != b0+1 {
		t.Fatalf("streams %d, %d from %d, %d: want bob's one more, alice's as it was (the fault did not reproduce)", a, b, a0, b0)
	}
	if w := event.WireError(err); w == nil || w.Code != proto.CodeTimeout {
		t.Fatalf("partly delivered: %v, want timeout", err)
	}
	want := p.lastPos(t, ctx, p.bob)
	if got := pos.Users[p.bob]; got != want {
		t.Errorf("partly delivered: positions %v; want bob (%s), who has it, at %s, so that the caller knows who got it", pos.Users, p.bob, want)
	}
	if got, ok := pos.Users[p.alice]; ok {
		t.Errorf("partly delivered: alice, who did not get it, has position %q", got)
	}
}

// TestClusterPartlyDeliveredCompletedWithNewKey: a partly delivered
// dispatch with an idempotency key leaves its key marked unknown until it
// expires (by design: a retry with it is refused, ErrKeyUnknown, never
// delivered a second time). Its error comes with the positions of who
// got it, so the caller completes the delivery as the docs say: the
// message to the users without a position, under a new key.
func TestClusterPartlyDeliveredCompletedWithNewKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startPartlyFull(t, ctx)
	defer p.mend(t, context.Background())
	a0, b0 := p.xlen(t, ctx, p.alice), p.xlen(t, ctx, p.bob)
	m := dispatch.Message{Event: "e", Users: []string{p.alice, p.bob}, IdempotencyKey: p.key}

	pos, err := p.d.Dispatch(ctx, m)
	if !errors.Is(err, dispatch.ErrPartlyDelivered) {
		t.Fatalf("partly delivered: %v, want it to wrap ErrPartlyDelivered", err)
	}
	p.mend(t, ctx)
	if _, err := p.d.Dispatch(ctx, m); !errors.Is(err, dispatch.ErrKeyUnknown) {
		t.Fatalf("retry with the key: %v, want ErrKeyUnknown (nothing dispatched)", err)
	}
	var rest []string
	for _, u := range m.Users {
		if _, got := pos.Users[u]; !got {
			rest = append(rest, u)
		}
	}
	m.Users, m.IdempotencyKey = rest, p.key+"-rest"
	if _, err := p.d.Dispatch(ctx, m); err != nil {
		t.Fatalf("the users without a position, under a new key: %v", err)
	}
	if a, b := p.xlen(t, ctx, p.alice), p.xlen(t, ctx, p.bob); a != a0+1 || b != b0+1 {
		t.Errorf("streams %d, %d from %d, %d: want each one more, once", a, b, a0, b0)
	}
}

// TestPartlyRecordedTellsWhoGotIt: the same on one Redis. A dispatch to
// more than 128 users is several units of one script call; when Redis
// fails a later unit (WRONGTYPE on a meta key something else overwrote),
// the units before it ran, and the dispatch fails with handler_error
// ("some of its events may have been recorded and delivered"). Found by
// review: splitMerged dropped the reply's positions of the units that
// ran; they come with the error.
func TestPartlyRecordedTellsWhoGotIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb := documentedClient(t)
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	users := spreadUsers(200) // units of 128 and 72 users
	broken := users[150]
	if err := rdb.Set(ctx, proto.UserMetaKey(broken), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	pos, err := d.Dispatch(ctx, dispatch.Message{Event: "e", Users: users})
	if w := event.WireError(err); w == nil || w.Code != proto.CodeHandlerError {
		t.Fatalf("a later unit failed: %v, want handler_error", err)
	}
	if n := rdb.XLen(ctx, proto.UserStreamKey(users[0])).Val(); n != 1 {
		t.Fatalf("%s's stream holds %d events, want the 1 the first unit recorded", users[0], n)
	}
	if len(pos.Users) < 128 || pos.Users[users[0]] == "" || pos.Users[broken] != "" {
		t.Errorf("partly recorded: %d positions; want at least the 128 of the first unit's users, who have it, and not %s, so that the caller knows who got it", len(pos.Users), broken)
	}
}
