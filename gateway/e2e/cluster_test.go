package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// sendMessages sends n sendMessage events from c to user, texts
// tag-0..tag-(n-1), and fails unless every one is acked.
func sendMessages(t *testing.T, c *testkit.Client, to, tag string, n int) []string {
	t.Helper()
	var texts []string
	for i := range n {
		text := fmt.Sprintf("%s-%d", tag, i)
		texts = append(texts, text)
		c.Send("sendMessage", map[string]any{"to": to, "text": text}, text)
	}
	for _, ref := range texts {
		if f := c.ExpectRef(20*time.Second, ref); f.Event != proto.EventAck {
			t.Fatalf("%s: got %s %s, want an ack: a request was lost", ref, f.Event, f.Args)
		}
	}
	return texts
}

// expectMessages takes len(want) message frames from c and fails unless
// their texts are exactly want, in any order.
func expectMessages(t *testing.T, c *testkit.Client, name string, want []string) {
	t.Helper()
	var got []string
	for range want {
		got = append(got, decodeMessage(t, c.ExpectEvent(20*time.Second, "message")).Text)
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Fatalf("%s got messages %v, want %v", name, got, want)
	}
}

// TestTwoGatewaysTwoHandlers runs more than one of everything: two gateway
// processes of two workers each, on their own ports, and two handlers-svc
// instances. alice has a socket on each of the four workers and gets every
// message sent through either gateway; both handlers-svc instances take a
// share of the requests (read from their /metrics); after one is killed,
// every request sent from then on is still served, by the other.
func TestTwoGatewaysTwoHandlers(t *testing.T) {
	a := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	b := a.AddGateway()
	h2 := a.AddHandlers()
	if a.Addr == b.Addr || a.HandlersAddr == h2.HandlersAddr {
		t.Fatal("the second gateway or handlers-svc shares an address with the first")
	}
	alice := map[string]*testkit.Client{
		"A/0": a.DialOn("alice", 0), "A/1": a.DialOn("alice", 1),
		"B/0": b.DialOn("alice", 0), "B/1": b.DialOn("alice", 1),
	}
	bobA, bobB := a.Dial("bob"), b.Dial("bob")

	const n = 30
	sent := append(sendMessages(t, bobA, "alice", "viaA", n), sendMessages(t, bobB, "alice", "viaB", n)...)
	for name, c := range alice {
		expectMessages(t, c, "alice on "+name, sent)
	}

	served := func(s *testkit.Stack) float64 {
		return s.HandlersMetrics().Sum("switchboard_handlers_requests_total", "event", "sendMessage", "result", "ok")
	}
	h1n, h2n := served(a), served(h2)
	if h1n+h2n != 2*n {
		t.Errorf("the handlers served %g + %g sendMessage, want %d in all", h1n, h2n, 2*n)
	}
	if h1n == 0 || h2n == 0 {
		t.Errorf("one handlers-svc took all the load: %g and %g", h1n, h2n)
	}
	// Each gateway forwarded its own bob's requests, on the worker bob is on.
	for name, s := range map[string]*testkit.Stack{"A": a, "B": b} {
		if got := s.Metrics().Sum("switchboard_gateway_envelopes_received_total", "event", "sendMessage", "result", "ok"); got != n {
			t.Errorf("gateway %s counted %g acked sendMessage, want %d", name, got, n)
		}
	}

	// Kill one handlers-svc outright. Once NATS has seen it go, the queue
	// group routes every new request to the survivor: none is lost.
	clients := a.NATS.Clients()
	h2.Handlers.Kill()
	testkit.Eventually(t, wait, "NATS has dropped the killed handlers-svc", func() bool { return a.NATS.Clients() == clients-1 })
	sent = append(sendMessages(t, bobA, "alice", "afterA", n), sendMessages(t, bobB, "alice", "afterB", n)...)
	for name, c := range alice {
		expectMessages(t, c, "alice on "+name+" after the kill", sent)
	}
	if got := served(a); got != h1n+2*n {
		t.Errorf("the surviving handlers-svc served %g sendMessage in all, want %g + %d", got, h1n, 2*n)
	}
}
