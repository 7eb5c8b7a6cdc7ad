package e2e

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/switchboard/switchboard/internal/testkit"
)

// TestFrozenHandlersDropped freezes one of two handlers-svc instances
// (SIGSTOP: its host paused or cut off, its connections left open) under
// the NATS server's ping settings of docs/deploy/nats.conf, the file
// compose runs. The server must drop the frozen instance within its pings
// (ping_max + 1 intervals, about 15 s), where its defaults took about 6
// minutes, during which the queue group kept routing requests to it; from
// then on every request is served by the other. Once thawed, the instance
// connects again.
func TestFrozenHandlersDropped(t *testing.T) {
	t.Setenv("NATS_GATEWAY_PASSWORD", "unused")
	t.Setenv("NATS_HANDLERS_PASSWORD", "unused")
	conf, err := server.ProcessConfigFile(filepath.Join("..", "docs", "deploy", "nats.conf"))
	if err != nil {
		t.Fatalf("docs/deploy/nats.conf: %v", err)
	}
	bound := time.Duration(conf.MaxPingsOut+1) * conf.PingInterval
	if conf.PingInterval <= 0 || conf.MaxPingsOut <= 0 || bound > 30*time.Second {
		t.Fatalf("docs/deploy/nats.conf: ping_interval %v, ping_max %d: a frozen client would be dropped after %v, want at most 30 s",
			conf.PingInterval, conf.MaxPingsOut, bound)
	}
	n := testkit.StartNATSWith(t, func(o *server.Options) {
		o.PingInterval, o.MaxPingsOut = conf.PingInterval, conf.MaxPingsOut
	})
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, NATS: n})
	frozen := s.AddHandlers()
	alice, bob := s.Dial("alice"), s.Dial("bob")
	sent := sendMessages(t, alice, "bob", "before", 10)
	expectMessages(t, bob, "bob before the freeze", sent)

	clients, subs := n.Clients(), n.Subscriptions()
	pid := frozen.Handlers.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thaw := func() { _ = syscall.Kill(pid, syscall.SIGCONT) }
	t.Cleanup(thaw)
	frozenAt := time.Now()
	// A ping interval of slack for the timer's phase and the close.
	// Dropped once its subscriptions are gone as well, which the server
	// removes a moment after the connection: until then a request can
	// still be routed to the frozen instance.
	testkit.Eventually(t, bound+conf.PingInterval, "NATS dropping the frozen handlers-svc", func() bool {
		return n.Clients() == clients-1 && n.Subscriptions() < subs
	})
	t.Logf("NATS dropped the frozen handlers-svc after %v (ping_interval %v, ping_max %d)",
		time.Since(frozenAt).Round(100*time.Millisecond), conf.PingInterval, conf.MaxPingsOut)

	// Every request from now on goes to the instance that answers.
	sent = sendMessages(t, alice, "bob", "after", 50)
	expectMessages(t, bob, "bob after the drop", sent)

	thaw()
	thawedAt := time.Now()
	testkit.Eventually(t, wait, "the thawed handlers-svc connecting again", func() bool {
		return n.Clients() == clients
	})
	t.Logf("the thawed handlers-svc connected again after %v", time.Since(thawedAt).Round(100*time.Millisecond))
	sent = sendMessages(t, alice, "bob", "thawed", 20)
	expectMessages(t, bob, "bob after the thaw", sent)
}
