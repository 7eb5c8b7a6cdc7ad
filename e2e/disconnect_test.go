package e2e

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// postDisconnect POSTs body to the disconnect API of s with the bearer key
// (none when key is ""), and returns the status and body.
func postDisconnect(t *testing.T, s *testkit.Stack, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.HandlersAddr+"/v1/disconnect", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// expectClose waits for c to be closed by the gateway with code and
// reason.
func expectClose(t *testing.T, c *testkit.Client, code int, reason string) {
	t.Helper()
	err := c.WaitClosed(wait)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != code || ce.Text != reason {
		t.Fatalf("%s (worker %d, %s) closed with %v, want %d %q", c.User, c.Worker, c.Conn, err, code, reason)
	}
}

// TestDisconnectAPI: POST /v1/disconnect closes exactly the named user's
// sockets on both workers with 4003 and the reason, or one connection with
// 4002; every other socket stays open and still gets its events; a bad
// body or key closes nothing. In both fan-out modes, since a disconnect
// travels on the shared channel in either.
func TestDisconnectAPI(t *testing.T) {
	for _, mode := range []proto.FanoutMode{proto.FanoutShared, proto.FanoutPerUser} {
		t.Run(string(mode), func(t *testing.T) {
			s := testkit.StartStack(t, testkit.StackOptions{
				Workers:     2,
				Env:         []string{"FANOUT_MODE=" + string(mode)},
				HandlersEnv: []string{"FANOUT_MODE=" + string(mode), "HANDLERS_API_KEY=" + apiKey},
			})
			alice := []*testkit.Client{s.DialOn("alice", 0), s.DialOn("alice", 1)}
			bob := []*testkit.Client{s.DialOn("bob", 0), s.DialOn("bob", 1)}

			// Refused: nothing is published, nothing closed.
			for _, tt := range []struct {
				key, body string
				status    int
				code      proto.Code
			}{
				{"", `{"users":["alice"]}`, http.StatusUnauthorized, proto.CodeUnauthorized},
				{apiKey + "x", `{"users":["alice"]}`, http.StatusUnauthorized, proto.CodeUnauthorized},
				{apiKey, `{"users":"alice"}`, http.StatusBadRequest, proto.CodeBadRequest},
				{apiKey, `{"users":[""]}`, http.StatusBadRequest, proto.CodeBadRequest},
				{apiKey, `{"conns":["not a conn"]}`, http.StatusBadRequest, proto.CodeBadRequest},
				{apiKey, `{"reason":"no target"}`, http.StatusBadRequest, proto.CodeBadRequest},
			} {
				status, body := postDisconnect(t, s, tt.key, tt.body)
				if status != tt.status || !strings.Contains(body, `"code":"`+string(tt.code)+`"`) {
					t.Errorf("key %q body %s: %d %s, want %d %s", tt.key, tt.body, status, body, tt.status, tt.code)
				}
			}

			status, body := postDisconnect(t, s, apiKey, `{"users":["alice"],"reason":"logged out everywhere"}`)
			want := `{"workers":2}`
			if testkit.RedisClusterMode() {
				want = `{"workers":` // those of one node only: any count
			}
			if status != http.StatusOK || !strings.HasPrefix(body, want) {
				t.Fatalf("disconnect alice: %d %s, want 200 %s", status, body, want)
			}
			for _, c := range alice {
				expectClose(t, c, proto.CloseDisconnected, "logged out everywhere")
			}
			// Bob's sockets stay, and still get events: the channel is
			// ordered, so once this one is in, a close would have been too.
			if status, body := postDispatch(t, s, apiKey, `{"event":"still_here","users":["bob"]}`); status != http.StatusOK {
				t.Fatalf("dispatch to bob: %d %s", status, body)
			}
			for _, c := range bob {
				c.ExpectEvent(wait, "still_here")
				if closed, err := c.Closed(); closed {
					t.Fatalf("bob's socket on worker %d closed: %v", c.Worker, err)
				}
			}

			// One connection, asked to reconnect.
			status, body = postDisconnect(t, s, apiKey, `{"conns":["`+bob[0].Conn+`"],"reconnect":true}`)
			if status != http.StatusOK {
				t.Fatalf("disconnect a conn: %d %s", status, body)
			}
			expectClose(t, bob[0], proto.CloseReconnect, proto.ReasonReconnect)
			if status, body := postDispatch(t, s, apiKey, `{"event":"after","users":["bob"]}`); status != http.StatusOK {
				t.Fatalf("dispatch to bob: %d %s", status, body)
			}
			bob[1].ExpectEvent(wait, "after")
			if closed, err := bob[1].Closed(); closed {
				t.Fatalf("bob's other socket closed: %v", err)
			}

			testkit.Eventually(t, wait, "the closes are counted by kind", func() bool {
				m := s.Metrics()
				return m.Sum("switchboard_gateway_connections_closed_total", "reason", "disconnected") == 2 &&
					m.Sum("switchboard_gateway_connections_closed_total", "reason", "reconnect_requested") == 1
			})
			logs := s.Gateway.Logs()
			for _, c := range alice {
				if n := testkit.CountLogs(logs, "socket disconnected by a backend", map[string]any{
					"user": "alice", "conn": c.Conn, "worker": c.Worker, "code": proto.CloseDisconnected,
				}); n != 1 {
					t.Errorf("%d \"socket disconnected by a backend\" lines for %s on worker %d, want 1", n, c.Conn, c.Worker)
				}
			}
			// Taken as a disconnect by every worker, not dropped as malformed.
			if n := testkit.CountLogs(logs, "dropping malformed dispatch", nil); n != 0 {
				t.Errorf("%d malformed dispatches logged, want 0", n)
			}
			// Not recorded: alice, sent no event, has no stream.
			var rdb redis.UniversalClient
			if s.RedisCluster != nil {
				rdb = s.RedisCluster.Client(&redis.ClusterOptions{})
			} else {
				rdb = redis.NewClient(&redis.Options{Addr: s.Redis.Addr()})
			}
			defer rdb.Close()
			if n, err := rdb.Exists(t.Context(), proto.UserStreamKey("alice")).Result(); err != nil || n != 0 {
				t.Errorf("alice's stream: exists %d, %v; want none", n, err)
			}
			// A disconnect does not revoke the token: alice comes back.
			s.DialOn("alice", 1)
		})
	}
}
