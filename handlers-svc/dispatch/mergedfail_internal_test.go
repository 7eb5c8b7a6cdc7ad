package dispatch

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestMergedCallFailsOnlyItsOwnDispatch shows a bug (review
// h-dispatchreview): concurrent callers' publishes are merged into one
// script call (mergeCalls), and when Redis fails that script while it
// runs because of one caller's keys (WRONGTYPE on a user's stream meta
// that something else overwrote), every caller merged with it gets that
// error, handler_error, whatever happened to its own dispatch:
//
//   - alice's dispatch, merged before it, ran: it is recorded and
//     published, yet her caller is told it failed, and a retry (her
//     client's, or the handler's) delivers it a second time;
//   - carol's dispatch, merged after it, never ran: nothing was
//     delivered, yet her caller is told handler_error, "may have been
//     delivered", not retry-safe (NotDelivered false); with an
//     idempotency key the key is marked unknown for IdempotencyTTL, so
//     a retry with it gets ErrKeyUnknown and the event is never sent.
//
// Alone, neither would have failed: one user's damaged key fails the
// unrelated dispatches that happen to share its round trip. Expected:
// each caller gets its own dispatch's outcome (nil for alice's; for
// carol's nil, or at worst a retry-safe error whose retry delivers it).
func TestMergedCallFailsOnlyItsOwnDispatch(t *testing.T) {
	srv := testkit.StartRedis(t)
	d, g := newGatedDispatcher(t, srv.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	// Something else wrote broken's meta key: the script's HMGET on it
	// fails with WRONGTYPE.
	if err := rdb.Set(ctx, proto.UserMetaKey("broken"), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}

	// A first dispatch holds the publisher while the three others queue,
	// in order, so that they go out merged into one script call.
	lead := make(chan error, 1)
	go func() { lead <- d.ToUsers(ctx, []string{"lead"}, "first", nil) }()
	if got := g.next(t); strings.Join(got, " ") != "evalsha/1" {
		t.Fatalf("first pipeline %v", got)
	}
	type result struct {
		pos Positions
		err error
	}
	alice, broken, carol := make(chan error, 1), make(chan error, 1), make(chan result, 1)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	go func() { alice <- d.ToUsers(dctx, []string{"alice"}, "note", nil) }()
	awaitQueued(t, &d.pub, 1)
	go func() { broken <- d.ToUsers(dctx, []string{"broken"}, "note", nil) }()
	awaitQueued(t, &d.pub, 2)
	carolMsg := Message{Event: "note", Users: []string{"carol"}, IdempotencyKey: "note/carol/1"}
	go func() {
		pos, err := d.Dispatch(dctx, carolMsg)
		carol <- result{pos, err}
	}()
	awaitQueued(t, &d.pub, 3)
	g.release <- struct{}{}
	if err := <-lead; err != nil {
		t.Fatalf("first dispatch: %v", err)
	}
	if got := g.next(t); strings.Join(got, " ") != "evalsha/3" {
		t.Fatalf("second pipeline %v, want the three calls merged into one script call", got)
	}
	g.release <- struct{}{}

	if w := event.WireError(<-broken); w == nil || w.Code != proto.CodeHandlerError {
		t.Errorf("broken's own dispatch: %v, want handler_error", w)
	}
	aliceErr := <-alice
	if n := streamLen(t, srv, "alice"); n != 1 || aliceErr != nil {
		t.Errorf("alice's dispatch: recorded %d times, and her caller told %v; want recorded once and nil (it was delivered)", n, aliceErr)
	}
	c := <-carol
	n := streamLen(t, srv, "carol")
	switch {
	case n == 1 && c.err == nil:
		return // delivered and said so
	case n == 0 && c.err != nil && !NotDelivered(c.err):
		t.Errorf("carol's dispatch: nothing recorded, and her caller told %v (not retry-safe: NotDelivered false)", c.err)
	case n != 0 || c.err == nil:
		t.Fatalf("carol's dispatch: recorded %d times, caller told %v", n, c.err)
	}
	// Her retry with the key, once broken's round trip is over: nothing
	// was delivered, so it should dispatch now.
	stop := make(chan struct{})
	defer close(stop)
	go func() { // let the retry's pipelines through, if it makes any
		for {
			select {
			case <-g.entered:
				g.release <- struct{}{}
			case <-stop:
				return
			}
		}
	}()
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	_, err := d.Dispatch(rctx, carolMsg)
	if errors.Is(err, ErrKeyUnknown) {
		t.Errorf("carol's retry with her idempotency key: %v; want it dispatched (nothing was), not refused until the key expires in %s", err, IdempotencyTTL)
	} else if err != nil || streamLen(t, srv, "carol") != 1 {
		t.Errorf("carol's retry: %v, %d recorded", err, streamLen(t, srv, "carol"))
	}
}
