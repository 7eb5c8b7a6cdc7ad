package e2e

import (
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestHungWorkerIsKilledAndRestarted stops one of two workers (SIGSTOP: a
// real hang, the process alive, its sockets open, nothing served). The
// supervisor's watchdog (GATEWAY_WORKER_HANG_TIMEOUT, 2s here) kills it
// once it has been silent that long, not before; the worker is restarted
// with its index and serves new sockets, the hung worker's sockets are
// closed, and the other worker's stay open and keep receiving.
func TestHungWorkerIsKilledAndRestarted(t *testing.T) {
	const hangTimeout = 2 * time.Second
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_WORKER_HANG_TIMEOUT=" + hangTimeout.String()}})
	a0, a1 := s.DialOn("alice", 0), s.DialOn("alice", 1)
	bob := s.DialOn("bob", 0)

	pids := s.WorkerPids()
	victim := pids[1]
	if victim == 0 || pids[0] == 0 {
		t.Fatalf("worker pids %v", pids)
	}
	stopped := time.Now()
	if err := syscall.Kill(victim, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted { // the watchdog failed: do not leave a stopped process behind
			_ = syscall.Kill(victim, syscall.SIGKILL)
		}
	})

	// The hung worker's socket is closed by the kill, the other's stays.
	a1.WaitClosed(hangTimeout + 20*time.Second)
	testkit.Eventually(t, 20*time.Second, "worker 1 is restarted with a new pid", func() bool {
		p := s.WorkerPids()[1]
		return p != 0 && p != victim
	})
	restarted = true
	took := time.Since(stopped)
	t.Logf("worker SIGSTOP -> killed and restarted after %s (hang timeout %s)", took, hangTimeout)
	if took < hangTimeout {
		t.Errorf("worker 1 replaced %s after it stopped, before the %s hang timeout", took, hangTimeout)
	}
	logs := s.Gateway.Logs()
	if n := testkit.CountLogs(logs, "worker hung", map[string]any{"worker": 1, "pid": victim}); n != 1 {
		t.Errorf("%d watchdog lines for worker 1 (pid %d), want 1", n, victim)
	}
	if n := testkit.CountLogs(logs, "worker hung", nil); n != 1 {
		t.Errorf("%d watchdog lines in all, want 1: worker 0 must not be taken for hung", n)
	}

	s.WaitReady()
	again := s.DialOn("alice", 1)
	bob.Send("sendMessage", map[string]any{"to": "alice", "text": "after the hang"}, "h1")
	if f := bob.ExpectRef(wait, "h1"); f.Event != proto.EventAck {
		t.Fatalf("got %+v, want ack", f)
	}
	for _, c := range []*testkit.Client{a0, again} {
		f := c.ExpectEvent(wait, "message")
		if m := decodeMessage(t, f); m.Text != "after the hang" {
			t.Fatalf("worker %d got %s", c.Worker, f.Args)
		}
	}
	if closed, err := a0.Closed(); closed {
		t.Fatalf("socket on worker 0 closed (%v): only the hung worker's sockets may be", err)
	}
	if p := s.WorkerPids()[0]; p != pids[0] {
		t.Fatalf("worker 0 was replaced (pid %d -> %d)", pids[0], p)
	}

	m := s.Metrics()
	if n := m.Sum("switchboard_gateway_worker_hangs_total"); n != 1 {
		t.Errorf("switchboard_gateway_worker_hangs_total = %v, want 1", n)
	}
	if n := m.Sum("switchboard_gateway_worker_restarts_total"); n != 1 {
		t.Errorf("switchboard_gateway_worker_restarts_total = %v, want 1", n)
	}
	resp, err := http.Get("http://" + s.MetricsAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("supervisor /healthz = %d once the hung worker is replaced, want 200", resp.StatusCode)
	}
}
