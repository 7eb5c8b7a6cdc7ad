package service

import (
	"context"
	"net/http"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestReadyzWhenNATSRefusesASubscriptionOverItsLimit: NATS refuses a
// subscription over the connection's limit (max_subscriptions, or a user
// JWT's subs limit) the way it refuses one its permissions leave out:
// after the fact, with an asynchronous error, Subscribe having returned
// nil. Here handlers.> fits the limit of 1 and the lifecycle subject of a
// registered connect hook does not, so the hook is never told of a
// connect. /readyz promises 503 "while NATS refuses a subscription"
// (docs/operations.md), yet natsconn.State.Refused records permissions
// violations only (nats.ErrMaxSubscriptionsExceeded names no subject), so
// it answers 200.
func TestReadyzWhenNATSRefusesASubscriptionOverItsLimit(t *testing.T) {
	ns := testkit.StartNATSWith(t, func(o *server.Options) { o.MaxSubs = 1 })
	rs := testkit.StartRedis(t)
	hook := func(_ context.Context, mux *event.Mux, _ handlers.Deps) error {
		mux.OnConnect(func(context.Context, event.Conn) error { return nil })
		return nil
	}
	a := startFamilies(t, append(handlers.Families(), hook), ns.Port, rs.Port)

	code, body := readyzOnceRefused(t, a, func(msg string) bool { return msg == nats.ErrMaxSubscriptionsExceeded.Error() })
	if code == http.StatusOK {
		t.Errorf("/readyz = %d %v while NATS refuses a subscription (maximum subscriptions exceeded): want 503, the connect hooks are told nothing",
			code, body)
	}
	if err := a.stop(t); err != nil {
		t.Logf("stop: %v", err)
	}
}
