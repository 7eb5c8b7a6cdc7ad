package natserve_test

import (
	"context"
	"errors"
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

// TestIdemNotSentFreesKey: a handler whose dispatch was never sent, its
// time having run out first (dispatch.ErrNotSent), is answered
// unavailable and its idempotency key freed, so the client's repeat runs
// it: nothing was delivered. The key was kept as if the outcome were
// unknown (any failure once the request's time ran out), and the repeat
// was refused with timeout though the first reply said a retry was safe.
func TestIdemNotSentFreesKey(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, srv := idemStore(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	d := dispatch.New(rdb, dispatch.Options{})
	var calls atomic.Int32
	h := event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
		if calls.Add(1) == 1 {
			<-ctx.Done() // its time runs out before it dispatches
		}
		_, err := d.Dispatch(ctx, dispatch.Message{Event: "note", Users: []string{r.User}})
		if err != nil {
			if !errors.Is(err, dispatch.ErrNotSent) {
				t.Errorf("dispatch after the deadline: %v, want ErrNotSent", err)
			}
			return err
		}
		return r.Respond(map[string]any{"call": calls.Load()})
	})
	serve(t, ns, h, zap.NewNop(), natserve.Config{Idem: store, Timeout: 200 * time.Millisecond})
	nc := connect(t, ns)

	first := keyed(t, nc, "alice", "send", `{}`, "k1")
	if !strings.Contains(first, `"code":"unavailable"`) {
		t.Fatalf("first reply %s, want unavailable (nothing sent)", first)
	}
	again := keyed(t, nc, "alice", "send", `{}`, "k1")
	if again != `{"ok":true,"result":{"call":2}}` {
		t.Fatalf("repeat with the key got %s, want the handler run again (call 2)", again)
	}
}
