package e2e

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/testkit"
)

// TestWorkersFollowTheUsableCores: without GATEWAY_WORKERS the gateway
// starts one worker per core it may use, as the Go runtime counts them
// (GOMAXPROCS: a container's CPU limit, or the operator's value), not per
// core of the host, and splits them among the workers. Here the operator
// gives it 3 on this 2-core box: 3 workers, each with GOMAXPROCS=1.
// Before, it counted the host's CPUs, 2, and each worker ran with 3.
func TestWorkersFollowTheUsableCores(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 3, Env: []string{"GOMAXPROCS=3", "GATEWAY_WORKERS="}})
	workers := s.Gateway.Children()
	if len(workers) != 3 {
		t.Fatalf("%d workers (pids %v), want 3", len(workers), workers)
	}
	for _, pid := range workers {
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		env := strings.Split(string(environ), "\x00")
		if i := slices.IndexFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GOMAXPROCS=") }); i < 0 || env[i] != "GOMAXPROCS=1" {
			t.Errorf("worker %d: GOMAXPROCS %q, want 1", pid, env[max(i, 0)])
		}
	}
}
