package natserve_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/natserve"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestIdemHoldsForEventsAMiddlewareServes: 3952742 (an event with no
// handler reserved no idem key, by event.Mux.Has; replaced by
// proto.UnrunHeader) broke idempotency for an event that a Mux middleware
// answers itself: the Mux's doc says its middleware
// wraps every request, unknown events included, so a middleware may serve
// a family of names (here "legacy_*", as a fallback forwarding to an older
// system) with no handler registered for them. Has said false, natserve
// dropped the key, and a request the client sends again with its idem (its
// socket was lost) runs twice: the idempotency the protocol promises is
// silently gone for those events.
func TestIdemHoldsForEventsAMiddlewareServes(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, _ := idemStore(t)
	var runs atomic.Int32
	mux := event.NewMux()
	mux.HandleFunc("send", func(_ context.Context, r *event.Request) error { return r.Respond(1) })
	mux.Use(func(next event.Handler) event.Handler {
		return event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
			if strings.HasPrefix(r.Event, "legacy_") {
				return r.Respond(map[string]any{"run": runs.Add(1)})
			}
			return next.ServeEvent(ctx, r)
		})
	})
	serve(t, ns, mux, zap.NewNop(), natserve.Config{Idem: store})
	nc := connect(t, ns)

	first := keyed(t, nc, "alice", "legacy_pay", `{"cents":100}`, "k1")
	again := keyed(t, nc, "alice", "legacy_pay", `{"cents":100}`, "k1")
	if n := runs.Load(); n != 1 || again != first {
		t.Errorf("a request repeated with its idem key ran %d times (replies %s, then %s); want once, the first answer replayed", n, first, again)
	}
}

// TestUnrunRepliesAreMarked: the replies handlers-svc gives before
// anything runs for the event (an idempotency key another request used,
// here) carry proto.UnrunHeader, and a reply of a run does not, so the
// gateway takes an event for one with a handler only from a run.
func TestUnrunRepliesAreMarked(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, _ := idemStore(t)
	mux := event.NewMux()
	mux.HandleFunc("send", func(_ context.Context, r *event.Request) error { return r.Respond(1) })
	serve(t, ns, mux, zap.NewNop(), natserve.Config{Idem: store})
	nc := connect(t, ns)
	ask := func(ev, key string) *nats.Msg {
		t.Helper()
		body := proto.AppendRequest(nil, &proto.Request{Event: ev, User: "alice", Conn: "alice-1", Args: json.RawMessage(`{}`)})
		msg, err := nc.RequestMsg(&nats.Msg{Subject: proto.Subject(ev), Data: body,
			Header: nats.Header{proto.IdemHeader: []string{key}}}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	if m := ask("send", "k1"); m.Header.Get(proto.UnrunHeader) != "" {
		t.Errorf("a run's reply %s is marked unrun", m.Data)
	}
	if m := ask("invented", "k1"); m.Header.Get(proto.UnrunHeader) != "1" || !strings.Contains(string(m.Data), "another request") {
		t.Errorf("a reused key's refusal %s has %s %q, want it marked", m.Data, proto.UnrunHeader, m.Header.Get(proto.UnrunHeader))
	}
	if m := ask("invented", "k2"); m.Header.Get(proto.UnrunHeader) != "" || !strings.Contains(string(m.Data), string(proto.CodeUnknownEvent)) {
		t.Errorf("an unknown event's reply %s: want unknown_event from a run, unmarked", m.Data)
	}
}
