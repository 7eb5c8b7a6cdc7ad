package e2e

import (
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// tokenIssued returns a token for user of s's secret issued at iat.
func tokenIssued(t *testing.T, s *testkit.Stack, user string, iat time.Time) string {
	t.Helper()
	claims := jwt.RegisteredClaims{Subject: user, IssuedAt: jwt.NewNumericDate(iat), ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(s.Secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// refusedRevoked dials tok n times and fails unless each is refused with
// 401 unauthorized.
func refusedRevoked(t *testing.T, s *testkit.Stack, tok string, n int) {
	t.Helper()
	for i := range n {
		c, resp, err := testkit.TryDial(t, s.URL(), tok)
		if err == nil {
			t.Fatalf("try %d: a revoked token connected to worker %d", i, c.Worker)
		}
		if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("try %d: %v (%v), want 401", i, err, resp)
		}
		resp.Body.Close()
	}
}

// TestRevoke: a disconnect with revoke closes alice's sockets on both
// workers with 4003, and then her old token is refused with 401 on both,
// a token issued after the revoke connects, and bob is unaffected; a
// worker killed and restarted after the revoke refuses the old token too,
// having loaded it from Redis.
func TestRevoke(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, HandlersEnv: []string{"HANDLERS_API_KEY=" + apiKey}})
	oldTok := s.Token("alice")
	alice := []*testkit.Client{s.DialOn("alice", 0), s.DialOn("alice", 1)}
	bob := s.DialOn("bob", 1)

	if status, body := postDisconnect(t, s, apiKey, `{"conns":["x"],"revoke":true}`); status != http.StatusBadRequest {
		t.Fatalf("revoke with conns only: %d %s, want 400", status, body)
	}
	if status, body := postDisconnect(t, s, apiKey, `{"users":["alice"],"revoke":true,"reason":"banned"}`); status != http.StatusOK {
		t.Fatalf("revoke alice: %d %s", status, body)
	}
	for _, c := range alice {
		expectClose(t, c, proto.CloseDisconnected, "banned")
	}

	var rdb redis.UniversalClient
	if s.RedisCluster != nil {
		rdb = s.RedisCluster.Client(&redis.ClusterOptions{})
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: s.Redis.Addr()})
	}
	defer rdb.Close()
	v, err := rdb.HGet(t.Context(), proto.RevokedKey, "alice").Result()
	if err != nil {
		t.Fatalf("%s alice: %v", proto.RevokedKey, err)
	}
	before, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatal(err)
	}

	// 20 tries: each worker gets some, but for a 2^-19 chance.
	refusedRevoked(t, s, oldTok, 20)
	// A token of the revoke's own second is refused too: iat has no ms.
	refusedRevoked(t, s, tokenIssued(t, s, "alice", time.UnixMilli(before)), 4)
	m := s.Metrics()
	for w := range 2 {
		if n := m.Sum("switchboard_gateway_upgrades_refused_total", "reason", "token_revoked", "worker", strconv.Itoa(w)); n == 0 {
			t.Errorf("worker %d counted no token_revoked refusal", w)
		}
	}

	// A token issued after the revoke connects, on either worker.
	fresh := tokenIssued(t, s, "alice", time.UnixMilli(before).Truncate(time.Second).Add(time.Second))
	seen := map[int]bool{}
	for i := 0; len(seen) < 2 && i < 100; i++ {
		c, _, err := testkit.TryDial(t, s.URL(), fresh)
		if err != nil {
			t.Fatalf("a token issued after the revoke: %v", err)
		}
		seen[c.Worker] = true
		c.Close()
	}
	if len(seen) < 2 {
		t.Fatalf("the fresh token reached workers %v only", seen)
	}
	// Bob's socket stayed, and bob connects.
	if closed, err := bob.Closed(); closed {
		t.Fatalf("bob's socket closed: %v", err)
	}
	s.DialOn("bob", 0)

	// Worker 1 is killed; the one restarted in its place loads the
	// revocation from Redis before it lets anyone in.
	pid, ok := s.WorkerPids()[1]
	if !ok {
		t.Fatalf("no pid for worker 1 in %v", s.WorkerPids())
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "worker 1 restarted", func() bool {
		p, ok := s.WorkerPids()[1]
		return ok && p != pid
	})
	s.WaitAllReady()
	refusedRevoked(t, s, oldTok, 20)
	if n := s.Metrics().Sum("switchboard_gateway_upgrades_refused_total", "reason", "token_revoked", "worker", "1"); n == 0 {
		t.Error("the restarted worker 1 counted no token_revoked refusal")
	}
	s.DialOn("bob", 1)
}
