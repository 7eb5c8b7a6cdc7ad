package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
)

// perUserStack starts a stack of two workers in FANOUT_MODE=per_user
// (whatever E2E_FANOUT_MODE says), with the dispatch API on.
func perUserStack(t *testing.T, gatewayEnv ...string) *testkit.Stack {
	t.Helper()
	return testkit.StartStack(t, testkit.StackOptions{
		Workers:     2,
		Env:         append([]string{"FANOUT_MODE=per_user"}, gatewayEnv...),
		HandlersEnv: []string{"FANOUT_MODE=per_user", "HANDLERS_API_KEY=" + apiKey},
	})
}

// perWorker returns a gateway metric of every worker, by worker index.
func perWorker(t *testing.T, s *testkit.Stack, name string) map[int]float64 {
	t.Helper()
	return s.Metrics().PerWorker(name)
}

// TestPerUserWorkerGetsOnlyItsUsers: in per-user mode a worker that holds
// no socket of bob receives none of bob's dispatches (its dispatch counter
// does not move for them, where in shared mode every worker counts every
// dispatch); broadcasts still reach every worker, and no worker receives a
// dispatch it has no socket for.
func TestPerUserWorkerGetsOnlyItsUsers(t *testing.T) {
	s := perUserStack(t)
	alice, bob := s.DialOn("alice", 0), s.DialOn("bob", 1)
	testkit.Eventually(t, wait, "each worker subscribed to its one user's channel", func() bool {
		ch := perWorker(t, s, "switchboard_gateway_fanout_user_channels")
		return ch[0] == 1 && ch[1] == 1
	})
	before := perWorker(t, s, "switchboard_gateway_dispatches_total")
	unroutedBefore := perWorker(t, s, "switchboard_gateway_dispatches_unrouted_total")

	const n = 20
	for i := range n {
		if status, body := postDispatch(t, s, apiKey, fmt.Sprintf(`{"event":"tick","args":{"n":%d},"users":["bob"]}`, i)); status != http.StatusOK {
			t.Fatalf("dispatch %d: %d %s", i, status, body)
		}
	}
	for i := range n {
		if f := bob.ExpectEvent(wait, "tick"); string(f.Args) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("bob's tick %d: %s", i, f.Args)
		}
	}
	if status, body := postDispatch(t, s, apiKey, `{"event":"news","broadcast":true}`); status != http.StatusOK {
		t.Fatalf("broadcast: %d %s", status, body)
	}
	// Last, after bob's: once alice has it, worker 0 has read everything
	// published before it.
	if status, body := postDispatch(t, s, apiKey, `{"event":"marker","users":["alice"]}`); status != http.StatusOK {
		t.Fatalf("marker: %d %s", status, body)
	}
	alice.ExpectEvent(wait, "news")
	bob.ExpectEvent(wait, "news")
	alice.ExpectEvent(wait, "marker")
	for _, f := range alice.Frames() {
		if f.Event == "tick" {
			t.Fatalf("alice got bob's tick: %+v", f)
		}
	}

	after := perWorker(t, s, "switchboard_gateway_dispatches_total")
	unrouted := perWorker(t, s, "switchboard_gateway_dispatches_unrouted_total")
	if got := after[0] - before[0]; got != 2 {
		t.Errorf("worker 0 (alice only) received %g dispatches, want 2: the broadcast and alice's marker, none of bob's %d", got, n)
	}
	if got := after[1] - before[1]; got != n+1 {
		t.Errorf("worker 1 (bob) received %g dispatches, want %d", got, n+1)
	}
	for w := range s.Workers {
		if d := unrouted[w] - unroutedBefore[w]; d != 0 {
			t.Errorf("worker %d received %g dispatches with no local recipient, want 0", w, d)
		}
	}
}

// resumeOn connects user with resume=pos until a socket lands on worker,
// closing those that land elsewhere, and fails unless it recovered.
func resumeOn(t *testing.T, s *testkit.Stack, user, pos string, worker int) *testkit.Client {
	t.Helper()
	for range 200 {
		c := testkit.Dial(t, s.URL()+"?resume="+url.QueryEscape(pos), s.Token(user))
		if c.Worker != worker {
			c.Close()
			continue
		}
		if r := c.Connected.Recovered; r == nil || !*r {
			t.Fatalf("resume from %s on worker %d: connected %+v, want recovered", pos, worker, c.Connected)
		}
		return c
	}
	t.Fatalf("no socket of %s landed on worker %d in 200 tries", user, worker)
	return nil
}

// TestPerUserMovingUserLosesNothing: while a backend dispatches to bob
// without pause, bob's device moves from worker to worker, resuming each
// time from the last event it processed; some moves come back to a worker
// within the linger (its subscription reused), others after it (released
// and subscribed anew). bob gets every event exactly once, in order, and
// every resume recovers.
func TestPerUserMovingUserLosesNothing(t *testing.T) {
	const linger = 300 * time.Millisecond
	s := perUserStack(t, "GATEWAY_FANOUT_LINGER="+linger.String())

	bob := s.DialOn("bob", 0)
	last := bob.Connected.Pos // until a tick comes

	// Started once bob is connected: bob must get every tick, from 0.
	var sent atomic.Int64
	stop, done := make(chan struct{}), make(chan error, 1)
	stopSender := sync.OnceValue(func() error { close(stop); return <-done })
	t.Cleanup(func() { _ = stopSender() }) // also when the test fails early
	go func() {
		// About 200 a second: a steady stream, and far fewer events than
		// GATEWAY_MAX_REPLAY while bob is away.
		pace := time.NewTicker(5 * time.Millisecond)
		defer pace.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			case <-pace.C:
			}
			body := fmt.Sprintf(`{"event":"tick","args":{"n":%d},"users":["bob"]}`, i)
			req, _ := http.NewRequest(http.MethodPost, "http://"+s.HandlersAddr+"/v1/dispatch", bytes.NewBufferString(body))
			req.Header.Set("Authorization", "Bearer "+apiKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				done <- fmt.Errorf("dispatch %d: HTTP %d", i, resp.StatusCode)
				return
			}
			sent.Store(int64(i + 1))
		}
	}()

	next := 0 // the next tick bob must get
	take := func(c *testkit.Client) string {
		t.Helper()
		last := ""
		for _, f := range c.Frames() {
			if f.Event != "tick" {
				continue
			}
			var args struct{ N int }
			if err := json.Unmarshal(f.Args, &args); err != nil {
				t.Fatal(err)
			}
			if args.N != next {
				t.Fatalf("bob on worker %d got tick %d, want %d", c.Worker, args.N, next)
			}
			next++
			last = f.Pos
		}
		return last
	}

	// worker 1, back to 0 within the linger, 1 again after it, and so on.
	moves := []struct {
		to    int
		pause time.Duration
	}{{1, 0}, {0, 0}, {1, 2 * linger}, {0, 2 * linger}, {1, 0}, {0, 2 * linger}, {1, 0}}
	for _, m := range moves {
		testkit.Eventually(t, wait, "a few ticks on this socket", func() bool {
			n := 0
			for _, f := range bob.Frames() {
				if f.Event == "tick" {
					n++
				}
			}
			return n >= 3
		})
		bob.Close()
		_ = bob.WaitClosed(wait)
		if p := take(bob); p != "" {
			last = p
		}
		time.Sleep(m.pause) // the time away is the scenario itself
		bob = resumeOn(t, s, "bob", last, m.to)
	}
	if err := stopSender(); err != nil {
		t.Fatal(err)
	}
	total := int(sent.Load())
	testkit.Eventually(t, wait, "every tick on the last socket", func() bool {
		n := 0
		for _, f := range bob.Frames() {
			if f.Event == "tick" {
				n++
			}
		}
		return next+n >= total
	})
	take(bob)
	if next != total {
		t.Fatalf("bob got %d ticks, %d were sent", next, total)
	}
	t.Logf("%d ticks over %d moves, none lost or repeated", total, len(moves))
}

// TestFanoutModeMismatchDetected: with handlers-svc publishing per user and
// the gateway left in shared mode (the pair docs/operations.md says never
// to run: its sockets get no dispatch to their users), handlers-svc finds
// both workers within its 10 s check, exports them and logs it once.
func TestFanoutModeMismatchDetected(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{
		Workers:     2,
		Env:         []string{"FANOUT_MODE=shared"},
		HandlersEnv: []string{"FANOUT_MODE=per_user"},
	})
	testkit.Eventually(t, 30*time.Second, "handlers-svc counting the shared workers", func() bool {
		return s.HandlersMetrics().Sum("switchboard_handlers_fanout_shared_workers") == 2
	})
	if n := testkit.CountLogs(s.Handlers.Logs(), "gateway workers run FANOUT_MODE=shared", nil); n != 1 {
		t.Errorf("the mismatch logged %d times, want once", n)
	}
}
