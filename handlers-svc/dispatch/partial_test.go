package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/late"
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

// TestClusterPartlyDeliveredMarksEffects: a handler's
// dispatch that one master refuses (OOM) while another records and
// publishes it is partly delivered, and must tell the request's
// late.Effects so (markEffects), as every dispatch that may have gone out
// does: natserve turns a later unavailable into timeout, and does not free
// the request's idempotency key, only when Effects.Maybe(). Found: the
// error clusterResult builds (timeout, wrapping ErrPartlyDelivered) keeps
// the refused call's error as its cause, which wraps Redis's OOM
// redis.Error; outcomeOf finds that redis.Error and reads the whole
// dispatch as "refused before it ran" (late.NotRun), so markEffects
// marks nothing. A handler that then fails with unavailable (another
// dispatch to the full master, say) is answered unavailable, "nothing was
// done, retry", and its key is freed: the retry delivers to bob twice.
// Now outcomeOf reads an error wrapping ErrPartlyDelivered, or a timeout
// *event.Error, as unknown whatever its cause; and the error's text says
// "partly delivered" once (it said it two or three times).
func TestClusterPartlyDeliveredMarksEffects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startPartlyFull(t, ctx)
	defer p.mend(t, context.Background())
	b0 := p.xlen(t, ctx, p.bob)

	tctx, effects := late.Track(ctx)
	_, err := p.d.Dispatch(tctx, dispatch.Message{Event: "e", Users: []string{p.alice, p.bob}})
	if !errors.Is(err, dispatch.ErrPartlyDelivered) || p.xlen(t, ctx, p.bob) != b0+1 {
		t.Fatalf("dispatch: %v, bob's stream %d from %d: want partly delivered, bob one more (the fault did not reproduce)", err, p.xlen(t, ctx, p.bob), b0)
	}
	if !effects.Maybe() {
		t.Errorf("partly delivered (%v): the request's late.Effects says none of its dispatches may have gone out, though bob has it", err)
	}
	if n := strings.Count(err.Error(), "partly delivered"); n != 1 {
		t.Errorf("the error's text says partly delivered %d times, want once: %v", n, err)
	}

	// The same through a handler's ToUsers, which natserve tracks.
	tctx, effects = late.Track(ctx)
	err = p.d.ToUsers(tctx, []string{p.alice, p.bob}, "e", nil)
	if !errors.Is(err, dispatch.ErrPartlyDelivered) {
		t.Fatalf("ToUsers: %v, want partly delivered", err)
	}
	if !effects.Maybe() {
		t.Errorf("ToUsers partly delivered (%v): late.Effects not marked", err)
	}
}

// TestPartlyRecordedNamesEveryoneWhoHasIt: on one
// Redis, a dispatch to 200 users is two units (128 and 72); Redis fails
// the second at its 23rd user (WRONGTYPE on users[150]'s meta). The
// script had already appended the event to the streams of that unit's
// first 22 users (users[128:150]): they have it (the gateways heal a
// recorded event into the sockets, and a resume reads it). Found: the
// script sets "" for every target of a failed unit, so Dispatch gives
// them no position, and the docs' recipe (ErrPartlyDelivered, Dispatch:
// "send the message to the users without a position") sends it to them a
// second time, though the docs say the Positions name "exactly the users
// that have it" and a user without one "did not get it" (only "where
// Redis did not answer, may have"; here Redis answered). Now the script
// returns the positions of the users a failed unit recorded, and keeps ""
// for the others only.
func TestPartlyRecordedNamesEveryoneWhoHasIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb := documentedClient(t)
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	users := spreadUsers(200)
	broken := users[150]
	if err := rdb.Set(ctx, proto.UserMetaKey(broken), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	pos, err := d.Dispatch(ctx, dispatch.Message{Event: "e", Users: users})
	if !errors.Is(err, dispatch.ErrPartlyDelivered) {
		t.Fatalf("dispatch: %v, want partly delivered", err)
	}
	var missing []string
	for _, u := range users {
		if u == broken {
			continue
		}
		if rdb.XLen(ctx, proto.UserStreamKey(u)).Val() == 1 && pos.Users[u] == "" {
			missing = append(missing, u)
		}
	}
	if len(missing) > 0 {
		t.Errorf("partly delivered: %d users have the event in their stream but no position (%s .. %s): the docs' recipe sends it to them again",
			len(missing), missing[0], missing[len(missing)-1])
	}
}

// TestClusterPartlyDeliveredPositionsMatchStreams: the
// positions of a partly delivered cluster dispatch are in target order
// whatever its shape: users of many partitions on the masters that take
// it, more than 128 users of one partition (two units of one call), a
// room's members merged with the users, and conns. Each user that has a
// position has the event at exactly that position; each whose stream got
// it has a position; the full master's users have none.
func TestClusterPartlyDeliveredPositionsMatchStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := startPartlyFull(t, ctx)
	p.mend(t, ctx) // the room is joined first
	full := p.node.Options().Addr
	bobPart := proto.PartitionOf(p.bob)
	var users, inRoom []string
	crowd := 0
	for i := 0; crowd < 140 || len(users) < 60; i++ {
		u := fmt.Sprintf("shape-%d", i)
		switch {
		case proto.PartitionOf(u) == bobPart && crowd < 140:
			crowd++
			users = append(users, u)
		case len(users) < 60 || i%7 == 0:
			if i%3 == 0 {
				inRoom = append(inRoom, u)
			} else {
				users = append(users, u)
			}
		}
	}
	users = append(users, p.alice)
	for _, u := range inRoom {
		if _, _, err := p.d.Join(ctx, "shape-room", u); err != nil {
			t.Fatal(err)
		}
	}
	all := append(slices.Clone(users), inRoom...)
	before := map[string]int64{}
	for _, u := range all {
		before[u] = p.xlen(t, ctx, u)
	}
	p.fill(t, ctx)

	pos, err := p.d.Dispatch(ctx, dispatch.Message{Event: "shape", Users: users, Rooms: []string{"shape-room"}, Conns: []string{"c1"}})
	p.mend(t, ctx)
	if !errors.Is(err, dispatch.ErrPartlyDelivered) {
		t.Fatalf("dispatch: %v, want partly delivered", err)
	}
	if w := event.WireError(err); w.Code != proto.CodeTimeout {
		t.Errorf("partly delivered: code %s, want timeout", w.Code)
	}
	onFull := 0
	for _, u := range all {
		got := p.xlen(t, ctx, u) - before[u]
		node, err := p.rdb.MasterForKey(ctx, proto.UserStreamKey(u))
		if err != nil {
			t.Fatal(err)
		}
		if node.Options().Addr == full {
			onFull++
			if got != 0 || pos.Users[u] != "" {
				t.Errorf("%s, on the full master: %d new events, position %q: want none", u, got, pos.Users[u])
			}
			continue
		}
		if got != 1 {
			t.Errorf("%s: %d new events, want 1", u, got)
			continue
		}
		if want := p.lastPos(t, ctx, u); pos.Users[u] != want {
			t.Errorf("%s: position %q, its stream's event at %q", u, pos.Users[u], want)
		}
	}
	if onFull == 0 || onFull == len(all) {
		t.Fatalf("%d of %d users on the full master: the shape does not test a partial delivery", onFull, len(all))
	}
}

// TestAtomicallyIsNotAllOrNone: event.Atomically's batch is not all or
// none, and event.Batcher and Atomically now say so. Found by review:
// they promised a batch "delivered all together, or none is and an error
// (code unavailable) is returned"; on one Redis the recipient's "message"
// goes out while Redis fails the sender's "message_sent" (WRONGTYPE on
// its meta). Rewritten from the review's test, which wanted the promise
// kept: the behaviour is right (the other units of a script call run,
// by design) and the docs were wrong. What holds: the recipient has it,
// and the error tells the sender so: ErrPartlyDelivered, handler_error,
// never unavailable (which would say a retry is safe).
func TestAtomicallyIsNotAllOrNone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb := documentedClient(t)
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	if err := rdb.Set(ctx, proto.UserMetaKey("sender"), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err := event.Atomically(ctx, d, func(b event.Dispatcher) error {
		if err := b.ToUsers(ctx, []string{"recipient"}, "message", nil); err != nil {
			return err
		}
		return b.ToUsers(ctx, []string{"sender"}, "message_sent", nil)
	})
	n := rdb.XLen(ctx, proto.UserStreamKey("recipient")).Val()
	w := event.WireError(err)
	if n != 1 || !errors.Is(err, dispatch.ErrPartlyDelivered) || w == nil || w.Code != proto.CodeHandlerError || dispatch.NotDelivered(err) {
		t.Errorf("Atomically: %v (code %v), recipient has %d events: want 1, and a partly delivered handler_error", err, w, n)
	}
}
