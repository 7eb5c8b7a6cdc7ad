package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// gate is a go-redis hook that holds every pipeline of publishes until the
// test lets it go, and tells the test the names of its commands first.
type gate struct {
	entered chan []string // one per pipeline, before it is written
	release chan struct{} // one receive per pipeline
	panics  atomic.Bool   // the next pipeline let go panics instead
}

func newGate() *gate {
	return &gate{entered: make(chan []string, 16), release: make(chan struct{})}
}

func (g *gate) DialHook(next redis.DialHook) redis.DialHook { return next }
func (g *gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}

func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = scriptName(c)
		}
		if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "evalsha") }) {
			return next(ctx, cmds) // go-redis's own, such as a new connection's HELLO
		}
		g.entered <- names
		<-g.release
		if g.panics.Swap(false) {
			panic("go-redis broke")
		}
		return next(ctx, cmds)
	}
}

// scriptName names c as the gate tells it: "evalsha/<units>" for a call of
// the publish script, with the number of dispatches it carries, else c's
// name.
func scriptName(c redis.Cmder) string {
	if c.Name() != "evalsha" {
		return c.Name()
	}
	args := c.Args()
	nk, _ := args[2].(int)
	return fmt.Sprintf("evalsha/%v", args[3+nk+streams.CallUnits])
}

// next waits for the next pipeline to reach the gate and returns its
// command names.
func (g *gate) next(t *testing.T) []string {
	t.Helper()
	select {
	case names := <-g.entered:
		return names
	case <-time.After(10 * time.Second):
		t.Fatal("no pipeline reached Redis")
		return nil
	}
}

func newGatedDispatcher(t *testing.T, addr string) (*Dispatcher, *gate) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	// Loaded before the gate: a first call would otherwise take two
	// pipelines, the refused one and the one after loading the script.
	if err := streams.PublishScript.Load(context.Background(), rdb).Err(); err != nil {
		t.Fatal(err)
	}
	g := newGate()
	rdb.AddHook(g)
	t.Cleanup(func() { _ = rdb.Close() })
	return New(rdb, Options{Window: 2 * time.Minute}), g
}

// queued returns how many calls wait for the next flush.
func (p *publisher) queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// idle reports whether no flush is in flight and nothing is queued.
func (p *publisher) idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.busy && len(p.queue) == 0
}

// awaitQueued waits until n calls are queued.
func awaitQueued(t *testing.T, p *publisher, n int) {
	t.Helper()
	awaitPublisher(t, func() bool { return p.queued() == n }, func() string {
		return fmt.Sprintf("%d calls queued, want %d", p.queued(), n)
	})
}

// awaitBusy waits until a call leads a flush.
func awaitBusy(t *testing.T, p *publisher) {
	t.Helper()
	awaitPublisher(t, func() bool { return !p.idle() }, func() string { return "no call leads a flush" })
}

// awaitPublisher waits up to 10 s for done, then fails with why's text.
func awaitPublisher(t *testing.T, done func() bool, why func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatal(why())
		}
		time.Sleep(time.Millisecond)
	}
}

// subscriber collects the payloads published on proto.Channel.
type subscriber struct {
	ps *redis.PubSub
}

func subscribeChannel(t *testing.T, addr string) *subscriber {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ps := rdb.Subscribe(ctx, proto.Channel)
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return &subscriber{ps: ps}
}

// until returns the events of the payloads received up to and including
// the broadcast named marker, which the caller publishes last.
func (s *subscriber) until(t *testing.T, marker string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var events []string
	for {
		msg, err := s.ps.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receive after %d messages: %v", len(events), err)
		}
		d, err := proto.DecodeDispatch([]byte(msg.Payload))
		if err != nil {
			t.Fatalf("the gateway would reject %s: %v", msg.Payload, err)
		}
		events = append(events, d.Event)
		if d.Event == marker {
			return events
		}
	}
}

// dispatch makes one call of the shape tests use: a batch of "m<id>" and
// "s<id>" (sendMessage's), or a single "u<id>".
func dispatch(ctx context.Context, d *Dispatcher, id int, batch bool) error {
	if !batch {
		return d.ToUsers(ctx, []string{"bob"}, fmt.Sprintf("u%d", id), nil)
	}
	return d.Batch(ctx, func(b event.Dispatcher) error {
		if err := b.ToUsers(ctx, []string{"bob"}, fmt.Sprintf("m%d", id), nil); err != nil {
			return err
		}
		return b.ToUsers(ctx, []string{"alice"}, fmt.Sprintf("s%d", id), nil)
	})
}

// TestGathersCallsQueuedWhileInFlight: the calls that arrive while a
// pipeline is in flight all go in the next one, merged into one script
// call, and each caller gets its own result.
func TestGathersCallsQueuedWhileInFlight(t *testing.T) {
	srv := testkit.StartRedis(t)
	sub := subscribeChannel(t, srv.Addr())
	d, g := newGatedDispatcher(t, srv.Addr())
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { first <- d.Broadcast(ctx, "first", nil) }()
	if got := g.next(t); strings.Join(got, " ") != "evalsha/1" {
		t.Fatalf("first pipeline %v, want one script call: an idle publisher writes at once", got)
	}
	const calls = 8 // even ids batches, odd ones single
	errs := make(chan error, calls)
	for id := range calls {
		go func() { errs <- dispatch(ctx, d, id, id%2 == 0) }()
	}
	awaitQueued(t, &d.pub, calls)
	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatalf("first: %v", err)
	}

	// 4 batches of 2 dispatches and 4 single ones, merged into one call of
	// the script.
	if got := g.next(t); strings.Join(got, " ") != "evalsha/12" {
		t.Fatalf("second pipeline %v: want the %d queued calls in one script call of 12 dispatches", got, calls)
	}
	g.release <- struct{}{}
	for range calls {
		if err := <-errs; err != nil {
			t.Fatalf("queued call: %v", err)
		}
	}

	go func() { g.next(t); g.release <- struct{}{} }()
	if err := d.Broadcast(ctx, "marker", nil); err != nil {
		t.Fatal(err)
	}
	events := sub.until(t, "marker")
	checkPublished(t, events, calls, nil)
	if !d.pub.idle() {
		t.Fatal("publisher not idle after every call returned")
	}
}

// checkPublished checks the events between "first" (if any) and the
// marker: each id below calls exactly once unless maybe[id] (then at most
// once), a batch's two events next to each other and in order.
func checkPublished(t *testing.T, events []string, calls int, returned map[int]error) {
	t.Helper()
	seen := map[string]int{}
	for i, e := range events {
		seen[e]++
		var id int
		if _, err := fmt.Sscanf(e, "m%d", &id); err == nil && (i+1 == len(events) || events[i+1] != fmt.Sprintf("s%d", id)) {
			t.Fatalf("%s not followed by its s%d: %v", e, id, events)
		}
		if _, err := fmt.Sscanf(e, "s%d", &id); err == nil && (i == 0 || events[i-1] != fmt.Sprintf("m%d", id)) {
			t.Fatalf("%s not preceded by its m%d: %v", e, id, events)
		}
	}
	for id := range calls {
		name := fmt.Sprintf("u%d", id)
		if id%2 == 0 {
			name = fmt.Sprintf("m%d", id)
		}
		n := seen[name]
		err, failed := returned[id]
		switch {
		case n > 1:
			t.Errorf("%s published %d times", name, n)
		case n == 0 && (!failed || err == nil):
			t.Errorf("%s not published, but its call succeeded", name)
		}
	}
}

// TestContextEndsWhileWaiting: a call whose context ends while it is queued
// returns the context's error at once and is never written; one whose
// context ends while its pipeline is in flight returns at once too, unless
// it is the call whose goroutine writes that pipeline.
func TestContextEndsWhileWaiting(t *testing.T) {
	srv := testkit.StartRedis(t)
	sub := subscribeChannel(t, srv.Addr())
	d, g := newGatedDispatcher(t, srv.Addr())
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { first <- d.Broadcast(ctx, "first", nil) }()
	g.next(t)

	// Even ids are batches, odd ones single publishes. 0 and 1 give up
	// while queued; 2, the oldest left, writes the next pipeline, with 3 in
	// it, which gives up while it is in flight.
	const calls = 4
	var (
		cancels [calls]context.CancelFunc
		errs    [calls]chan error
	)
	for id := range calls {
		var callCtx context.Context
		callCtx, cancels[id] = context.WithCancel(ctx)
		defer cancels[id]()
		errs[id] = make(chan error, 1)
		go func() { errs[id] <- dispatch(callCtx, d, id, id%2 == 0) }()
		awaitQueued(t, &d.pub, id+1) // in this order
	}
	for id := range 2 {
		cancels[id]()
		err := <-errs[id] // before the first pipeline is let go
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("call %d: %v, want context.Canceled", id, err)
		}
		if w := event.WireError(err); w.Code != proto.CodeUnavailable {
			t.Fatalf("call %d: code %s", id, w.Code)
		}
	}
	if n := d.pub.queued(); n != 2 {
		t.Fatalf("%d calls queued after two gave up, want 2", n)
	}
	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got := g.next(t); strings.Join(got, " ") != "evalsha/3" {
		t.Fatalf("second pipeline %v, want calls 2 and 3 only (3 dispatches, merged)", got)
	}
	cancels[3]()
	if err := <-errs[3]; !errors.Is(err, context.Canceled) {
		t.Fatalf("call 3: %v, want context.Canceled", err)
	}
	g.release <- struct{}{}
	if err := <-errs[2]; err != nil {
		t.Fatalf("call 2: %v", err)
	}

	go func() { g.next(t); g.release <- struct{}{} }()
	if err := d.Broadcast(ctx, "marker", nil); err != nil {
		t.Fatal(err)
	}
	// Call 3 was written, so it is published although it returned early.
	if got, want := strings.Join(sub.until(t, "marker"), " "), "first m2 s2 u3 marker"; got != want {
		t.Fatalf("published %q, want %q", got, want)
	}
	if !d.pub.idle() {
		t.Fatal("publisher not idle after every call returned")
	}
}

// TestConcurrentCallersWithDeadlines: many callers, some of whose deadlines
// end while they are queued, in flight, or handed the lead. Every caller
// returns; one that succeeded was published once, one that failed (with its
// context's error only) at most once; no transaction is split; and the
// publisher is idle at the end.
func TestConcurrentCallersWithDeadlines(t *testing.T) {
	srv := testkit.StartRedis(t)
	sub := subscribeChannel(t, srv.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	d := New(rdb, Options{Window: 2 * time.Minute})

	const goroutines, each = 64, 40
	var mu sync.Mutex
	returned := map[int]error{}
	var wg sync.WaitGroup
	for gr := range goroutines {
		wg.Go(func() {
			for i := range each {
				id := gr*each + i
				// A third have no deadline; the rest one of up to 2 ms,
				// around a round trip's time under this load.
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if id%3 != 0 {
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rand.IntN(2000))*time.Microsecond)
				}
				err := dispatch(ctx, d, id, id%2 == 0)
				cancel()
				mu.Lock()
				returned[id] = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	var failed int
	for id, err := range returned {
		if err == nil {
			continue
		}
		failed++
		if id%3 == 0 || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d: %v; only deadlines end calls here", id, err)
		}
	}
	t.Logf("%d of %d calls ran out of time", failed, goroutines*each)
	if err := d.Broadcast(context.Background(), "marker", nil); err != nil {
		t.Fatal(err)
	}
	checkPublished(t, sub.until(t, "marker"), goroutines*each, returned)
	if !d.pub.idle() {
		t.Fatal("publisher not idle after every call returned")
	}
}

// TestRedisDownConcurrentCallers: with Redis gone, every one of concurrent
// callers gets unavailable, and nothing is left queued.
func TestRedisDownConcurrentCallers(t *testing.T) {
	// A port nothing listens on: every dial is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	d := New(rdb, Options{Window: 2 * time.Minute})

	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for id := range cap(errs) {
		wg.Go(func() { errs <- dispatch(context.Background(), d, id, id%2 == 0) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if w := event.WireError(err); w == nil || w.Code != proto.CodeUnavailable {
			t.Fatalf("got %v, want unavailable", err)
		}
	}
	if !d.pub.idle() {
		t.Fatal("publisher not idle after every call returned")
	}
}

// TestUnreachableFailsTheQueue: when a pipeline cannot reach Redis, the
// calls that queued while it tried fail with it at once, unavailable and
// unwritten, rather than make another attempt each; the next call tries
// again, and succeeds once Redis is back.
func TestUnreachableFailsTheQueue(t *testing.T) {
	srv := testkit.StartRedis(t)
	d, g := newGatedDispatcher(t, srv.Addr())
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { first <- d.Broadcast(ctx, "first", nil) }()
	g.next(t)
	const calls = 4
	errs := make(chan error, calls)
	for id := range calls {
		go func() { errs <- dispatch(ctx, d, id, id%2 == 0) }()
	}
	awaitQueued(t, &d.pub, calls)
	port := srv.Port
	srv.Stop()
	g.release <- struct{}{}

	if w := event.WireError(<-first); w == nil || w.Code != proto.CodeUnavailable {
		t.Fatalf("first: %v, want unavailable", w)
	}
	for range calls {
		select {
		case err := <-errs:
			if w := event.WireError(err); w == nil || w.Code != proto.CodeUnavailable {
				t.Fatalf("queued call: %v, want unavailable", err)
			}
		case names := <-g.entered:
			t.Fatalf("a second pipeline %v was tried for the queued calls", names)
		}
	}
	if !d.pub.idle() {
		t.Fatal("publisher not idle after every call returned")
	}

	testkit.StartRedisOn(t, port)
	sub := subscribeChannel(t, srv.Addr())
	// The new server has no scripts: load it past the gate, which holds
	// one pipeline per attempt below.
	loader := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = loader.Close() })
	if err := streams.PublishScript.Load(ctx, loader).Err(); err != nil {
		t.Fatal(err)
	}
	// go-redis's pool, after failed dials, may fail at once for up to a
	// second while it probes the server in the background.
	deadline := time.Now().Add(10 * time.Second)
	for {
		done := make(chan error, 1)
		go func() { done <- d.Broadcast(ctx, "marker", nil) }()
		g.next(t)
		g.release <- struct{}{}
		if err := <-done; err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("dispatches still fail 10s after Redis is back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := strings.Join(sub.until(t, "marker"), " "); got != "marker" {
		t.Fatalf("published %q after the outage, want only the marker", got)
	}
}

// TestHungRedisEndsByTheDeadline: a Redis that accepts and never answers
// fails a dispatch by the deadline of its caller, not by go-redis's read
// timeout (a minute here), so that a handler can still answer the gateway
// before the gateway gives up; and as a timeout, since the caller ran out
// of time: no outage is logged, and the call queued behind it is not
// failed with it but gets its own attempt, which ends by its own deadline.
func TestHungRedisEndsByTheDeadline(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true,
		DialTimeout: time.Minute, ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	t.Cleanup(func() { _ = rdb.Close() })
	core, logs := observer.New(zap.InfoLevel)
	d := New(rdb, Options{Window: 2 * time.Minute}).LogOutages(zap.New(core))
	if err := d.Broadcast(context.Background(), "warm", nil); err != nil {
		t.Fatal(err) // a pooled connection, for the pipeline below
	}
	srv.Pause(t)

	// Deadlines far apart from each other and from now, so the leader
	// leads and the other queues behind it however slow the machine.
	start := time.Now()
	const leaderTime, behindTime = time.Second, 2 * time.Second
	leaderCtx, cancel := context.WithTimeout(context.Background(), leaderTime)
	defer cancel()
	behindCtx, cancel2 := context.WithTimeout(context.Background(), behindTime)
	defer cancel2()
	leader := make(chan error, 1)
	go func() { leader <- d.Broadcast(leaderCtx, "hung", nil) }()
	awaitBusy(t, &d.pub)
	behind := make(chan error, 1)
	go func() { behind <- d.Broadcast(behindCtx, "behind", nil) }()
	awaitQueued(t, &d.pub, 1)
	for _, call := range []struct {
		name   string
		result chan error
		after  time.Duration
	}{{"leader", leader, leaderTime}, {"queued", behind, behindTime}} {
		select {
		case err := <-call.result:
			took := time.Since(start)
			t.Logf("%s: %v after %s", call.name, err, took)
			if w := event.WireError(err); w == nil || w.Code != proto.CodeTimeout {
				t.Errorf("%s: %v, want timeout", call.name, err)
			}
			if took < call.after {
				t.Errorf("%s ended after %s, before its deadline of %s: cut short", call.name, took, call.after)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s still waits for the hung Redis 30 s after its %s deadline", call.name, call.after)
		}
	}
	if !d.pub.idle() {
		t.Fatal("publisher not idle after every call returned")
	}
	if outages := logs.FilterMessageSnippet("redis"); outages.Len() != 0 {
		t.Errorf("%d lines logged for callers that ran out of time, want none (no outage): %v", outages.Len(), outages.All())
	}
}

// TestLeaderPanic: when go-redis panics in a flush, the panic reaches the
// caller that was writing, the calls queued behind it fail instead of
// waiting for a leader that is gone, and the next call is written.
func TestLeaderPanic(t *testing.T) {
	srv := testkit.StartRedis(t)
	sub := subscribeChannel(t, srv.Addr())
	d, g := newGatedDispatcher(t, srv.Addr())
	ctx := context.Background()

	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		_ = d.Broadcast(ctx, "first", nil)
	}()
	g.next(t)
	queued := make(chan error, 1)
	go func() { queued <- dispatch(ctx, d, 1, false) }()
	awaitQueued(t, &d.pub, 1)
	g.panics.Store(true)
	g.release <- struct{}{}

	if p := <-panicked; p != "go-redis broke" {
		t.Fatalf("the writing caller recovered %v, want go-redis's panic", p)
	}
	select {
	case err := <-queued:
		if w := event.WireError(err); w == nil || w.Code != proto.CodeUnavailable {
			t.Fatalf("queued call: %v, want unavailable", err)
		}
	case names := <-g.entered:
		t.Fatalf("pipeline %v tried for the queued call of a panicked flush", names)
	case <-time.After(10 * time.Second):
		t.Fatal("the queued call still waits for the leader that panicked")
	}
	if !d.pub.idle() {
		t.Fatal("publisher not idle after the panic")
	}

	go func() { g.next(t); g.release <- struct{}{} }()
	if err := d.Broadcast(ctx, "marker", nil); err != nil {
		t.Fatalf("after the panic: %v", err)
	}
	if got := strings.Join(sub.until(t, "marker"), " "); got != "marker" {
		t.Fatalf("published %q, want only the marker", got)
	}
}

// TestMergedCallsGetTheirOwnPositions: calls queued behind a flush go in
// one script call, and each gets exactly the positions of its own targets,
// in its target order, continuing each user's offsets; a call too big to
// merge goes in a script call of its own, in its place.
func TestMergedCallsGetTheirOwnPositions(t *testing.T) {
	srv := testkit.StartRedis(t)
	d, g := newGatedDispatcher(t, srv.Addr())
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { first <- d.Broadcast(ctx, "first", nil) }()
	g.next(t)

	var many []string // more users than one merged call takes
	for i := range maxMergedKeys/2 + 1 {
		many = append(many, fmt.Sprintf("m%d", i))
	}
	calls := [][]string{{"x"}, {"y", "x"}, many, {"x", "z"}}
	type result struct {
		pos []string
		err error
	}
	results := make([]chan result, len(calls))
	for i, users := range calls {
		results[i] = make(chan result, 1)
		go func() {
			keys, args := streams.PublishCall([]*streams.Unit{streams.NewUnit(&proto.Dispatch{Event: "e", Users: users}, true)}, d.window, d.ttl)
			pos, _, err := d.pub.publish(ctx, keys, args)
			results[i] <- result{pos, err}
		}()
		awaitQueued(t, &d.pub, i+1) // in this order
	}
	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(g.next(t), " "), "evalsha/2 evalsha/1 evalsha/1"; got != want {
		t.Fatalf("second pipeline %q, want %q: the first two merged, the big one alone, the last after it", got, want)
	}
	g.release <- struct{}{}

	wantOffsets := [][]uint64{{1}, {1, 2}, nil, {3, 1}}
	for i := range calls {
		r := <-results[i]
		if r.err != nil {
			t.Fatalf("call %d: %v", i, r.err)
		}
		if len(r.pos) != len(calls[i]) {
			t.Fatalf("call %d: %d positions %v, want one per user of %v", i, len(r.pos), r.pos, calls[i])
		}
		for j, p := range r.pos {
			pp, ok := proto.ParsePos(p)
			if !ok {
				t.Fatalf("call %d: position %q", i, p)
			}
			want := uint64(1)
			if wantOffsets[i] != nil {
				want = wantOffsets[i][j]
			}
			if pp.Off != want {
				t.Errorf("call %d, user %s: offset %d, want %d (positions %v)", i, calls[i][j], pp.Off, want, r.pos)
			}
		}
	}
}

// TestClusterPartitionsInOnePipeline: on a Redis Cluster, a dispatch to
// users of two partitions makes two script calls (one per slot). When one
// master serves both, they go out in one pipeline, whether its publisher
// was idle or busy: one round trip, not one after the other. When two
// masters serve them, each master's goes out in a pipeline of its own, at
// the same time (TestStalledMasterHoldsUpOnlyItsPartitions says why).
func TestClusterPartitionsInOnePipeline(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	ctx := context.Background()
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
	if err := streams.PublishScript.Load(ctx, rdb).Err(); err != nil {
		t.Fatal(err)
	}
	g := newGate()
	rdb.AddHook(g)
	d := New(rdb, Options{Window: 2 * time.Minute})
	master := c.NodeOf(proto.RunKey(proto.PartitionOf("alice")))
	users := []string{"alice"}
	for i := 0; len(users) < 2; i++ {
		u := fmt.Sprintf("bob%d", i)
		if p := proto.PartitionOf(u); p != proto.PartitionOf("alice") && c.NodeOf(proto.RunKey(p)) == master {
			users = append(users, u)
		}
	}
	two := func() error { return d.ToUsers(ctx, users, "message", nil) }
	pub := d.publisherOf(ctx, proto.PartitionOf("alice"))

	// Idle: both calls in the first pipeline.
	done := make(chan error, 1)
	go func() { done <- two() }()
	if got := g.next(t); strings.Join(got, " ") != "evalsha/1 evalsha/1" {
		t.Fatalf("pipeline %v, want both partitions' script calls", got)
	}
	g.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Busy: queued together behind a flush in flight, then both in the
	// next pipeline.
	first := make(chan error, 1)
	go func() { first <- d.ToUsers(ctx, users[:1], "first", nil) }()
	g.next(t)
	go func() { done <- two() }()
	awaitQueued(t, pub, 2)
	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got := g.next(t); strings.Join(got, " ") != "evalsha/1 evalsha/1" {
		t.Fatalf("pipeline %v, want both partitions' script calls", got)
	}
	g.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !pub.idle() {
		t.Fatal("publisher not idle after every call returned")
	}

	// Two masters: both pipelines reach Redis before either is answered.
	var carol string
	for i := 0; carol == ""; i++ {
		if u := fmt.Sprintf("carol%d", i); c.NodeOf(proto.RunKey(proto.PartitionOf(u))) != master {
			carol = u
		}
	}
	go func() { done <- d.ToUsers(ctx, []string{"alice", carol}, "message", nil) }()
	for range 2 {
		if got := g.next(t); strings.Join(got, " ") != "evalsha/1" {
			t.Fatalf("pipeline %v, want one master's script call", got)
		}
	}
	g.release <- struct{}{}
	g.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d.flushing() {
		t.Fatal("a publisher not idle after every call returned")
	}
}

// TestNoAnswerIsNotUnavailable: a call written to a Redis that answers
// after go-redis's read timeout, though before its caller's deadline, is
// run by Redis all the same. Its caller gets timeout ("it may have been
// delivered"), not unavailable ("nothing was delivered, retry"), which
// would have its retry deliver the events twice. The call queued behind
// it, never written, still gets unavailable, and is indeed not run.
func TestNoAnswerIsNotUnavailable(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true,
		ReadTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	d := New(rdb, Options{Window: 2 * time.Minute})
	if err := d.Broadcast(context.Background(), "warm", nil); err != nil {
		t.Fatal(err) // a pooled connection: no dial below
	}
	srv.Pause(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	written := make(chan error, 1)
	go func() { written <- d.ToUsers(ctx, []string{"bob"}, "written", nil) }()
	awaitBusy(t, &d.pub)
	queued := make(chan error, 1)
	go func() { queued <- d.ToUsers(ctx, []string{"carol"}, "queued", nil) }()
	awaitQueued(t, &d.pub, 1)
	errWritten, errQueued := <-written, <-queued
	srv.Continue()

	if w := event.WireError(errWritten); w == nil || w.Code != proto.CodeTimeout {
		t.Errorf("the written call: %v, want timeout (Redis may have run it)", errWritten)
	}
	if w := event.WireError(errQueued); w == nil || w.Code != proto.CodeUnavailable {
		t.Errorf("the queued call: %v, want unavailable (it was never written)", errQueued)
	}
	check := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = check.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := check.XLen(context.Background(), proto.UserStreamKey("bob")).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's stream holds %d events, want the 1 written to Redis", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n, err := check.XLen(context.Background(), proto.UserStreamKey("carol")).Result(); err != nil || n != 0 {
		t.Errorf("carol's stream holds %d events (%v), want none: the queued call was answered unavailable", n, err)
	}
}

// TestCanceledWhileQueuedIsNoOutage: a caller that hangs up while its
// dispatch is queued behind a round trip in flight gets its context's
// error; Redis is not marked unreachable (nothing logged, no part of it
// down), so neither the outage log nor a probe's view of Redis is fed by
// a caller going away.
func TestCanceledWhileQueuedIsNoOutage(t *testing.T) {
	srv := testkit.StartRedis(t)
	d, g := newGatedDispatcher(t, srv.Addr())
	core, logs := observer.New(zap.DebugLevel)
	d.LogOutages(zap.New(core))
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { first <- d.ToUsers(ctx, []string{"alice"}, "first", nil) }()
	g.next(t)
	callCtx, cancel := context.WithCancel(ctx)
	queued := make(chan error, 1)
	go func() {
		_, err := d.Dispatch(callCtx, Message{Event: "second", Users: []string{"bob"}})
		queued <- err
	}()
	awaitQueued(t, &d.pub, 1)
	cancel()
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Fatalf("queued call: %v, want context.Canceled", err)
	}
	if down := d.down.Load(); down != 0 {
		t.Fatalf("down %b after a caller hung up, want 0", down)
	}
	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if outage := logs.FilterMessageSnippet("redis"); outage.Len() != 0 {
		t.Fatalf("logged %v for a caller that hung up", outage.All())
	}
}
