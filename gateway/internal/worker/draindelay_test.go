package worker

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestSlowHTTPClientDoesNotHoldTheDrain: Worker.shutdown called srv.Shutdown, which
// waits for every active HTTP connection of the client port, before it
// closes any socket with 1001. Anyone who can reach the port can make a
// connection active for httpserver.ReadTimeout (10 s): a GET that
// announces a body and never sends it (net/http reads the body it would
// discard before it answers, until the read deadline); a connection that
// sends nothing holds it for 5 s likewise. Meanwhile no idle socket is
// closed, though docs/operations.md says one with no request in flight is
// closed at once; with the default GATEWAY_SHUTDOWN_TIMEOUT (10 s) the
// whole drain budget goes, and sockets with requests in flight are closed
// at the deadline without waiting for their answers.
func TestSlowHTTPClientDoesNotHoldTheDrain(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	cfg.ShutdownTimeout = 3 * wait
	r := startWorker(t, cfg, 0)
	idle := testkit.Dial(t, "ws://"+r.addr+"/socket", token(t, "bob", time.Hour))

	conn, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// Accepted: the listener hands connections over in order, so one
	// made after it and answered means the worker holds this one too.
	// (net/http answers it only once the body is read, at the deadline.)
	if code := status("http://" + r.addr + "/healthz"); code != http.StatusOK {
		t.Fatalf("healthz = %d", code)
	}

	r.cancel()
	err = idle.WaitClosed(wait + wait)
	if code := testkit.CloseCode(err); code != proto.CloseGoingAway {
		t.Errorf("idle socket closed with %d, want 1001", code)
	}
	// The half-sent request is still unanswered (net/http waits for its
	// body until the read deadline): the idle socket did not wait for it.
	_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := conn.Read(make([]byte, 1)); err == nil || !isTimeout(err) {
		t.Errorf("the half-sent request was answered or closed (%d bytes, %v) before the idle socket closed: it held the drain", n, err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
