package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redisconn"
	"github.com/switchboard/switchboard/internal/testkit"
)

// lostWithin bounds the time from a worker's SIGKILL to the disconnect
// hooks of all its sockets: the restart's back-off (100 ms), the new
// worker's start and its wait for NATS and Redis, on a busy box with
// race-detector builds.
const lostWithin = 20 * time.Second

// TestLifecycleLostWorker: a handlers-svc built with hooks, behind a real
// 2-worker gateway with presence on. Worker 0, holding alice's two
// sockets and one of bob's, is killed with SIGKILL. The worker started in
// its place announces the disconnect of each of the three to the hook,
// with 1006 and worker_lost, within lostWithin (far below the presence
// TTL): of alice's two exactly one says she has 0 sockets left, bob's
// says 1 (his socket on worker 1, which stays open and is not
// announced, nor is carol's there). The supervisor counts the three
// handed over, and the new worker the three announced.
func TestLifecycleLostWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module: not in -short")
	}
	bin := buildHookService(t)
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, HandlersBin: bin})

	dial := func(user string, worker int) *testkit.Client {
		c := s.DialOn(user, worker)
		c.ExpectEvent(wait, "welcome") // its connect was announced
		return c
	}
	dead := []*testkit.Client{dial("alice", 0), dial("alice", 0), dial("bob", 0)}
	alive := []*testkit.Client{dial("bob", 1), dial("carol", 1)}

	pid, ok := s.WorkerPids()[0]
	if !ok {
		t.Fatalf("no pid for worker 0 in %v", s.WorkerPids())
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill worker 0 (pid %d): %v", pid, err)
	}
	for _, c := range dead {
		_ = c.WaitClosed(wait)
	}

	rdb, err := redisconn.New(s.RedisURL(), redisconn.Tuning{}) // a Redis Cluster too
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	record := func() map[string][]string { // conn -> its disconnects' "code reason sockets"
		got, err := rdb.LRange(context.Background(), "e2e:disconnects", 0, -1).Result()
		if err != nil {
			return nil
		}
		out := map[string][]string{}
		for _, r := range got {
			conn, rest, _ := strings.Cut(r, " ")
			out[conn] = append(out[conn], rest)
		}
		return out
	}
	var got map[string][]string
	testkit.Eventually(t, lostWithin, "the disconnect hook heard of every socket of the killed worker", func() bool {
		got = record()
		for _, c := range dead {
			if len(got[c.Conn]) == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("every disconnect heard %s after the kill", time.Since(killed).Round(time.Millisecond))

	want := map[string]string{dead[0].Conn: "alice", dead[1].Conn: "alice", dead[2].Conn: "bob"}
	var aliceLeft []string
	for _, c := range dead {
		if len(got[c.Conn]) != 1 {
			t.Errorf("%s's socket %s: disconnects %q, want one", want[c.Conn], c.Conn, got[c.Conn])
			continue
		}
		code, reason, sockets := "", "", ""
		fmt.Sscan(got[c.Conn][0], &code, &reason, &sockets)
		if code != "1006" || reason != "worker_lost" {
			t.Errorf("%s's socket %s: disconnect %q, want 1006 worker_lost", want[c.Conn], c.Conn, got[c.Conn][0])
		}
		if want[c.Conn] == "alice" {
			aliceLeft = append(aliceLeft, sockets)
		} else if sockets != "1" {
			t.Errorf("bob's lost socket says %s sockets left, want 1: his socket on worker 1", sockets)
		}
	}
	if !(len(aliceLeft) == 2 && (aliceLeft[0] == "0") != (aliceLeft[1] == "0")) {
		t.Errorf("alice's lost sockets say %v sockets left, want exactly one 0", aliceLeft)
	}
	for _, c := range alive {
		if len(got[c.Conn]) != 0 {
			t.Errorf("socket %s on worker 1, open, was announced disconnected: %q", c.Conn, got[c.Conn])
		}
		if closed, _ := c.Closed(); closed {
			t.Errorf("socket %s on worker 1 closed", c.Conn)
		}
	}

	m := s.Metrics()
	if n := m.Sum("switchboard_gateway_worker_orphans_total"); n != 3 {
		t.Errorf("switchboard_gateway_worker_orphans_total = %v, want 3", n)
	}
	if n := m.Sum("switchboard_gateway_lifecycle_lost_disconnects_total"); n != 3 {
		t.Errorf("switchboard_gateway_lifecycle_lost_disconnects_total = %v, want 3", n)
	}
}
