package worker

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/internal/readiness"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestReadyzWhileStarting: a worker waiting at start-up for one of NATS,
// the Redis subscription and the first load of the revoked tokens says, on
// its client port and on its admin handler, that it waits for that one,
// and does not name the others, which are up; so does the 503 that
// refuses an upgrade meanwhile.
func TestReadyzWhileStarting(t *testing.T) {
	tests := []struct {
		name string
		down string   // "nats", "redis" or "revoked"
		want string   // named in the starting reason
		not  []string // not named in it
	}{
		{"NATS down", "nats", "NATS", []string{"Redis", "revoked"}},
		{"Redis down", "redis", "Redis subscription", []string{"NATS", "revoked"}},
		// Subscribed, but sb:revoked is no hash: HGETALL fails until it is.
		{"revoked tokens not loaded", "revoked", "revoked tokens", []string{"NATS", "subscription"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := testkit.StartNATS(t)
			rd := testkit.StartRedis(t)
			switch tt.down {
			case "nats":
				n.Stop()
			case "redis":
				rd.Stop()
			case "revoked":
				if err := publisher(t, rd.URL()).Set(context.Background(), proto.RevokedKey, "no hash", 0).Err(); err != nil {
					t.Fatal(err)
				}
			}
			names := func(s string) bool {
				for _, other := range tt.not {
					if strings.Contains(s, other) {
						return false
					}
				}
				return strings.Contains(s, "starting") && strings.Contains(s, tt.want)
			}
			cfg := testConfig()
			cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
			cfg.ShutdownTimeout = 5 * time.Second
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			w := New(cfg, 0, zap.NewNop())
			admin := httptest.NewServer(w.AdminHandler())
			defer admin.Close()
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx, ln) }()
			defer func() {
				cancel()
				select {
				case <-done:
				case <-time.After(cfg.ShutdownTimeout + wait):
					t.Error("Run did not return")
				}
			}()
			// The reason names what is missing once the worker has looked
			// (until then it waits for both, and says so).
			for _, url := range []string{"http://" + ln.Addr().String() + "/readyz", admin.URL + "/readyz"} {
				var last readiness.Body
				named := func() bool {
					resp, err := plain.Get(url)
					if err != nil {
						return false
					}
					defer resp.Body.Close()
					last = readiness.Read(resp)
					all := strings.Join(last.Reasons, "; ")
					return !last.Ready() && names(all)
				}
				for deadline := time.Now().Add(wait); !named(); time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("%s says %q with %s down; want a starting reason naming %s and not %s", url, last.Reasons, tt.down, tt.want, tt.not)
					}
				}
			}
			// An upgrade meanwhile is refused with 503, saying the same.
			_, resp, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/socket?token="+token(t, "alice", time.Hour), nil)
			if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("upgrade while starting: %v %v, want HTTP 503", err, resp)
			}
			defer resp.Body.Close()
			var body struct{ Error proto.Error }
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if body.Error.Code != proto.CodeUnavailable || !names(body.Error.Message) {
				t.Errorf("upgrade refused with %+v; want unavailable, starting, naming %s and not %s", body.Error, tt.want, tt.not)
			}
		})
	}
}
