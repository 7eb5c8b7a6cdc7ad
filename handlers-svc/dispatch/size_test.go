package dispatch_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestOversizedDispatchAttack: a dispatch whose args pass
// proto.MaxDispatchArgs is refused with bad_request, alone or in a batch,
// and nothing of it is published; one exactly at the limit is published.
func TestOversizedDispatchAttack(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := newClient(t, srv.Addr())
	ps := subscribe(t, rdb)
	d := dispatch.New(rdb, dispatch.Options{Window: dispatch.NoHistory})
	ctx := context.Background()
	// A JSON string of n bytes, quotes included.
	args := func(n int) json.RawMessage { return json.RawMessage(`"` + strings.Repeat("x", n-2) + `"`) }

	for name, err := range map[string]error{
		"to users":  d.ToUsers(ctx, []string{"bob"}, "big", args(proto.MaxDispatchArgs+1)),
		"to conns":  d.ToConns(ctx, []string{"c1"}, "big", args(proto.MaxDispatchArgs+1)),
		"broadcast": d.Broadcast(ctx, "big", args(proto.MaxDispatchArgs+1)),
		"in a batch": d.Batch(ctx, func(b event.Dispatcher) error {
			if err := b.ToUsers(ctx, []string{"bob"}, "small", args(10)); err != nil {
				return err
			}
			return b.ToUsers(ctx, []string{"bob"}, "big", args(proto.MaxDispatchArgs+1))
		}),
	} {
		w := event.WireError(err)
		if w == nil || w.Code != proto.CodeBadRequest || !strings.Contains(w.Message, "big") {
			t.Errorf("%s: %v, want bad_request naming the event", name, err)
		}
	}
	if err := d.ToUsers(ctx, []string{"bob"}, "fits", args(proto.MaxDispatchArgs)); err != nil {
		t.Fatalf("a dispatch at the limit: %v", err)
	}
	// The first message published is the one that fits: nothing of the
	// refused ones, not even the batch's small one, went before it.
	var got proto.Dispatch
	if err := json.Unmarshal([]byte(receive(t, ps)), &got); err != nil || got.Event != "fits" {
		t.Fatalf("first published: %+v, %v; want the dispatch that fits", got, err)
	}
	rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if msg, err := ps.ReceiveMessage(rctx); err == nil {
		t.Errorf("published after: %.100s", msg.Payload)
	}
}
