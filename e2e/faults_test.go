package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestWorkerKilledIsRestarted: SIGKILL one worker; the supervisor restarts
// it with the same index, sockets on the other worker keep receiving, and
// new connections succeed, also on the restarted worker.
func TestWorkerKilledIsRestarted(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	a0, a1 := s.DialOn("alice", 0), s.DialOn("alice", 1)
	bob := s.DialOn("bob", 0)

	pids := s.WorkerPids()
	victim := pids[1]
	if victim == 0 || pids[0] == 0 {
		t.Fatalf("worker pids %v", pids)
	}
	killed := time.Now()
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a1.WaitClosed(wait)

	bob.Send("sendMessage", map[string]any{"to": "alice", "text": "still there?"}, "k1")
	if f := bob.ExpectRef(wait, "k1"); f.Event != proto.EventAck {
		t.Fatalf("got %+v, want ack", f)
	}
	a0.ExpectEvent(wait, "message")

	testkit.Eventually(t, 20*time.Second, "worker 1 is restarted with a new pid", func() bool {
		p := s.WorkerPids()[1]
		return p != 0 && p != victim
	})
	s.WaitReady()
	again := s.DialOn("alice", 1)
	t.Logf("worker SIGKILL -> restarted and accepting sockets after %s", time.Since(killed))
	bob.Send("sendMessage", map[string]any{"to": "alice", "text": "welcome back"}, "k2")
	bob.ExpectRef(wait, "k2")
	for _, c := range []*testkit.Client{a0, again} {
		f := c.ExpectEvent(wait, "message")
		if m := decodeMessage(t, f); m.Text != "welcome back" {
			t.Fatalf("worker %d got %s", c.Worker, f.Args)
		}
	}
	if pids[0] != s.WorkerPids()[0] {
		t.Fatal("worker 0 was restarted too")
	}
}

// TestHandlersDownGivesUnavailable: with handlers-svc stopped, clients get
// unavailable at once; started again, service resumes without touching the
// gateway.
func TestHandlersDownGivesUnavailable(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	c := s.Dial("alice")
	s.StopHandlers()

	start := time.Now()
	c.Send("sendMessage", map[string]any{"text": "anyone?"}, "d1")
	f := c.ExpectRef(wait, "d1")
	var e proto.Error
	_ = json.Unmarshal(f.Args, &e)
	if f.Event != proto.EventError || e.Code != proto.CodeUnavailable {
		t.Fatalf("got %s %s, want unavailable", f.Event, f.Args)
	}
	if took := time.Since(start); took >= 5*time.Second {
		t.Fatalf("unavailable took %s: it waited for the handler timeout", took)
	}

	s.StartHandlers()
	gatewayPid := s.Gateway.Pid()
	i := 0
	testkit.Eventually(t, wait, "sendMessage is acked again", func() bool {
		i++
		ref := fmt.Sprintf("r%d", i)
		c.Send("sendMessage", map[string]any{"text": "back?"}, ref)
		return c.ExpectRef(wait, ref).Event == proto.EventAck
	})
	c.ExpectEvent(wait, "message_sent")
	if s.Gateway.Exited() || s.Gateway.Pid() != gatewayPid {
		t.Fatal("gateway was restarted")
	}
}

// TestGracefulShutdownClosesWith1001: SIGTERM to the supervisor closes every
// socket with 1001 and the gateway exits cleanly.
func TestGracefulShutdownClosesWith1001(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	a0, a1 := s.DialOn("alice", 0), s.DialOn("alice", 1)
	s.Gateway.Signal(syscall.SIGTERM)
	for _, c := range []*testkit.Client{a0, a1} {
		if code := testkit.CloseCode(c.WaitClosed(wait)); code != 1001 {
			t.Fatalf("worker %d closed with %d, want 1001", c.Worker, code)
		}
	}
	// GATEWAY_SHUTDOWN_TIMEOUT is 5s in the stack; an idle gateway must
	// not need it, let alone be killed after it.
	if err := s.Gateway.Wait(5 * time.Second); err != nil {
		t.Fatalf("gateway exit: %v", err)
	}
	if logs := s.Gateway.Logs(); strings.Contains(logs, "did not stop in time") {
		t.Fatal("a worker had to be killed at shutdown")
	}
}

// testPanicEventEnv names the event whose handling panics, in a gateway
// built with the faultinject tag (testkit.Binaries builds it so).
const testPanicEventEnv = "SWITCHBOARD_TEST_PANIC_EVENT"

// TestConnectionPanicClosesOnlyThatSocket injects a panic into one socket's
// frame handling (SWITCHBOARD_TEST_PANIC_EVENT, read by the gateway built
// with -tags faultinject, as testkit.Binaries builds it): that socket is
// closed with 1011, the worker keeps running with the same pid, and the
// other sockets, on the same worker too, are untouched.
func TestConnectionPanicClosesOnlyThatSocket(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{testPanicEventEnv + "=explode"}})
	victim := s.DialOn("mallory", 0)
	same, other := s.DialOn("alice", 0), s.DialOn("alice", 1)
	pids := s.WorkerPids()

	victim.Send("explode", nil, "p1")
	err := victim.WaitClosed(wait)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseInternalServerErr {
		t.Fatalf("victim closed with %v, want 1011", err)
	}
	bob := s.DialOn("bob", 0)
	bob.Send("sendMessage", map[string]any{"to": "alice", "text": "after the panic"}, "b1")
	if f := bob.ExpectRef(wait, "b1"); f.Event != proto.EventAck {
		t.Fatalf("got %s %s, want ack", f.Event, f.Args)
	}
	for _, c := range []*testkit.Client{same, other} {
		c.ExpectEvent(wait, "message")
	}
	assertOpen(t, same, other)
	if got := s.WorkerPids(); got[0] != pids[0] || got[1] != pids[1] {
		t.Fatalf("worker pids %v, were %v", got, pids)
	}
	if n := testkit.CountLogs(s.Gateway.Logs(), "panic handling a frame", map[string]any{"worker": 0, "user": "mallory", "conn": victim.Conn}); n != 1 {
		t.Fatalf("the panic was logged %d times with its user and conn, want once", n)
	}
}
