package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestHeartbeatMovesLeftOutDevice: a device left out of the last event of
// its user's stream (its own message, except_conns) is told the position
// past it by its next heartbeat, on real binaries with two workers, and a
// resume from there after the stream's entries expired recovers with
// nothing missed. Resuming from the last position an event carried to it,
// as a client without heartbeats would, is not recovered: the entry it
// was left out of expired, and the gateway cannot tell it from one lost.
func TestHeartbeatMovesLeftOutDevice(t *testing.T) {
	const window = "HISTORY_WINDOW=1s"
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2,
		Env:         []string{"GATEWAY_PING_INTERVAL=200ms", window},
		HandlersEnv: []string{"HANDLERS_API_KEY=" + apiKey, window}})
	// dialOn is Stack.DialOn with heartbeats.
	dialOn := func(worker int) *testkit.Client {
		t.Helper()
		for range 200 {
			c := testkit.Dial(t, s.URL()+"?heartbeat=1", s.Token("alice"))
			if c.Worker == worker {
				return c
			}
			c.Close()
		}
		t.Fatalf("no socket landed on worker %d in 200 tries", worker)
		return nil
	}
	dispatch := func(body string) string {
		t.Helper()
		status, answer := postDispatch(t, s, apiKey, body)
		var got struct {
			Pos map[string]string `json:"pos"`
		}
		if status != http.StatusOK || json.Unmarshal([]byte(answer), &got) != nil || got.Pos["alice"] == "" {
			t.Fatalf("POST %s: %d %s", body, status, answer)
		}
		return got.Pos["alice"]
	}
	first, second := dialOn(0), dialOn(1)

	hello := dispatch(`{"event":"hello","users":["alice"]}`)
	if f := first.ExpectEvent(wait, "hello"); f.Pos != hello {
		t.Fatalf("hello at %q, want %s", f.Pos, hello)
	}
	own := dispatch(`{"event":"sent","users":["alice"],"except_conns":["` + first.Conn + `"]}`)
	if f := second.ExpectEvent(wait, "sent"); f.Pos != own {
		t.Fatalf("the other device got sent at %q, want %s", f.Pos, own)
	}
	beat := first.Expect(wait, "a heartbeat with the position of the event it was left out of", func(f proto.Frame) bool {
		return f.Event == proto.EventHeartbeat && f.Pos != ""
	})
	if beat.Pos != own || beat.BPos != "" {
		t.Fatalf("heartbeat %+v, want pos %s only", beat, own)
	}
	for _, f := range first.Frames() {
		if f.Event == "sent" || f.Event == proto.EventResync {
			t.Fatalf("the device left out got %s %s at %q", f.Event, f.Args, f.Pos)
		}
	}
	first.Close()
	_ = first.WaitClosed(wait)

	// The window passes, and nothing newer is published for alice: the
	// stream's entries expire (HISTORY_WINDOW plus at most 10 s).
	var rdb redis.UniversalClient
	if s.RedisCluster != nil {
		rdb = s.RedisCluster.Client(&redis.ClusterOptions{})
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: s.Redis.Addr()})
	}
	defer rdb.Close()
	testkit.Eventually(t, 30*time.Second, "alice's stream expires", func() bool {
		n, err := rdb.Exists(t.Context(), proto.UserStreamKey("alice")).Result()
		return err == nil && n == 0
	})

	prev := "&prev=" + url.QueryEscape(first.Conn)
	back := testkit.Dial(t, s.URL()+"?heartbeat=1&resume="+url.QueryEscape(beat.Pos)+prev, s.Token("alice"))
	if r, m := back.Connected.Recovered, back.Connected.Missed; r == nil || !*r || m == nil || *m != 0 {
		t.Fatalf("resumed from the heartbeat's %s: connected %+v, want recovered with 0 missed", beat.Pos, back.Connected)
	}
	old := testkit.Dial(t, s.URL()+"?resume="+url.QueryEscape(hello)+prev, s.Token("alice"))
	if r := old.Connected.Recovered; r == nil || *r {
		t.Fatalf("resumed from %s, before the expired event: connected %+v, want not recovered", hello, old.Connected)
	}
}
