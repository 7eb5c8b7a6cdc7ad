package service

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/handlers-svc/internal/config"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// startWithNATSURL is startFamilies with the built-in families and NATS_URL
// as given (credentials in it), not a plain URL of a port.
func startWithNATSURL(t *testing.T, natsURL string, redisPort int) *app {
	t.Helper()
	cfg := config.Default()
	cfg.NATSURL = natsURL
	cfg.RedisURL = fmt.Sprintf("redis://127.0.0.1:%d/0", redisPort)
	cfg.Addr = "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
	cfg.ShutdownTimeout = 5 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	ctx, cancel := context.WithCancel(context.Background())
	a := &app{base: "http://" + cfg.Addr, logs: logs, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.err = realMain(ctx, cfg, zap.New(core), handlers.Families())
	}()
	t.Cleanup(func() {
		cancel()
		<-a.done
	})
	return a
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
	a := startWithNATSURL(t, "nats://handlers:pw@127.0.0.1:"+strconv.Itoa(ns.Port), rs.Port)

	awaitLog(t, a, "serving") // natserve has subscribed, as far as it knows
	testkit.Eventually(t, 10*time.Second, "NATS refuses the subscription", func() bool {
		for _, e := range a.logs.FilterMessage("async error").All() {
			if msg, _ := e.ContextMap()["error"].(string); strings.Contains(msg, "Permissions Violation for Subscription to \""+proto.SubjectAll) {
				return true
			}
		}
		return false
	})
	testkit.Eventually(t, 10*time.Second, "Redis probed", func() bool {
		code, body := a.get("/readyz")
		return code == http.StatusOK || (code == http.StatusServiceUnavailable && !hasReason(body, "redis not answering"))
	})
	if code, body := a.get("/readyz"); code == http.StatusOK {
		t.Fatalf("/readyz = %d %v while NATS refuses the subscription to %s: want 503, the instance serves nothing",
			code, body, proto.SubjectAll)
	}
	if err := a.stop(t); err != nil {
		t.Logf("stop: %v", err)
	}
}
