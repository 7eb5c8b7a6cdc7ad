package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
)

// presenceTTL is the gateway's GATEWAY_PRESENCE_TTL in TestPresence: the
// shortest, so a killed worker's sockets lapse quickly.
const presenceTTL = 3 * time.Second

// presence GETs /v1/presence of s for users and returns the counts, or
// nil if the request failed.
func presence(t *testing.T, s *testkit.Stack, users ...string) map[string]int {
	t.Helper()
	q := url.Values{"user": users}
	req, err := http.NewRequest(http.MethodGet, "http://"+s.HandlersAddr+"/v1/presence?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Logf("GET /v1/presence: %v", err)
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body struct {
		Users map[string]int `json:"users"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &body) != nil {
		t.Logf("GET /v1/presence: %d %s", resp.StatusCode, b)
		return nil
	}
	return body.Users
}

// TestPresence: GET /v1/presence counts a user's sockets on every worker
// of the real gateway: 2 with one on each, 1 once one closes; and when a
// worker is killed with SIGKILL, which removes nothing itself, its
// sockets stop counting, those of a user it alone served included: with
// the lifecycle hooks off, within GATEWAY_PRESENCE_TTL, as their leases
// lapse; with them on, at once, as the worker started in its place
// removes them before it announces their disconnects.
func TestPresence(t *testing.T) {
	for _, hooks := range []string{"off", "on"} {
		t.Run("hooks "+hooks, func(t *testing.T) { testPresence(t, hooks == "on") })
	}
}

func testPresence(t *testing.T, hooks bool) {
	onOff := map[bool]string{false: "off", true: "on"}[hooks]
	s := testkit.StartStack(t, testkit.StackOptions{
		Workers:     2,
		Env:         []string{"GATEWAY_PRESENCE_TTL=" + presenceTTL.String(), "GATEWAY_LIFECYCLE_HOOKS=" + onOff},
		HandlersEnv: []string{"HANDLERS_API_KEY=" + apiKey},
	})
	a0, _ := s.DialOn("alice", 0), s.DialOn("alice", 1)
	s.DialOn("carol", 1)
	testkit.Eventually(t, wait, "alice counts 2, carol 1, nobody 0", func() bool {
		got := presence(t, s, "alice", "carol", "nobody")
		return got["alice"] == 2 && got["carol"] == 1 && got["nobody"] == 0 && len(got) == 3
	})

	a0.CloseNormally()
	testkit.Eventually(t, wait, "alice counts 1 once her socket on worker 0 closed", func() bool {
		return presence(t, s, "alice")["alice"] == 1
	})
	s.DialOn("alice", 0)
	testkit.Eventually(t, wait, "alice counts 2 again", func() bool {
		return presence(t, s, "alice")["alice"] == 2
	})

	pid, ok := s.WorkerPids()[1]
	if !ok {
		t.Fatalf("no pid for worker 1 in %v", s.WorkerPids())
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill worker 1 (pid %d): %v", pid, err)
	}
	killed := time.Now()
	// Within the TTL of the last refresh before the kill, and a margin
	// for a loaded machine.
	testkit.Eventually(t, presenceTTL+2*time.Second, "worker 1's sockets stop counting", func() bool {
		got := presence(t, s, "alice", "carol")
		return got != nil && got["alice"] == 1 && got["carol"] == 0
	})
	lapsed := time.Since(killed)
	switch {
	case !hooks && lapsed < presenceTTL/3:
		t.Errorf("the killed worker's leases lapsed %s after the kill, before any lease could expire: removed by something else?", lapsed)
	case hooks && lapsed >= 2*presenceTTL/3:
		// The last refresh was at most TTL/3 before the kill, so no lease
		// could lapse sooner: a removal, with room for a slow restart.
		t.Errorf("the killed worker's leases went %s after the kill: lapsed, not removed by its replacement", lapsed)
	}
	t.Logf("with the hooks %s, worker 1's leases stopped counting %s after its SIGKILL", onOff, lapsed.Round(time.Millisecond))
}
