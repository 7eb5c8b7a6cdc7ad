package natserve_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/natserve"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestUnsentAfterDeliveredIsNotUnavailable: a handler that delivered one
// dispatch, ran out of time and returned its second dispatch's error,
// unavailable (that one was never sent), is answered timeout, and its
// idempotency key is kept: the client's repeat is refused instead of
// running the handler again and delivering the first event twice. Before,
// the key was freed and the repeat ran it (a review's reproduction).
func TestUnsentAfterDeliveredIsNotUnavailable(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, srv := idemStore(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	d := dispatch.New(rdb, dispatch.Options{})
	var calls, delivered atomic.Int32
	h := event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
		calls.Add(1)
		if _, err := d.Dispatch(ctx, dispatch.Message{Event: "first", Users: []string{"bob"}}); err != nil {
			return err
		}
		delivered.Add(1)
		<-ctx.Done() // out of time before the second dispatch
		_, err := d.Dispatch(ctx, dispatch.Message{Event: "second", Users: []string{"bob"}})
		if !dispatch.NotDelivered(err) {
			t.Errorf("the second dispatch: %v, want an error saying it was not sent", err)
		}
		return err // as handlers.md allows: the dispatch's error, unchanged
	})
	serve(t, ns, h, zap.NewNop(), natserve.Config{Idem: store, Timeout: 200 * time.Millisecond})
	nc := connect(t, ns)
	first := keyed(t, nc, "alice", "send", `{}`, "k1")
	if !strings.Contains(first, `"code":"timeout"`) || !strings.Contains(first, "some of its events may have been delivered") {
		t.Fatalf("first reply %s, want timeout: an event may have been delivered", first)
	}
	again := keyed(t, nc, "alice", "send", `{}`, "k1")
	if !strings.Contains(again, `"code":"timeout"`) {
		t.Errorf("the repeat: %s, want timeout (outcome unknown)", again)
	}
	if c, n := calls.Load(), delivered.Load(); c != 1 || n != 1 {
		t.Errorf("the handler ran %d times and its first dispatch was delivered %d times, want once each", c, n)
	}

	// Without an idempotency key the answer is the same: unavailable
	// would tell the client that nothing was done.
	plain := keyed(t, nc, "alice", "send", `{}`, "")
	if !strings.Contains(plain, `"code":"timeout"`) {
		t.Errorf("without a key: %s, want timeout", plain)
	}
}
