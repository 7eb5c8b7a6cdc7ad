package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// noSecretsLogged fails the test if any of secrets is in a log of procs.
func noSecretsLogged(t *testing.T, secrets []string, procs ...*testkit.Proc) {
	t.Helper()
	for _, p := range procs {
		logs := p.Logs()
		for _, s := range secrets {
			if strings.Contains(logs, s) {
				t.Errorf("%s logged the secret %q", p.Name, s)
			}
		}
	}
}

// TestNATSTokenLeakAttack: a NATS token travels as the URL's user name
// (nats://TOKEN@host), which url.Redacted and nats.go's
// ConnectedUrlRedacted leave in place. Neither binary logs it: not while
// waiting for NATS at start-up, and not once connected to a server that
// takes the token (which also shows the token is used).
func TestNATSTokenLeakAttack(t *testing.T) {
	const token = "s3cr3t"
	gw, hs := testkit.Binaries(t)
	nowhere := fmt.Sprintf("nats://%s@127.0.0.1:%d", token, testkit.FreePort(t))
	redisNowhere := fmt.Sprintf("redis://127.0.0.1:%d/0", testkit.FreePort(t))
	g := testkit.StartProc(t, "gateway", gw, []string{
		"NATS_URL=" + nowhere, "REDIS_URL=" + redisNowhere, "GATEWAY_WORKERS=1",
		"GATEWAY_JWT_SECRET=" + testkit.Secret, "GATEWAY_METRICS_ADDR=off",
		fmt.Sprintf("GATEWAY_ADDR=127.0.0.1:%d", testkit.FreePort(t)), "LOG_LEVEL=debug",
	})
	h := testkit.StartProc(t, "handlers-svc", hs, []string{
		"NATS_URL=" + nowhere, "REDIS_URL=" + redisNowhere,
		fmt.Sprintf("HANDLERS_ADDR=127.0.0.1:%d", testkit.FreePort(t)), "LOG_LEVEL=debug",
	})
	testkit.Eventually(t, 20*time.Second, "both say they wait for NATS", func() bool {
		return testkit.CountLogs(g.Logs(), "nats not reachable", nil) > 0 && testkit.CountLogs(h.Logs(), "waiting for NATS", nil) > 0
	})
	noSecretsLogged(t, []string{token}, g, h)
	g.Kill()
	h.Kill()

	n := testkit.StartNATSWith(t, func(o *server.Options) { o.Authorization = token })
	url := fmt.Sprintf("nats://%s@127.0.0.1:%d", token, n.Port)
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, NATS: n,
		Env: []string{"NATS_URL=" + url}, HandlersEnv: []string{"NATS_URL=" + url}})
	a, b := s.Dial("alice"), s.Dial("bob")
	a.Send("sendMessage", map[string]any{"to": "bob", "text": "hi"}, "r1")
	if f := a.ExpectRef(wait, "r1"); f.Event != proto.EventAck {
		t.Fatalf("reply %+v, want an ack", f)
	}
	b.ExpectEvent(wait, "message")
	if testkit.CountLogs(s.Handlers.Logs(), "connected", nil) == 0 {
		t.Fatal("handlers-svc logged no connection to NATS")
	}
	noSecretsLogged(t, []string{token}, s.Gateway, s.Handlers)
}

// TestBrokerCredentialsAttack runs the stack against the NATS
// authorization of docs/deploy/nats.conf (the file compose.yaml runs NATS
// with), each service with its own user and password, and a Redis with a
// password, which the services reach as an ACL user with a password of its
// own: chat works. Then the attacks: a client without credentials is
// refused by both; with handlers-svc's password one cannot publish a
// forged request on handlers.> (a message to carol "from" mallory), which
// no handler runs, nor a lifecycle message; with the gateway's one cannot
// take the requests of handlers.>; the gateway is refused none of its
// publishes (its lifecycle messages); and no password is in any log line.
func TestBrokerCredentialsAttack(t *testing.T) {
	const (
		gwPass, hsPass = "gw-Pass-1", "hs-Pass-2"
		redisAdmin     = "redis-Admin-3"
		redisPass      = "redis-Pass-4"
	)
	t.Setenv("NATS_GATEWAY_PASSWORD", gwPass)
	t.Setenv("NATS_HANDLERS_PASSWORD", hsPass)
	conf, err := server.ProcessConfigFile(filepath.Join("..", "docs", "deploy", "nats.conf"))
	if err != nil {
		t.Fatalf("docs/deploy/nats.conf: %v", err)
	}
	if len(conf.Users) != 2 {
		t.Fatalf("docs/deploy/nats.conf has %d users, want gateway and handlers", len(conf.Users))
	}
	n := testkit.StartNATSWith(t, func(o *server.Options) { o.Users = conf.Users })
	rd := testkit.StartRedisWithPassword(t, redisAdmin)
	admin := redis.NewClient(&redis.Options{Addr: rd.Addr(), Password: redisAdmin})
	defer admin.Close()
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "switchboard", "on", ">"+redisPass, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}

	natsURL := func(user, pass string) string { return fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", user, pass, n.Port) }
	redisURL := fmt.Sprintf("redis://switchboard:%s@%s/0", redisPass, rd.Addr())
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, NATS: n, Redis: rd,
		Env:         []string{"NATS_URL=" + natsURL("gateway", gwPass), "REDIS_URL=" + redisURL},
		HandlersEnv: []string{"NATS_URL=" + natsURL("handlers", hsPass), "REDIS_URL=" + redisURL}})
	a, b, carol := s.Dial("alice"), s.Dial("bob"), s.Dial("carol")
	a.Send("sendMessage", map[string]any{"to": "bob", "text": "hi"}, "r1")
	if f := a.ExpectRef(wait, "r1"); f.Event != proto.EventAck {
		t.Fatalf("reply %+v, want an ack", f)
	}
	b.ExpectEvent(wait, "message")

	// No credentials: refused by NATS and by Redis.
	if nc, err := nats.Connect(n.URL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("NATS took a client without credentials")
	}
	anon := redis.NewClient(&redis.Options{Addr: rd.Addr(), MaxRetries: -1})
	defer anon.Close()
	if err := anon.Publish(ctx, proto.Channel, "{}").Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("Redis without a password: PUBLISH = %v, want NOAUTH", err)
	}

	// With handlers-svc's password: no request can be forged.
	violations := make(chan error, 16)
	onErr := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err })
	hsConn, err := nats.Connect(natsURL("handlers", hsPass), onErr)
	if err != nil {
		t.Fatal(err)
	}
	defer hsConn.Close()
	forged, _ := json.Marshal(map[string]any{"event": "sendMessage", "args": map[string]any{"to": "carol", "text": "forged"},
		"user": "mallory", "conn": "x", "ref": ""})
	_ = hsConn.Publish(proto.Subject("sendMessage"), forged)
	_ = hsConn.Flush()
	expectViolation(t, violations, "publish on handlers.sendMessage as handlers")
	if f, ok := carol.TryExpect(time.Second, func(f proto.Frame) bool { return f.Event == "message" }); ok {
		t.Errorf("a forged request ran: carol got %+v", f)
	}
	// Nor a lifecycle message (a connect of a socket that is not there).
	_ = hsConn.Publish(proto.LifecycleConnect, proto.AppendLifecycle(nil, &proto.Lifecycle{
		Type: proto.LifecycleTypeConnect, User: "mallory", Conn: "x", At: time.Now().UnixMilli()}))
	_ = hsConn.Flush()
	expectViolation(t, violations, "publish on "+proto.LifecycleConnect+" as handlers")

	// With the gateway's password: the requests cannot be taken.
	gwConn, err := nats.Connect(natsURL("gateway", gwPass), onErr)
	if err != nil {
		t.Fatal(err)
	}
	defer gwConn.Close()
	if _, err := gwConn.QueueSubscribeSync(proto.SubjectAll, proto.QueueGroup); err == nil {
		_ = gwConn.Flush()
		expectViolation(t, violations, "subscribe to handlers.> as gateway")
	}
	// Still served by handlers-svc alone.
	a.Send("sendMessage", map[string]any{"to": "bob", "text": "again"}, "r2")
	if f := a.ExpectRef(wait, "r2"); f.Event != proto.EventAck {
		t.Fatalf("reply %+v, want an ack", f)
	}

	// The gateways' own publishes, the lifecycle messages of the sockets
	// above among them, are all allowed.
	if logs := s.Gateway.Logs(); strings.Contains(strings.ToLower(logs), "permissions violation") {
		t.Errorf("the gateway was refused a publish under docs/deploy/nats.conf:\n%s", logs)
	}

	noSecretsLogged(t, []string{gwPass, hsPass, redisPass, redisAdmin}, s.Gateway, s.Handlers)
}

// expectViolation waits for a permissions violation reported to a NATS
// client's error handler.
func expectViolation(t *testing.T, errs <-chan error, what string) {
	t.Helper()
	select {
	case err := <-errs:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Errorf("%s: error %v, want a permissions violation", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("%s: allowed, want a permissions violation", what)
	}
}
