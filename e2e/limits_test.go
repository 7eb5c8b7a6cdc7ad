package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// upgrade tries one upgrade for user: it returns the client on success, or
// the HTTP status and the JSON error body of the refusal.
func upgrade(t *testing.T, s *testkit.Stack, user string) (*testkit.Client, int, proto.Error) {
	t.Helper()
	c, resp, err := testkit.TryDial(t, s.URL(), s.Token(user))
	if err == nil {
		return c, http.StatusSwitchingProtocols, proto.Error{}
	}
	if resp == nil {
		t.Fatalf("upgrade of %s: no response: %v", user, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e struct{ Error proto.Error }
	if resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
		t.Fatalf("refusal of %s: HTTP %d %q, want the JSON error body", user, resp.StatusCode, body)
	}
	return nil, resp.StatusCode, e.Error
}

// openOn opens a socket of user on worker, closing those that land
// elsewhere and retrying those refused (a closed socket frees its place a
// moment later).
func openOn(t *testing.T, s *testkit.Stack, user string, worker int) *testkit.Client {
	t.Helper()
	var got *testkit.Client
	testkit.Eventually(t, recoveryBound, fmt.Sprintf("a socket of %s lands on worker %d", user, worker), func() bool {
		c, _, _ := upgrade(t, s, user)
		if c != nil && c.Worker == worker {
			got = c
			return true
		}
		if c != nil {
			c.Close()
		}
		return false
	})
	return got
}

// TestTooManySocketsRefused: with at most 2 sockets per user and 3 in all
// per worker, a user's third socket on a worker gets HTTP 429
// too_many_connections, a full worker answers HTTP 503 unavailable, and a
// socket that closes frees its place.
func TestTooManySocketsRefused(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{
		"GATEWAY_MAX_CONNS_PER_USER=2", "GATEWAY_MAX_CONNS=3",
	}})
	// Two of alice's sockets on each worker: the caps are per worker.
	alice := []*testkit.Client{openOn(t, s, "alice", 0), openOn(t, s, "alice", 0), openOn(t, s, "alice", 1), openOn(t, s, "alice", 1)}
	for range 20 { // whichever worker it reaches, alice has 2 there already
		_, status, e := upgrade(t, s, "alice")
		if status != http.StatusTooManyRequests || e.Code != proto.CodeTooManyConnections {
			t.Fatalf("alice's fifth socket: HTTP %d %+v, want 429 %s", status, e, proto.CodeTooManyConnections)
		}
	}
	// One more socket of another user fits on each worker, then both are full.
	bob := []*testkit.Client{openOn(t, s, "bob", 0), openOn(t, s, "bob", 1)}
	for range 20 {
		_, status, e := upgrade(t, s, "carol")
		if status != http.StatusServiceUnavailable || e.Code != proto.CodeUnavailable {
			t.Fatalf("a socket beyond the worker's cap: HTTP %d %+v, want 503 %s", status, e, proto.CodeUnavailable)
		}
	}
	// Both refusals are counted, by reason.
	m := s.Metrics()
	for _, reason := range []string{"too_many_connections", "worker_full"} {
		if n := m.Sum("switchboard_gateway_upgrades_refused_total", "reason", reason); n < 20 {
			t.Errorf("upgrades_refused_total{reason=%q} = %v, want at least 20", reason, n)
		}
	}
	// The sockets open are untouched and work.
	bob[0].Send("sendMessage", map[string]any{"to": "alice", "text": "still here"}, "b1")
	if f := bob[0].ExpectRef(wait, "b1"); f.Event != proto.EventAck {
		t.Fatalf("got %s %s, want ack", f.Event, f.Args)
	}
	for _, c := range alice {
		c.ExpectEvent(wait, "message")
	}
	// A socket that closes frees its place on its worker.
	bob[1].Close()
	if c := openOn(t, s, "carol", 1); c.Worker != 1 {
		t.Fatal("carol did not get bob's place")
	}
}
