package e2e

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
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
// share of the requests (read from their /metrics). One is killed while a
// sender keeps requests in flight: only requests it held are lost, every
// request started once NATS has dropped it is served by the other, and so
// is everything sent afterwards.
func TestTwoGatewaysTwoHandlers(t *testing.T) {
	// No rate limit: the failover sender keeps 16 requests in flight.
	a := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_RATE_LIMIT=0", "GATEWAY_USER_RATE_LIMIT=0"}})
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

	// Kill one handlers-svc outright while a sender keeps requests in
	// flight. The requests the killed instance held are lost (their
	// clients get timeout); once NATS has seen it go, the queue group
	// routes every new request to the survivor: none is lost.
	failoverUnderLoad(t, a, h2)
	base := served(a)
	sent = append(sendMessages(t, bobA, "alice", "afterA", n), sendMessages(t, bobB, "alice", "afterB", n)...)
	for name, c := range alice {
		expectMessages(t, c, "alice on "+name+" after the kill", sent)
	}
	if got := served(a); got != base+2*n {
		t.Errorf("the surviving handlers-svc served %g sendMessage in all, want %g + %d", got, base, 2*n)
	}
}

// failoverUnderLoad kills h's handlers-svc while one socket on s keeps
// loadWindow requests in flight, and goes on sending until loadAfterDrop
// requests started after NATS dropped the killed instance have been
// answered. Every one of those must be acked. The only failures allowed
// are the requests in flight at the kill and those started in the moment
// between the kill and NATS noticing it (routed to a connection that was
// already dead).
func failoverUnderLoad(t *testing.T, s, h *testkit.Stack) {
	const (
		loadWindow    = 16
		loadBefore    = 50  // acks before the kill
		loadAfterDrop = 200 // requests started after the drop, answered
	)
	var (
		mu             sync.Mutex
		started        []time.Time // by request number
		pending        = map[string]int{}
		killedAt       time.Time
		inFlightAtKill int
		droppedAt      time.Time // zero until NATS has dropped it
	)
	startKill, dropped := make(chan struct{}), make(chan struct{})
	kill := sync.OnceFunc(func() { close(startKill) })
	t.Cleanup(func() { kill(); <-dropped }) // the goroutine ends even if the test fails early
	clients := s.NATS.Clients()
	go func() {
		defer close(dropped)
		<-startKill
		// Holding mu, no request starts between the count and the kill;
		// the ones in flight stay on the wire.
		mu.Lock()
		killedAt, inFlightAtKill = time.Now(), len(pending)
		subs := s.NATS.Subscriptions()
		h.Handlers.Kill()
		mu.Unlock()
		// Dropped once the server has let go of the connection and of its
		// subscriptions too: it forgets the connection first, and until
		// the subscriptions follow, a request can still be routed to the
		// dead instance's queue subscription.
		for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			if s.NATS.Clients() == clients-1 && s.NATS.Subscriptions() < subs {
				mu.Lock()
				droppedAt = time.Now()
				mu.Unlock()
				return
			}
		}
	}()

	load := s.Dial("carol")
	send := func() {
		mu.Lock()
		ref := fmt.Sprintf("load-%d", len(started))
		started = append(started, time.Now())
		pending[ref] = len(started) - 1
		mu.Unlock()
		load.Send("sendMessage", map[string]any{"to": "nobody", "text": ref}, ref)
	}
	isReply := func(f proto.Frame) bool {
		return (f.Event == proto.EventAck || f.Event == proto.EventError) && strings.HasPrefix(f.Ref, "load-")
	}
	type failure struct {
		n     int
		reply string
	}
	var (
		acked    int
		failures []failure
		stopping bool
	)
	for range loadWindow {
		send()
	}
	for {
		mu.Lock()
		left, drop := len(pending), droppedAt
		mu.Unlock()
		if stopping && left == 0 {
			break
		}
		f := load.Expect(20*time.Second, "a reply to a load request", isReply)
		mu.Lock()
		n := pending[f.Ref]
		delete(pending, f.Ref)
		mu.Unlock()
		if f.Event == proto.EventAck {
			acked++
		} else {
			failures = append(failures, failure{n, string(f.Args)})
		}
		if acked == loadBefore {
			kill()
		}
		select {
		case <-dropped:
			if drop.IsZero() {
				mu.Lock()
				drop = droppedAt
				mu.Unlock()
				if drop.IsZero() {
					t.Fatal("NATS did not drop the killed handlers-svc")
				}
			}
			mu.Lock()
			after := 0
			for i := len(started) - 1; i >= 0 && started[i].After(drop); i-- {
				if _, open := pending[fmt.Sprintf("load-%d", i)]; !open {
					after++
				}
			}
			mu.Unlock()
			stopping = stopping || after >= loadAfterDrop
		default:
		}
		if !stopping {
			send()
		}
	}

	var between, late int
	for _, at := range started {
		if at.After(killedAt) && !at.After(droppedAt) {
			between++
		}
	}
	for _, f := range failures {
		if started[f.n].After(droppedAt) {
			late++
			t.Errorf("request load-%d, started %s after NATS dropped the killed handlers-svc, failed: %s",
				f.n, started[f.n].Sub(droppedAt).Round(time.Microsecond), f.reply)
		}
	}
	t.Logf("load across the kill: %d requests, %d acked, %d failed; %d in flight at the kill, %d started before NATS dropped the instance %s later",
		len(started), acked, len(failures), inFlightAtKill, between, droppedAt.Sub(killedAt).Round(time.Microsecond))
	if inFlightAtKill == 0 {
		t.Error("no request was in flight at the kill: failover under load was not exercised")
	}
	if len(failures) > inFlightAtKill+between {
		t.Errorf("%d requests failed, more than the %d in flight at the kill and %d started before NATS noticed it",
			len(failures), inFlightAtKill, between)
	}
}
