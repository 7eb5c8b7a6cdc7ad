package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestCanceledInFlightIsNotUnavailable: a Dispatch whose caller cancels
// its context while the pipeline carrying it is in flight returns at
// once, and its call is published all the same, so its error must not
// read as unavailable ("nothing was delivered: a retry is safe"), which
// event.WireError makes of a bare context.Canceled: it is timeout (it may
// have been delivered), still context.Canceled to errors.Is. A Dispatch
// canceled while queued, never written, stays unavailable. A billing
// service whose request context was canceled retried on unavailable and
// delivered its event twice.
func TestCanceledInFlightIsNotUnavailable(t *testing.T) {
	srv := testkit.StartRedis(t)
	d, g := newGatedDispatcher(t, srv.Addr())
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { first <- d.Broadcast(ctx, "first", nil) }()
	g.next(t)

	// lead writes the next pipeline and inFlight rides in it; queued gives
	// up before it is written.
	leadDone := make(chan error, 1)
	go func() {
		_, err := d.Dispatch(ctx, Message{Event: "e", Users: []string{"alice"}})
		leadDone <- err
	}()
	awaitQueued(t, &d.pub, 1)
	inFlightCtx, cancelInFlight := context.WithCancel(ctx)
	defer cancelInFlight()
	inFlightDone := make(chan error, 1)
	go func() {
		_, err := d.Dispatch(inFlightCtx, Message{Event: "e", Users: []string{"bob"}})
		inFlightDone <- err
	}()
	awaitQueued(t, &d.pub, 2)
	queuedCtx, cancelQueued := context.WithCancel(ctx)
	queuedDone := make(chan error, 1)
	go func() {
		_, err := d.Dispatch(queuedCtx, Message{Event: "e", Users: []string{"carol"}})
		queuedDone <- err
	}()
	awaitQueued(t, &d.pub, 3)

	cancelQueued()
	err := <-queuedDone
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled while queued: %v, want context.Canceled", err)
	}
	if code := event.WireError(err).Code; code != proto.CodeUnavailable {
		t.Fatalf("canceled while queued: code %s, want unavailable (never written)", code)
	}
	if !errors.Is(err, ErrNotSent) {
		t.Fatalf("canceled while queued: %v, want ErrNotSent", err)
	}

	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	g.next(t) // lead's pipeline, carrying inFlight, is written
	cancelInFlight()
	err = <-inFlightDone
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled in flight: %v, want context.Canceled", err)
	}
	if code := event.WireError(err).Code; code != proto.CodeTimeout {
		t.Fatalf("canceled in flight: %v, code %s, want timeout: it may have been delivered", err, code)
	}
	if errors.Is(err, ErrNotSent) {
		t.Fatalf("canceled in flight: %v wraps ErrNotSent, but it may have been delivered", err)
	}
	g.release <- struct{}{}
	if err := <-leadDone; err != nil {
		t.Fatalf("leader: %v", err)
	}
	check := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = check.Close() })
	for user, want := range map[string]int64{"bob": 1, "carol": 0} {
		if n, err := check.XLen(ctx, proto.UserStreamKey(user)).Result(); err != nil || n != want {
			t.Fatalf("%s's stream has %d entries (%v), want %d", user, n, err, want)
		}
	}
}

// TestExpiredWhileQueuedIsNotSent: a Dispatch whose deadline passes while
// it waits behind another caller's pipeline is never written, so its
// error wraps ErrNotSent and reads as unavailable (a retry is safe),
// still context.DeadlineExceeded to errors.Is; it read as timeout ("it
// may have been delivered"), and a caller could not tell it from a call
// Redis took. Its user's stream stays empty.
func TestExpiredWhileQueuedIsNotSent(t *testing.T) {
	srv := testkit.StartRedis(t)
	d, g := newGatedDispatcher(t, srv.Addr())
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { first <- d.Broadcast(ctx, "first", nil) }()
	g.next(t) // held in flight until released

	qctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err := d.Dispatch(qctx, Message{Event: "e", Users: []string{"carol"}})
	if !errors.Is(err, ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired while queued: %v, want ErrNotSent and context.DeadlineExceeded", err)
	}
	if code := event.WireError(err).Code; code != proto.CodeUnavailable {
		t.Fatalf("expired while queued: code %s, want unavailable (never written)", code)
	}
	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	check := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = check.Close() })
	if n, err := check.XLen(ctx, proto.UserStreamKey("carol")).Result(); err != nil || n != 0 {
		t.Fatalf("carol's stream has %d entries (%v), want 0", n, err)
	}
}

// TestExpiredReadingRoomsIsNotSent: a Dispatch to rooms whose context
// ends before it is published (here, before the members are read) wraps
// ErrNotSent: nothing was written.
func TestExpiredReadingRoomsIsNotSent(t *testing.T) {
	srv := testkit.StartRedis(t)
	d, _ := newGatedDispatcher(t, srv.Addr())
	for _, rooms := range [][]string{{"a"}, {"a", "b"}} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := d.Dispatch(ctx, Message{Event: "e", Rooms: rooms})
		if !errors.Is(err, ErrNotSent) || !errors.Is(err, context.Canceled) {
			t.Fatalf("rooms %v, canceled: %v, want ErrNotSent and context.Canceled", rooms, err)
		}
	}
}
