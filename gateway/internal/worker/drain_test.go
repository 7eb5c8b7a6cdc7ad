package worker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestShutdownClosesEachSocketOnceAnswered checks that a stopping worker
// closes each socket with 1001 as soon as its own requests in flight have
// been answered, not when every socket's have: an idle socket is closed at
// once while another waits for a slow handler, and so reconnects elsewhere
// instead of having its envelopes refused until the slowest answer. The
// waiting socket still gets its answer, then 1001; an envelope it sends
// meanwhile is refused, unforwarded, as the worker is shutting down.
func TestShutdownClosesEachSocketOnceAnswered(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	asked := handlerRequests(t, n.URL(), 4)
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	// Longer than the test waits for the idle socket: a worker that closes
	// sockets only at the end of the drain fails it.
	cfg.ShutdownTimeout = 3 * wait
	cfg.HandlerTimeout = 3 * wait
	r := startWorker(t, cfg, 0)
	url := "ws://" + r.addr + "/socket"
	slow := testkit.Dial(t, url, token(t, "alice", time.Hour))
	idle := testkit.Dial(t, url, token(t, "bob", time.Hour))
	slow.Send("slow", nil, "r1")
	var m *nats.Msg
	select {
	case m = <-asked:
	case <-time.After(wait):
		t.Fatal("the handler was not asked")
	}

	r.cancel()
	if code := testkit.CloseCode(idle.WaitClosed(wait)); code != proto.CloseGoingAway {
		t.Errorf("idle socket closed with %d, want 1001", code)
	}
	// The slow socket is still open, waiting for its answer: what it sends
	// now is refused and not forwarded.
	slow.Send("more", nil, "r2")
	f := slow.ExpectRef(wait, "r2")
	var e proto.Error
	if f.Event != proto.EventError || json.Unmarshal(f.Args, &e) != nil || e.Code != proto.CodeUnavailable || e.Message != "gateway is shutting down, reconnect and retry" {
		t.Errorf("envelope sent while its socket drains got %+v, want unavailable: gateway is shutting down", f)
	}
	if closed, err := slow.Closed(); closed {
		t.Fatalf("socket with a request in flight closed before its answer: %v", err)
	}
	if err := m.Respond(proto.AppendReply(nil, nil)); err != nil {
		t.Fatal(err)
	}
	if f := slow.ExpectRef(wait, "r1"); f.Event != proto.EventAck {
		t.Errorf("request in flight at shutdown got %+v, want its ack", f)
	}
	if code := testkit.CloseCode(slow.WaitClosed(wait)); code != proto.CloseGoingAway {
		t.Errorf("slow socket closed with %d, want 1001", code)
	}
	select {
	case m := <-asked:
		t.Errorf("the handler was asked %s after shutdown began", m.Data)
	default:
	}
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return")
	}
}
