package middleware

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/proto"
)

// TestMiddlewareResults: every outcome of a handler is counted under its
// event and wire code, a recovered panic as handler_error, and an event
// without a handler under _other.
func TestMiddlewareResults(t *testing.T) {
	mux := event.NewMux()
	mux.HandleFunc("ok", func(context.Context, *event.Request) error { return nil })
	mux.HandleFunc("bad", func(context.Context, *event.Request) error { return event.BadRequest("no") })
	mux.HandleFunc("fails", func(context.Context, *event.Request) error { return errors.New("db down") })
	mux.HandleFunc("custom", func(context.Context, *event.Request) error { return event.Errorf("teapot", "short and stout") })
	mux.HandleFunc("panics", func(context.Context, *event.Request) error { panic("bug") })
	mux.HandleFunc("denied", func(context.Context, *event.Request) error { return event.Forbidden("not yours") })
	// The built-in sender bounds (package limit) answer rate_limited: a
	// code of the contract, not "other", which SwitchboardHandlersErrors
	// counts as failing handlers.
	mux.HandleFunc("limited", func(context.Context, *event.Request) error {
		return event.NewError(proto.CodeRateLimited, "slow down")
	})
	m := NewMetrics(prometheus.NewRegistry(), "test", mux.Events())
	mux.Use(m.Middleware, Recover(zap.NewNop()))

	for _, name := range []string{"ok", "ok", "bad", "fails", "custom", "panics", "denied", "limited", "missing", "alsoMissing"} {
		_ = mux.ServeEvent(context.Background(), eventtest.NewRequest(name, "alice", nil))
	}
	for _, c := range []struct {
		event, result string
		want          float64
	}{
		{"ok", "ok", 2},
		{"bad", "bad_request", 1},
		{"fails", "handler_error", 1},
		{"custom", "other", 1},
		{"panics", "handler_error", 1},
		{"denied", "forbidden", 1},
		{"limited", "rate_limited", 1},
		{"limited", "other", 0},
		{EventOther, "unknown_event", 2},
	} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(c.event, c.result)); got != c.want {
			t.Errorf("requests{event=%q,result=%q} = %g, want %g", c.event, c.result, got, c.want)
		}
	}
	// Eight label values (seven events and _other), each with every result.
	if n := testutil.CollectAndCount(m.requests); n != 8*len(results) {
		t.Errorf("%d request series, want %d", n, 8*len(results))
	}
	if n := testutil.CollectAndCount(m.duration); n != 8 {
		t.Errorf("%d duration series, want 8", n)
	}
}
