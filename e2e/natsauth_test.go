package e2e

import (
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/switchboard/switchboard/internal/testkit"
)

// rotatingAuth is a NATS server's authentication with one user whose
// password the test changes, counting the connections it refuses by
// client name.
type rotatingAuth struct {
	mu       sync.Mutex
	password string
	refused  map[string]int
}

func (a *rotatingAuth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	a.mu.Lock()
	defer a.mu.Unlock()
	if o.Username == "switchboard" && o.Password == a.password {
		return true
	}
	a.refused[o.Name]++
	return false
}

func (a *rotatingAuth) set(password string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.password = password
}

func (a *rotatingAuth) refusals(name string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refused[name]
}

// TestNATSCredentialsRefusedThenRestored: NATS's password is changed
// before the services' (a rotation done in the wrong order) and NATS
// restarts, so every reconnect is refused; then the old password is put
// back. Both services keep retrying through the refusals, log why once
// ("nats refuses the credentials, retrying", with the error), and serve
// again by themselves: with nats.go's default, the second refusal closed
// their connections for good, and neither ever served again without a
// restart, while their liveness stayed green.
func TestNATSCredentialsRefusedThenRestored(t *testing.T) {
	auth := &rotatingAuth{password: "old-password", refused: map[string]int{}}
	n := testkit.StartNATSWith(t, func(o *server.Options) { o.CustomClientAuthentication = auth })
	url := fmt.Sprintf("nats://switchboard:old-password@127.0.0.1:%d", n.Port)
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, NATS: n,
		Env: []string{"NATS_URL=" + url}, HandlersEnv: []string{"NATS_URL=" + url}})
	a0, a1 := s.DialOn("alice", 0), s.DialOn("alice", 1)
	bob := s.Dial("bob")
	awaitDeliveries(t, "before", bob, []*testkit.Client{a0, a1})

	auth.set("new-password")
	n.Stop()
	n.Start()
	// Several refusals each: nats.go gave up at the second.
	testkit.Eventually(t, recoveryBound, "every connection is refused more than twice", func() bool {
		return auth.refusals("handlers-svc") > 3 && auth.refusals("switchboard-gateway") > 3*s.Workers
	})
	testkit.Eventually(t, recoveryBound, "both services log the refusal", func() bool {
		for w := range s.Workers {
			if testkit.CountLogs(s.Gateway.Logs(), "nats refuses the credentials", map[string]any{"worker": w}) == 0 {
				return false
			}
		}
		return testkit.CountLogs(s.Handlers.Logs(), "nats refuses the credentials", nil) > 0
	})
	expectUnavailable(t, bob, "refused")

	auth.set("old-password")
	took := awaitDeliveries(t, "after", bob, []*testkit.Client{a0, a1})
	t.Logf("credentials accepted again -> deliveries on every worker resumed after %s", took)
	assertOpen(t, a0, a1, bob)
	for w := range s.Workers {
		if n := testkit.CountLogs(s.Gateway.Logs(), "nats refuses the credentials", map[string]any{"worker": w}); n > 2 {
			t.Errorf("worker %d logged the refusal %d times, want once (twice if 30 s passed)", w, n)
		}
	}
}
