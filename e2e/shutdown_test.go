package e2e

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// load keeps clients sending sendMessage envelopes, each with its own ref,
// until stopped or their socket fails.
type load struct {
	clients []*testkit.Client
	stop    chan struct{}
	wg      sync.WaitGroup
	sent    [][]string // refs sent, per client; read after wait
}

// A load client sends at most maxLoadSends envelopes, so a test that goes
// wrong does not flood the machine.
const maxLoadSends = 3000

// startLoad has every client send one envelope each period.
func startLoad(clients []*testkit.Client, period time.Duration) *load {
	l := &load{clients: clients, stop: make(chan struct{}), sent: make([][]string, len(clients))}
	for i, c := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(period)
			defer tick.Stop()
			for n := range maxLoadSends {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				ref := fmt.Sprintf("%s-%d", c.User, n)
				if c.TrySend("sendMessage", map[string]any{"text": ref}, ref) != nil {
					return // the socket is closed
				}
				l.sent[i] = append(l.sent[i], ref)
			}
		}()
	}
	return l
}

// wait stops the senders and waits for them.
func (l *load) wait() {
	close(l.stop)
	l.wg.Wait()
}

// answers returns the ack or error frames a client received, by ref; it
// fails the test if a ref was answered twice.
func answers(t *testing.T, c *testkit.Client) map[string]proto.Frame {
	t.Helper()
	out := map[string]proto.Frame{}
	for _, f := range c.Frames() {
		if f.Event != proto.EventAck && f.Event != proto.EventError {
			continue
		}
		if prev, dup := out[f.Ref]; dup {
			t.Fatalf("%s: ref %q answered twice: %s %s, then %s %s", c.User, f.Ref, prev.Event, prev.Args, f.Event, f.Args)
		}
		out[f.Ref] = f
	}
	return out
}

// servedRefs returns the refs handlers-svc logged as served for user,
// with their result codes.
func servedRefs(handlersLogs, user string) map[string]string {
	out := map[string]string{}
	for _, l := range testkit.LogLines(handlersLogs) {
		if l["msg"] == "event served" && l["user"] == user {
			ref, _ := l["ref"].(string)
			code, _ := l["code"].(string)
			out[ref] = code
		}
	}
	return out
}

// awaitAcks waits until every client has had n acks.
func awaitAcks(t *testing.T, clients []*testkit.Client, n int) {
	t.Helper()
	testkit.Eventually(t, recoveryBound, fmt.Sprintf("every client has %d acks", n), func() bool {
		for _, c := range clients {
			acks := 0
			for _, f := range c.Frames() {
				if f.Event == proto.EventAck {
					acks++
				}
			}
			if acks < n {
				return false
			}
		}
		return true
	})
}

func loadClients(s *testkit.Stack, n int) []*testkit.Client {
	var out []*testkit.Client
	for i := range n {
		out = append(out, s.DialOn(fmt.Sprintf("load%d", i), i%s.Workers))
	}
	return out
}

// TestGatewaySIGTERMUnderLoad sends SIGTERM to the gateway while clients
// on both workers keep sending. "No request left half done" is checked as
// docs/protocol.md section 2 allows: every envelope handlers-svc served is answered
// on its socket before the close, no envelope is answered twice or with
// anything but its result or unavailable (never a timeout), and envelopes
// the gateway had not read when it closed the socket are not answered and
// were not served. Every socket gets 1001 and the gateway exits within its
// shutdown deadline without killing a worker.
func TestGatewaySIGTERMUnderLoad(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_RATE_LIMIT=0", "GATEWAY_USER_RATE_LIMIT=0"}})
	clients := loadClients(s, 6)
	// 1,000 envelopes a second per client: enough that some are in flight,
	// some just read and some not yet read when the gateway stops.
	l := startLoad(clients, time.Millisecond)
	awaitAcks(t, clients, 20)

	stopped := time.Now()
	s.Gateway.Signal(syscall.SIGTERM)
	for _, c := range clients {
		if code := testkit.CloseCode(c.WaitClosed(wait)); code != 1001 {
			t.Errorf("%s on worker %d closed with %d, want 1001", c.User, c.Worker, code)
		}
	}
	l.wait()
	// The stack's GATEWAY_SHUTDOWN_TIMEOUT is 5s; the supervisor kills a
	// worker 5s after that. Exiting cleanly within the bound, with no
	// worker killed, is the check; the bound is generous.
	if err := s.Gateway.Wait(20 * time.Second); err != nil {
		t.Fatalf("gateway exit: %v", err)
	}
	t.Logf("gateway exited %s after SIGTERM (GATEWAY_SHUTDOWN_TIMEOUT 5s)", time.Since(stopped))
	logs := s.Gateway.Logs()
	for _, bad := range []string{"did not stop in time", "still in flight at the deadline", "still open at the shutdown deadline"} {
		if strings.Contains(logs, bad) {
			t.Errorf("gateway logs %q", bad)
		}
	}

	hl := s.Handlers.Logs()
	total, answered, unavailable := 0, 0, 0
	for i, c := range clients {
		got := answers(t, c)
		served := servedRefs(hl, c.User)
		for _, ref := range l.sent[i] {
			total++
			f, ok := got[ref]
			if code, wasServed := served[ref]; wasServed && !ok {
				t.Errorf("%s: %s was served by handlers-svc (%s) but never answered", c.User, ref, code)
			}
			if !ok {
				continue
			}
			answered++
			switch code := errorCode(f); {
			case f.Event == proto.EventAck:
				if served[ref] != "ok" {
					t.Errorf("%s: %s acked but not served", c.User, ref)
				}
			case code == proto.CodeUnavailable:
				unavailable++
			default:
				t.Errorf("%s: %s answered %s %s", c.User, ref, f.Event, f.Args)
			}
		}
	}
	t.Logf("%d envelopes sent, %d answered before the 1001 (%d of them unavailable: arrived while shutting down), %d unread at the close",
		total, answered, unavailable, total-answered)
}

// TestHandlersSIGTERMUnderLoad sends SIGTERM to handlers-svc while clients
// keep sending: it drains its NATS subscription, so every request it took
// is answered with its real result (an ack), none times out, and the
// requests after it left get unavailable at once. handlers-svc exits 0.
func TestHandlersSIGTERMUnderLoad(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_RATE_LIMIT=0", "GATEWAY_USER_RATE_LIMIT=0"}})
	clients := loadClients(s, 6)
	l := startLoad(clients, 5*time.Millisecond) // 200 envelopes a second each
	awaitAcks(t, clients, 20)

	stopped := time.Now()
	s.Handlers.Signal(syscall.SIGTERM)
	if err := s.Handlers.Wait(20 * time.Second); err != nil {
		t.Fatalf("handlers-svc exit: %v", err)
	}
	t.Logf("handlers-svc drained and exited %s after SIGTERM", time.Since(stopped))
	if testkit.CountLogs(s.Handlers.Logs(), "drained", nil) != 1 {
		t.Error("handlers-svc did not log that it drained")
	}
	// Load goes on against no handlers-svc until every client has seen it.
	testkit.Eventually(t, recoveryBound, "every client has had an unavailable answer", func() bool {
		for _, c := range clients {
			seen := false
			for _, f := range c.Frames() {
				seen = seen || errorCode(f) == proto.CodeUnavailable
			}
			if !seen {
				return false
			}
		}
		return true
	})
	l.wait()
	// Every envelope sent gets its answer: the gateway is up.
	for i, c := range clients {
		testkit.Eventually(t, recoveryBound, c.User+"'s envelopes are all answered", func() bool {
			return len(answers(t, c)) >= len(l.sent[i])
		})
	}
	hl := s.Handlers.Logs()
	total, acked, unavailable := 0, 0, 0
	for i, c := range clients {
		got := answers(t, c)
		served := servedRefs(hl, c.User)
		for _, ref := range l.sent[i] {
			total++
			f := got[ref]
			switch code := errorCode(f); {
			case f.Event == proto.EventAck:
				acked++
				if served[ref] != "ok" {
					t.Errorf("%s: %s acked but not served", c.User, ref)
				}
			case code == proto.CodeUnavailable:
				unavailable++
				if _, wasServed := served[ref]; wasServed {
					t.Errorf("%s: %s was served (%s) but answered unavailable: its reply was lost", c.User, ref, served[ref])
				}
			default:
				t.Errorf("%s: %s answered %s %s", c.User, ref, f.Event, f.Args)
			}
		}
	}
	assertOpen(t, clients...)
	t.Logf("%d envelopes: %d acked (served before or during the drain), %d unavailable (after handlers-svc left)", total, acked, unavailable)
}

// TestSIGTERMClosesIdleSocketsAtOnce: on SIGTERM a worker closes a socket
// with no request in flight with 1001 at once, while another socket on the
// same worker waits for a slow handler; that one gets its answer, then
// 1001. Its client, not the idle one's, is the only one left on a gateway
// that refuses every new envelope. The handler is the test's own NATS
// responder, in place of handlers-svc, so that it answers when told.
func TestSIGTERMClosesIdleSocketsAtOnce(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 1, Env: []string{"GATEWAY_HANDLER_TIMEOUT=15s", "GATEWAY_SHUTDOWN_TIMEOUT=20s"}})
	s.StopHandlers()
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	asked := make(chan *nats.Msg, 1)
	if _, err := nc.QueueSubscribe(proto.SubjectAll, proto.QueueGroup, func(m *nats.Msg) { asked <- m }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	slow, idle := s.DialOn("alice", 0), s.DialOn("bob", 0)
	slow.Send("sendMessage", map[string]any{"to": "bob", "text": "hi"}, "r1")
	var m *nats.Msg
	select {
	case m = <-asked:
	case <-time.After(wait):
		t.Fatal("the handler was not asked")
	}
	s.Gateway.Signal(syscall.SIGTERM)
	if code := testkit.CloseCode(idle.WaitClosed(wait)); code != proto.CloseGoingAway {
		t.Errorf("idle socket closed with %d, want 1001", code)
	}
	if closed, err := slow.Closed(); closed {
		t.Fatalf("the socket with a request in flight closed before its answer: %v", err)
	}
	if err := m.Respond(proto.AppendReply(nil, nil)); err != nil {
		t.Fatal(err)
	}
	if f := slow.ExpectRef(wait, "r1"); f.Event != proto.EventAck {
		t.Errorf("request in flight at SIGTERM got %+v, want its ack", f)
	}
	if code := testkit.CloseCode(slow.WaitClosed(wait)); code != proto.CloseGoingAway {
		t.Errorf("slow socket closed with %d, want 1001", code)
	}
	if err := s.Gateway.Wait(wait); err != nil {
		t.Fatalf("gateway exit: %v", err)
	}
}
