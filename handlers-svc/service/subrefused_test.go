package service

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/handlers-svc/internal/config"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// readyzOnceRefused waits until a has subscribed, as far as natserve
// knows, NATS has refused a subscription (an "async error" whose error
// refused matches) and Redis has been probed, and returns /readyz then.
func readyzOnceRefused(t *testing.T, a *app, refused func(msg string) bool) (int, map[string]any) {
	t.Helper()
	awaitLog(t, a, "serving")
	testkit.Eventually(t, 10*time.Second, "NATS refuses the subscription", func() bool {
		for _, e := range a.logs.FilterMessage("async error").All() {
			if msg, _ := e.ContextMap()["error"].(string); refused(msg) {
				return true
			}
		}
		return false
	})
	testkit.Eventually(t, 10*time.Second, "Redis probed", func() bool {
		code, body := a.get("/readyz")
		return code == http.StatusOK || (code == http.StatusServiceUnavailable && !hasReason(body, "redis not answering"))
	})
	return a.get("/readyz")
}

// TestReadyzWhenNATSRefusesTheSubscription: NATS takes handlers-svc's
// connection but refuses its subscription to the requests (a NATS user
// whose subscribe permissions leave handlers.> out: a typo in nats.conf,
// or one written before a subject was added). The instance then serves no
// request, every gateway's request finds no responder, yet /readyz, which
// promises "subscribed", answers 200: the readiness probe keeps it in
// service and only an "async error" log line tells. /readyz must be 503
// while the subscription is refused.
func TestReadyzWhenNATSRefusesTheSubscription(t *testing.T) {
	ns := testkit.StartNATSWith(t, func(o *server.Options) {
		o.Users = []*server.User{{
			Username: "handlers", Password: "pw",
			Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Deny: []string{">"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}}, // handlers.> left out
			},
		}}
	})
	rs := testkit.StartRedis(t)
	a := startFamilies(t, handlers.Families(), 0, rs.Port, func(c *config.Config) {
		c.NATSURL = "nats://handlers:pw@127.0.0.1:" + strconv.Itoa(ns.Port)
	})
	code, body := readyzOnceRefused(t, a, func(msg string) bool {
		return strings.Contains(msg, "Permissions Violation for Subscription to \""+proto.SubjectAll)
	})
	if code == http.StatusOK {
		t.Fatalf("/readyz = %d %v while NATS refuses the subscription to %s: want 503, the instance serves nothing",
			code, body, proto.SubjectAll)
	}
	if err := a.stop(t); err != nil {
		t.Logf("stop: %v", err)
	}
}
