package e2e

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestNATSClusterNodeKilled: the gateway and two handlers-svc instances
// connect to a 3-node NATS cluster (NATS_URL lists the nodes). Under a
// steady load of messages, the node holding the most of their connections
// is killed, three times over: each time every sender's requests are
// acked again soon after (the time is logged), and every message that was
// acked reaches every device of its recipient exactly once. Requests in
// flight on the killed node may be answered unavailable or timeout: the
// client was not told they were done.
func TestNATSClusterNodeKilled(t *testing.T) {
	ns := testkit.StartNATSCluster(t, 3)
	url := "NATS_URL=" + testkit.ClusterURL(ns)
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, NATS: ns[0], Env: []string{url}, HandlersEnv: []string{url}})
	s.AddHandlers()
	senders := []*testkit.Client{s.DialOn("alice", 0), s.DialOn("alice", 1), s.DialOn("carol", 0)}
	readers := []*testkit.Client{s.DialOn("bob", 0), s.DialOn("bob", 1)}

	// Each sender sends one message at a time and notes when it was acked.
	var mu sync.Mutex
	var acked []string
	lastAck := make([]time.Time, len(senders))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				text := fmt.Sprintf("s%d-%d", i, j)
				c.Send("sendMessage", map[string]any{"to": "bob", "text": text}, text)
				f := c.ExpectRef(2*wait, text)
				mu.Lock()
				if f.Event == proto.EventAck {
					acked = append(acked, text)
					lastAck[i] = time.Now()
				}
				mu.Unlock()
				time.Sleep(30 * time.Millisecond) // a steady load within a socket's allowance (50/s)
			}
		}()
	}
	allAckedSince := func(at time.Time) bool {
		mu.Lock()
		defer mu.Unlock()
		return !slices.ContainsFunc(lastAck, func(a time.Time) bool { return !a.After(at) })
	}
	testkit.Eventually(t, wait, "every sender acked", func() bool { return allAckedSince(time.Time{}) })

	for round := range 3 {
		busiest := ns[0]
		for _, n := range ns[1:] {
			if n.Clients() > busiest.Clients() {
				busiest = n
			}
		}
		clients := busiest.Clients()
		killed := time.Now()
		busiest.Stop()
		testkit.Eventually(t, recoveryBound, "every sender acked after the kill", func() bool { return allAckedSince(killed) })
		t.Logf("round %d: the node on port %d with %d of the services' connections killed; every sender acked again after %s",
			round, busiest.Port, clients, time.Since(killed).Round(time.Millisecond))
		busiest.Start()
		for _, n := range ns {
			n.AwaitRoutes(len(ns) - 1)
		}
		// Some load on the whole cluster again before the next kill.
		mu.Lock()
		before := len(acked)
		mu.Unlock()
		testkit.Eventually(t, wait, "60 more messages acked", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(acked) >= before+60
		})
	}
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(acked) == 0 {
		t.Fatal("no message was acked")
	}
	want := map[string]bool{}
	for _, text := range acked {
		want[text] = true
	}
	for _, r := range readers {
		testkit.Eventually(t, wait, fmt.Sprintf("bob's socket on worker %d has every acked message", r.Worker), func() bool {
			got := 0
			for _, f := range r.Frames() {
				if f.Event == "message" && want[textOf(f)] {
					got++
				}
			}
			return got >= len(want)
		})
		seen := map[string]int{}
		for _, f := range r.Frames() {
			if f.Event == "message" {
				seen[textOf(f)]++
			}
		}
		for text, n := range seen {
			if n > 1 {
				t.Errorf("bob's socket on worker %d got %s %d times", r.Worker, text, n)
			}
		}
	}
	t.Logf("%d messages acked through 3 node kills, each delivered once to both of bob's devices", len(acked))
}
