package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// streamLen returns how many events user's stream holds in srv.
func streamLen(t *testing.T, srv *testkit.Redis, user string) int64 {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	n, err := c.XLen(context.Background(), proto.UserStreamKey(user)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return n
}

// TestIdempotencyKeyOnce: a Dispatch repeated with its IdempotencyKey
// returns the first one's positions, Replayed, and is delivered once; a
// retry of a caller whose first attempt timed out no longer delivers
// twice. The key with another message is refused (ErrKeyReused,
// bad_request), an invalid key too, and neither dispatches.
func TestIdempotencyKeyOnce(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	d := New(rdb, Options{})
	ctx := context.Background()
	m := Message{Event: "invoice_paid", Args: json.RawMessage(`{"invoice":"in_1"}`), Users: []string{"bob", "carol"}, IdempotencyKey: "inv-1"}

	first, err := d.Dispatch(ctx, m)
	if err != nil || first.Replayed || first.Users["bob"] == "" || first.Users["carol"] == "" {
		t.Fatalf("first: %+v, %v; want positions for bob and carol, not replayed", first, err)
	}
	again, err := d.Dispatch(ctx, m)
	if err != nil || !again.Replayed || !maps.Equal(again.Users, first.Users) {
		t.Fatalf("repeat: %+v, %v; want the first positions %v, replayed", again, err, first.Users)
	}
	if n := streamLen(t, srv, "bob"); n != 1 {
		t.Fatalf("bob's stream holds %d events, want 1", n)
	}

	other := m
	other.Args = json.RawMessage(`{"invoice":"in_2"}`)
	_, err = d.Dispatch(ctx, other)
	if !errors.Is(err, ErrKeyReused) || event.WireError(err).Code != proto.CodeBadRequest {
		t.Fatalf("same key, another message: %v, want ErrKeyReused, bad_request", err)
	}
	for _, k := range []string{"with space", `q"uote`, string(make([]byte, MaxIdempotencyKey+1))} {
		bad := m
		bad.IdempotencyKey = k
		if _, err := d.Dispatch(ctx, bad); event.WireError(err).Code != proto.CodeBadRequest {
			t.Fatalf("key %q: %v, want bad_request", k, err)
		}
	}
	if n := streamLen(t, srv, "bob"); n != 1 {
		t.Fatalf("bob's stream holds %d events, want 1", n)
	}
	// The record is the dispatch API's, kept as long.
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	if ttl, err := c.PTTL(ctx, proto.IdempotencyKey("inv-1")).Result(); err != nil || ttl <= 0 || ttl > IdempotencyTTL {
		t.Fatalf("record's PTTL %v (%v), want within IdempotencyTTL", ttl, err)
	}
}

// TestIdempotencyKeyInFlight: a repeat that comes while the first call
// with its key is in flight waits for it and returns its positions,
// replayed; one whose context ends first gets ErrKeyPending (timeout),
// nothing dispatched.
func TestIdempotencyKeyInFlight(t *testing.T) {
	srv := testkit.StartRedis(t)
	d, g := newGatedDispatcher(t, srv.Addr())
	ctx := context.Background()
	m := Message{Event: "e", Users: []string{"bob"}, IdempotencyKey: "k-flight"}

	type result struct {
		pos Positions
		err error
	}
	first := make(chan result, 1)
	go func() {
		pos, err := d.Dispatch(ctx, m)
		first <- result{pos, err}
	}()
	g.next(t) // the first call's pipeline, held

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err := d.Dispatch(short, m)
	if !errors.Is(err, ErrKeyPending) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrKeyUnknown) ||
		event.WireError(err).Code != proto.CodeTimeout {
		t.Fatalf("repeat out of time while the first runs: %v, want ErrKeyPending (timeout)", err)
	}

	waiter := make(chan result, 1)
	go func() {
		pos, err := d.Dispatch(ctx, m)
		waiter <- result{pos, err}
	}()
	g.release <- struct{}{}
	r1 := <-first
	if r1.err != nil || r1.pos.Replayed {
		t.Fatalf("first: %+v", r1)
	}
	r2 := <-waiter
	if r2.err != nil || !r2.pos.Replayed || r2.pos.Users["bob"] != r1.pos.Users["bob"] {
		t.Fatalf("repeat that waited: %+v, want the first's positions %v, replayed", r2, r1.pos.Users)
	}
	if n := streamLen(t, srv, "bob"); n != 1 {
		t.Fatalf("bob's stream holds %d events, want 1", n)
	}
}

// TestIdempotencyKeyOutcome: a first call that surely delivered nothing
// (its deadline passed while it was queued: ErrNotSent) frees its key, so
// a retry dispatches; one canceled in flight (it may have been
// delivered) leaves its key unknown, and a retry gets ErrKeyUnknown at
// once rather than delivering twice.
func TestIdempotencyKeyOutcome(t *testing.T) {
	srv := testkit.StartRedis(t)
	d, g := newGatedDispatcher(t, srv.Addr())
	ctx := context.Background()

	lead := make(chan error, 1)
	go func() { lead <- d.Broadcast(ctx, "lead", nil) }()
	g.next(t)
	queued, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	notSentMsg := Message{Event: "e", Users: []string{"carol"}, IdempotencyKey: "k-notsent"}
	if _, err := d.Dispatch(queued, notSentMsg); !errors.Is(err, ErrNotSent) {
		t.Fatalf("queued past its deadline: %v, want ErrNotSent", err)
	}
	g.release <- struct{}{}
	if err := <-lead; err != nil {
		t.Fatal(err)
	}
	go func() { g.next(t); g.release <- struct{}{} }()
	if pos, err := d.Dispatch(ctx, notSentMsg); err != nil || pos.Replayed {
		t.Fatalf("retry after ErrNotSent: %+v, %v; want dispatched", pos, err)
	}
	if n := streamLen(t, srv, "carol"); n != 1 {
		t.Fatalf("carol's stream holds %d events, want 1", n)
	}

	// A keyed call canceled in flight waits (a bounded while) for the
	// round trip carrying it: delivered, it returns its positions, which
	// the key records; held past that while, its outcome is unknown.
	pos, err := inFlightCanceled(t, d, g, Message{Event: "e", Users: []string{"dave"}, IdempotencyKey: "k-late"}, false)
	if err != nil || pos.Users["dave"] == "" {
		t.Fatalf("canceled in flight, then delivered: %+v, %v; want its positions", pos, err)
	}
	again, err := d.Dispatch(ctx, Message{Event: "e", Users: []string{"dave"}, IdempotencyKey: "k-late"})
	if err != nil || !again.Replayed || again.Users["dave"] != pos.Users["dave"] {
		t.Fatalf("retry after a late delivery: %+v, %v; want %v replayed", again, err, pos.Users)
	}

	unknownMsg := Message{Event: "e", Users: []string{"frank"}, IdempotencyKey: "k-unknown"}
	if _, err := inFlightCanceled(t, d, g, unknownMsg, true); event.WireError(err).Code != proto.CodeTimeout || errors.Is(err, ErrNotSent) {
		t.Fatalf("canceled in flight, held: %v, want timeout", err)
	}
	_, err = d.Dispatch(ctx, unknownMsg)
	if !errors.Is(err, ErrKeyUnknown) || event.WireError(err).Code != proto.CodeTimeout {
		t.Fatalf("retry after an unknown outcome: %v, want ErrKeyUnknown (timeout)", err)
	}
	for user, want := range map[string]int64{"dave": 1, "frank": 1} {
		if n := streamLen(t, srv, user); n != want {
			t.Fatalf("%s's stream holds %d events, want %d: delivered once, not again", user, n, want)
		}
	}
}

// inFlightCanceled dispatches m in the pipeline of another call, which
// it lets go once m's caller has canceled it and waits for its outcome;
// hold keeps it until Dispatch has returned (out of time to wait).
func inFlightCanceled(t *testing.T, d *Dispatcher, g *gate, m Message, hold bool) (Positions, error) {
	t.Helper()
	ctx := context.Background()
	lead := make(chan error, 1)
	go func() { lead <- d.Broadcast(ctx, "lead", nil) }()
	g.next(t)
	leadDone := make(chan error, 1)
	go func() {
		_, err := d.Dispatch(ctx, Message{Event: "e", Users: []string{"erin"}})
		leadDone <- err
	}()
	awaitQueued(t, &d.pub, 1)
	inFlight, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		pos Positions
		err error
	}
	done := make(chan result, 1)
	go func() {
		pos, err := d.Dispatch(inFlight, m)
		done <- result{pos, err}
	}()
	awaitQueued(t, &d.pub, 2)
	g.release <- struct{}{}
	if err := <-lead; err != nil {
		t.Fatal(err)
	}
	g.next(t) // the pipeline carrying m is written, held
	cancel()
	var r result
	if hold {
		r = <-done
		g.release <- struct{}{}
	} else {
		testkit.Eventually(t, 10*time.Second, "the canceled call awaits its outcome", func() bool {
			buf := make([]byte, 1<<20)
			return bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("dispatch.awaitOutcome("))
		})
		g.release <- struct{}{}
		r = <-done
	}
	if err := <-leadDone; err != nil {
		t.Fatal(err)
	}
	return r.pos, r.err
}
