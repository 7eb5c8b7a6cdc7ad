package dispatch

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/internal/late"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestLateOutcome: a Dispatch whose context carries a late.Func and ends
// before its outcome is known returns the context's error at once, as
// without one, and the func learns the outcome once: at once, not run,
// for a call never written (it gave up while queued); after the flush
// that carried it, done with its positions, for a call in flight. A
// Dispatch that returns its outcome reports nothing.
func TestLateOutcome(t *testing.T) {
	srv := testkit.StartRedis(t)
	d, g := newGatedDispatcher(t, srv.Addr())
	ctx := context.Background()
	watch := func(ctx context.Context) (context.Context, context.CancelFunc, chan late.Report) {
		got := make(chan late.Report, 2) // a second report would show
		ctx, cancel := context.WithCancel(ctx)
		return late.With(ctx, func(r late.Report) { got <- r }), cancel, got
	}

	first := make(chan error, 1)
	go func() { first <- d.Broadcast(ctx, "first", nil) }()
	g.next(t)

	// lead writes the next pipeline; inFlight goes in it; queued gives up
	// before it is written.
	leadCtx, _, leadGot := watch(ctx)
	leadDone := make(chan error, 1)
	go func() {
		_, err := d.Dispatch(leadCtx, Message{Event: "e", Users: []string{"alice"}})
		leadDone <- err
	}()
	awaitQueued(t, &d.pub, 1)
	inFlightCtx, cancelInFlight, inFlightGot := watch(ctx)
	defer cancelInFlight()
	inFlightDone := make(chan error, 1)
	go func() {
		_, err := d.Dispatch(inFlightCtx, Message{Event: "e", Users: []string{"bob", "carol"}})
		inFlightDone <- err
	}()
	awaitQueued(t, &d.pub, 2)
	queuedCtx, cancelQueued, queuedGot := watch(ctx)
	queuedDone := make(chan error, 1)
	go func() {
		_, err := d.Dispatch(queuedCtx, Message{Event: "e", Users: []string{"dave"}})
		queuedDone <- err
	}()
	awaitQueued(t, &d.pub, 3)

	cancelQueued()
	if err := <-queuedDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("call canceled while queued: %v, want context.Canceled", err)
	}
	select {
	case r := <-queuedGot:
		if r.Outcome != late.NotRun {
			t.Fatalf("call canceled while queued reported %+v, want not run", r)
		}
	default:
		t.Fatal("call canceled while queued: no outcome when Dispatch returned, want not run")
	}

	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got := g.next(t); strings.Join(got, " ") != "evalsha/2" {
		t.Fatalf("second pipeline %v, want the two calls left, merged", got)
	}
	cancelInFlight()
	if err := <-inFlightDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("call canceled in flight: %v, want context.Canceled at once", err)
	}
	select {
	case r := <-inFlightGot:
		t.Fatalf("call canceled in flight reported %+v before its flush ended", r)
	default:
	}
	g.release <- struct{}{}
	if err := <-leadDone; err != nil {
		t.Fatalf("leader: %v", err)
	}
	r := <-inFlightGot // the leader reports before it returns
	if r.Outcome != late.Done || len(r.Users) != 2 || r.Broadcast != "" {
		t.Fatalf("call canceled in flight reported %+v, want done with bob's and carol's positions", r)
	}
	check := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = check.Close() })
	for _, u := range []string{"bob", "carol"} {
		p, ok := proto.ParsePos(r.Users[u])
		if !ok {
			t.Fatalf("%s's position %q does not parse", u, r.Users[u])
		}
		xs, err := check.XRange(ctx, proto.UserStreamKey(u), "-", "+").Result()
		if err != nil || len(xs) != 1 || xs[0].ID != p.ID() {
			t.Fatalf("%s's stream %v (%v), want its one entry at %s", u, xs, err, r.Users[u])
		}
	}
	if n, err := check.Exists(ctx, proto.UserStreamKey("dave")).Result(); err != nil || n != 0 {
		t.Fatalf("dave's stream exists (%d, %v): the call canceled while queued was written", n, err)
	}
	for name, got := range map[string]chan late.Report{"leader": leadGot, "in flight": inFlightGot, "queued": queuedGot} {
		select {
		case r := <-got:
			t.Errorf("%s: reported %+v, want nothing more", name, r)
		default:
		}
	}
	if !d.pub.idle() {
		t.Fatal("publisher not idle after every call returned")
	}
}

// TestLateOutcomeOnSeveralPartitions: on a Redis Cluster, a dispatch to
// users of several partitions is one call per partition; abandoned while
// all are in flight, it reports once every call has ended: done, with
// every user's position, when all ran; given up while queued, not run,
// before Dispatch returns.
func TestLateOutcomeOnSeveralPartitions(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	// Loaded before the gate, as newGatedDispatcher does.
	if err := rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		return streams.PublishScript.Load(ctx, m).Err()
	}); err != nil {
		t.Fatal(err)
	}
	g := newGate()
	rdb.AddHook(g)
	d := New(rdb, Options{Window: 2 * time.Minute})
	// Every dispatch here goes to the partitions of one master, the
	// broadcast stream's, whose publisher carries them all.
	master := c.NodeOf(proto.RunKey(proto.BroadcastPartition))
	pub := d.publisherOf(ctx, proto.BroadcastPartition)
	lead := usersOn(c, master, "lead-", 1, false)[0]
	users := usersOn(c, master, "member-", 3, true)
	calls := len(users) // one per partition
	watch := func() (context.Context, context.CancelFunc, chan late.Report) {
		got := make(chan late.Report, 2) // a second report would show
		ctx, cancel := context.WithCancel(ctx)
		return late.With(ctx, func(r late.Report) { got <- r }), cancel, got
	}

	first := make(chan error, 1)
	go func() { first <- d.Broadcast(ctx, "first", nil) }()
	g.next(t)
	// lead leads the next flush; spread goes in it, and queued gives up
	// before it is written.
	leadDone := make(chan error, 1)
	go func() {
		_, err := d.Dispatch(ctx, Message{Event: "e", Users: []string{lead}})
		leadDone <- err
	}()
	awaitQueued(t, pub, 1)
	spreadCtx, cancelSpread, spreadGot := watch()
	defer cancelSpread()
	spreadDone := make(chan error, 1)
	go func() {
		_, err := d.Dispatch(spreadCtx, Message{Event: "e", Users: users})
		spreadDone <- err
	}()
	awaitQueued(t, pub, 1+calls)
	queuedCtx, cancelQueued, queuedGot := watch()
	queuedDone := make(chan error, 1)
	others := usersOn(c, master, "x-", 3, true)
	go func() {
		_, err := d.Dispatch(queuedCtx, Message{Event: "e", Users: others})
		queuedDone <- err
	}()
	awaitPublisher(t, func() bool { return pub.queued() > 1+calls }, func() string { return "the third dispatch not queued" })

	cancelQueued()
	if err := <-queuedDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("dispatch canceled while queued: %v, want context.Canceled", err)
	}
	select {
	case r := <-queuedGot:
		if r.Outcome != late.NotRun {
			t.Fatalf("dispatch canceled while queued reported %+v, want not run", r)
		}
	default:
		t.Fatal("dispatch canceled while queued: no outcome when Dispatch returned, want not run")
	}

	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	g.next(t) // lead's and spread's calls
	cancelSpread()
	if err := <-spreadDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("dispatch canceled in flight: %v, want context.Canceled at once", err)
	}
	select {
	case r := <-spreadGot:
		t.Fatalf("dispatch canceled in flight reported %+v before its calls ended", r)
	default:
	}
	g.release <- struct{}{}
	if err := <-leadDone; err != nil {
		t.Fatalf("leader: %v", err)
	}
	r := <-spreadGot
	if r.Outcome != late.Done || len(r.Users) != len(users) {
		t.Fatalf("dispatch canceled in flight reported %+v, want done with the positions of %v", r, users)
	}
	for _, u := range users {
		p, ok := proto.ParsePos(r.Users[u])
		if !ok {
			t.Fatalf("%s's position %q does not parse", u, r.Users[u])
		}
		xs, err := rdb.XRange(ctx, proto.UserStreamKey(u), "-", "+").Result()
		if err != nil || len(xs) != 1 || xs[0].ID != p.ID() {
			t.Fatalf("%s's stream %v (%v), want its one entry at %s", u, xs, err, r.Users[u])
		}
	}
	for name, got := range map[string]chan late.Report{"in flight": spreadGot, "queued": queuedGot} {
		select {
		case r := <-got:
			t.Errorf("%s: reported %+v, want nothing more", name, r)
		default:
		}
	}
}
