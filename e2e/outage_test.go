package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// recoveryBound is how long a test waits for service to come back after a
// dependency returns. The promise is 5s; the bound is generous for a loaded
// machine, and the time measured is logged.
const recoveryBound = 30 * time.Second

// errorCode returns the code of an error frame, or "" for any other frame.
func errorCode(f proto.Frame) proto.Code {
	if f.Event != proto.EventError {
		return ""
	}
	var e proto.Error
	_ = json.Unmarshal(f.Args, &e)
	return e.Code
}

// expectUnavailable sends a sendMessage that must dispatch and checks that
// the answer is unavailable: not an ack (a false success), not timeout (a
// hang until the handler's deadline).
func expectUnavailable(t *testing.T, c *testkit.Client, ref string) {
	t.Helper()
	c.Send("sendMessage", map[string]any{"to": "alice", "text": "while down"}, ref)
	f := c.ExpectRef(wait+5*time.Second, ref)
	if code := errorCode(f); code != proto.CodeUnavailable {
		t.Fatalf("%s: got %s %s, want error unavailable", ref, f.Event, f.Args)
	}
}

// expectTryAgainLater dials user while Redis is down: the upgrade
// succeeds, but the worker cannot read the new socket's recovery streams
// (or, per user, subscribe its channel), so it closes the socket with 1013
// before any frame, within the worker's 5 s bound on that read; the client
// comes back after its back-off and loses nothing.
func expectTryAgainLater(t *testing.T, s *testkit.Stack, user string) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(s.URL(), http.Header{"Authorization": {"Bearer " + s.Token(user)}})
	if err != nil {
		t.Fatalf("dial %s while Redis is down: %v", user, err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(wait))
	_, data, err := ws.ReadMessage()
	if err == nil {
		t.Fatalf("a new socket got %s while Redis was down, want a close with 1013 first", data)
	}
	if code := testkit.CloseCode(err); code != proto.CloseTryAgainLater {
		t.Fatalf("a new socket while Redis was down ended with %v, want close code %d", err, proto.CloseTryAgainLater)
	}
}

// awaitDeliveries sends messages from from to alice until one is acked
// and every one of to has received one of them, and returns how long that
// took. A message sent just before the path is whole may be lost (pub/sub
// keeps no history), so it keeps sending, every 100ms at most, while it
// waits; phase keeps the messages of different calls apart.
func awaitDeliveries(t *testing.T, phase string, from *testkit.Client, to []*testkit.Client) time.Duration {
	t.Helper()
	start := time.Now()
	prefix := phase + " "
	reached := make([]bool, len(to))
	i := 0
	testkit.Eventually(t, recoveryBound, phase+": deliveries reach every worker", func() bool {
		i++
		ref := fmt.Sprintf("%s-%d", phase, i)
		from.Send("sendMessage", map[string]any{"to": "alice", "text": prefix + ref}, ref)
		if f := from.ExpectRef(wait+5*time.Second, ref); f.Event != proto.EventAck {
			return false
		}
		all := true
		for j, c := range to {
			if !reached[j] {
				_, reached[j] = c.TryExpect(100*time.Millisecond, func(f proto.Frame) bool {
					return f.Event == "message" && strings.HasPrefix(decodeMessage(t, f).Text, prefix)
				})
			}
			all = all && reached[j]
		}
		return all
	})
	return time.Since(start)
}

// assertReadyAgain checks that every worker and handlers-svc report ready.
func assertReadyAgain(t *testing.T, s *testkit.Stack) {
	t.Helper()
	s.WaitReady()
	testkit.Eventually(t, recoveryBound, "handlers-svc is ready again", func() bool {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + s.HandlersAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// assertOpen fails unless every client's socket is still open.
func assertOpen(t *testing.T, clients ...*testkit.Client) {
	t.Helper()
	for _, c := range clients {
		if closed, err := c.Closed(); closed {
			t.Fatalf("%s's socket on worker %d was closed: %v", c.User, c.Worker, err)
		}
	}
}

// assertLoggedOnce checks that each worker logged msg exactly once.
func assertLoggedOncePerWorker(t *testing.T, s *testkit.Stack, msg string) {
	t.Helper()
	for w := range s.Workers {
		if n := testkit.CountLogs(s.Gateway.Logs(), msg, map[string]any{"worker": w}); n != 1 {
			t.Errorf("worker %d logged %q %d times, want once", w, msg, n)
		}
	}
}

// TestRedisDownAndBack: Redis is killed and restarted on its port. Sockets
// stay open; sendMessage, which dispatches, answers unavailable; a new
// socket is closed with 1013 before any frame; every worker resubscribes and handlers-svc publishes again by themselves, and
// the loss and the recovery are each logged once.
func TestRedisDownAndBack(t *testing.T) {
	testkit.SkipOnRedisCluster(t, "it stops the one Redis server; a cluster master's restart is e2e/recovery's TestRedisRestartWithoutPersistence there")
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	a0, a1 := s.DialOn("alice", 0), s.DialOn("alice", 1)
	bob := s.Dial("bob")
	pids := s.WorkerPids()
	awaitDeliveries(t, "before", bob, []*testkit.Client{a0, a1})

	s.Redis.Stop()
	for i := range 3 {
		expectUnavailable(t, bob, fmt.Sprintf("down-%d", i))
	}
	// Every worker notices its subscription is gone (its /readyz says so).
	testkit.Eventually(t, recoveryBound, "every worker has lost its Redis subscription", func() bool {
		for w := range s.Workers {
			if testkit.CountLogs(s.Gateway.Logs(), "redis subscription lost", map[string]any{"worker": w}) == 0 {
				return false
			}
		}
		return true
	})
	assertOpen(t, a0, a1, bob)
	expectTryAgainLater(t, s, "carol")

	s.Redis.Start()
	took := awaitDeliveries(t, "after", bob, []*testkit.Client{a0, a1})
	t.Logf("Redis back -> deliveries on every worker resumed after %s", took)
	assertReadyAgain(t, s)

	assertOpen(t, a0, a1, bob)
	if got := s.WorkerPids(); got[0] != pids[0] || got[1] != pids[1] {
		t.Fatalf("worker pids %v, were %v: a worker restarted", got, pids)
	}
	assertLoggedOncePerWorker(t, s, "redis subscription lost")
	assertLoggedOncePerWorker(t, s, "redis subscription restored")
	hl := s.Handlers.Logs()
	// go-redis's own complaints, one per retry, go through zap too.
	for name, logs := range map[string]string{"gateway": s.Gateway.Logs(), "handlers-svc": hl} {
		for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
			if !strings.HasPrefix(line, "{") {
				t.Errorf("%s wrote a line that is not JSON: %q", name, line)
			}
		}
	}
	if n := testkit.CountLogs(hl, "redis unreachable", nil); n != 1 {
		t.Errorf("handlers-svc logged the Redis outage %d times, want once", n)
	}
	if n := testkit.CountLogs(hl, "redis reachable again", nil); n != 1 {
		t.Errorf("handlers-svc logged the Redis recovery %d times, want once", n)
	}
}

// TestNATSDownAndBack: the NATS server is shut down and started again on
// its port. Sockets stay open; every envelope answers unavailable at once;
// the workers and handlers-svc reconnect and resubscribe by themselves, and
// each logs the loss and the recovery once.
func TestNATSDownAndBack(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	a0, a1 := s.DialOn("alice", 0), s.DialOn("alice", 1)
	b0, b1 := s.DialOn("bob", 0), s.DialOn("bob", 1)
	pids := s.WorkerPids()
	awaitDeliveries(t, "before", b0, []*testkit.Client{a0, a1})

	s.NATS.Stop()
	testkit.Eventually(t, recoveryBound, "every worker has seen NATS go", func() bool {
		for w := range s.Workers {
			if testkit.CountLogs(s.Gateway.Logs(), "nats disconnected", map[string]any{"worker": w}) == 0 {
				return false
			}
		}
		return true
	})
	for i, c := range []*testkit.Client{b0, b1} {
		expectUnavailable(t, c, fmt.Sprintf("down-%d", i))
	}
	assertOpen(t, a0, a1, b0, b1)

	s.NATS.Start()
	back := time.Now()
	awaitDeliveries(t, "after", b0, []*testkit.Client{a0, a1})
	// Each worker reconnects on its own: worker 1's requests flow again too.
	i := 0
	testkit.Eventually(t, recoveryBound, "worker 1's requests are acked again", func() bool {
		i++
		ref := fmt.Sprintf("w1-%d", i)
		b1.Send("sendMessage", map[string]any{"text": "from worker 1"}, ref)
		return b1.ExpectRef(wait+5*time.Second, ref).Event == proto.EventAck
	})
	t.Logf("NATS back -> requests acked on both workers and delivered on every worker after %s", time.Since(back))
	assertReadyAgain(t, s)

	assertOpen(t, a0, a1, b0, b1)
	if got := s.WorkerPids(); got[0] != pids[0] || got[1] != pids[1] {
		t.Fatalf("worker pids %v, were %v: a worker restarted", got, pids)
	}
	assertLoggedOncePerWorker(t, s, "nats disconnected")
	assertLoggedOncePerWorker(t, s, "nats reconnected")
	hl := s.Handlers.Logs()
	for _, msg := range []string{"disconnected", "reconnected"} {
		if n := testkit.CountLogs(hl, msg, map[string]any{"logger": "handlers-svc.nats"}); n != 1 {
			t.Errorf("handlers-svc logged %q %d times, want once", msg, n)
		}
	}
}
