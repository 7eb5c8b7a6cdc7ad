package worker

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/internal/readiness"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestInboxRefusalMendedByReload: NATS refuses the worker's reply inbox
// (the gateway user's subscribe permission leaves out _INBOX.>), so every
// request times out and /readyz is 503 (f492d08). The operator mends the
// permission the way NATS is configured, a config reload (nats-server
// --signal reload), which keeps every connection. From then on the worker
// must serve again, or at least stay not ready only for a bounded time.
//
// It fails on main: NATS never stored the refused SUB, a reload re-checks
// only the subscriptions it holds, and the worker sends the inbox's SUB
// only on a reconnect (nats.go resends its subscriptions then), which a
// reload does not cause. So every request keeps timing out and /readyz
// stays 503 until the worker is restarted or NATS drops it, though
// nothing is wrong any more. Fix: while natsconn.State holds a refusal,
// have the worker retry it (nc.ForceReconnect after a backoff, which
// sends the SUBs anew and clears the refusal when NATS takes them), so a
// mended permission is picked up within seconds.
//
// The worker subscribes its inbox as it starts, so /readyz is 503 naming
// the refusal before any request, not only after the first has timed out.
func TestInboxRefusalMendedByReload(t *testing.T) {
	port := testkit.RestartablePort(t)
	users := func(gatewayPerms *server.Permissions) []*server.User {
		return []*server.User{
			{Username: "gateway", Password: "gw-pw", Permissions: gatewayPerms},
			{Username: "handlers", Password: "hs-pw"},
		}
	}
	opts := &server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true,
		Users: users(&server.Permissions{Subscribe: &server.SubjectPermission{Deny: []string{"_INBOX.>"}}})}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(wait) {
		t.Fatal("nats not ready")
	}
	url := func(user, pass string) string { return fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", user, pass, port) }
	answerOK(t, url("handlers", "hs-pw"), nil)
	rd := testkit.StartRedis(t)

	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = url("gateway", "gw-pw"), rd.URL()
	cfg.HandlerTimeout = time.Second
	cfg.ShutdownTimeout = 2 * time.Second
	r := launchWorker(t, cfg, 0, zap.NewNop())
	ready := "http://" + r.addr + "/readyz"
	testkit.Eventually(t, wait, "the worker's /readyz is 503 naming its refused inbox, before any request", func() bool {
		resp, err := plain.Get(ready)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return slices.ContainsFunc(readiness.Read(resp).Reasons, func(r string) bool {
			return strings.HasPrefix(r, "nats refuses the subscription to _INBOX.")
		})
	})

	c := testkit.Dial(t, "ws://"+r.addr+"/socket", token(t, "alice", time.Hour))
	c.Send("sendMessage", map[string]any{"to": "bob", "text": "hi"}, "r1")
	if f := c.ExpectRef(wait, "r1"); f.Event != proto.EventError {
		t.Fatalf("reply %s %s while NATS refuses the inbox, want an error (timeout)", f.Event, f.Args)
	}
	if code := status(ready); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d after the request, want 503 while NATS refuses the inbox", code)
	}

	// The permission mended by a reload: the connection stays.
	clients := ns.NumClients()
	reloaded := opts.Clone()
	reloaded.Users = users(nil)
	if err := ns.ReloadOptions(reloaded); err != nil {
		t.Fatal(err)
	}
	if n := ns.NumClients(); n != clients {
		t.Logf("the reload dropped connections (%d, were %d)", n, clients)
	}

	testkit.Eventually(t, 15*time.Second, "the worker is ready again once NATS allows its inbox (a reload keeps its connection, and its inbox is subscribed only on a reconnect)", func() bool {
		return status(ready) == http.StatusOK
	})
	c.Send("sendMessage", map[string]any{"to": "bob", "text": "hi"}, "r2")
	if f := c.ExpectRef(wait, "r2"); f.Event != proto.EventAck {
		t.Errorf("reply %s %s once NATS allows the inbox, want an ack", f.Event, f.Args)
	}
}
