package worker

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestRevokeWithReconnectDuringUpgradeAsksToReconnect: a backend's disconnect may revoke and ask to reconnect at
// once ({"revoke":true,"reconnect":true}: the user's tokens change, say
// new claims; every client is to come back at once with a fresh token,
// 4002, protocol.md section 7). The sockets the worker holds get 4002. A
// socket whose upgrade was under way, caught by serveSocket's revoked
// check, gets 4002 too (it got 4003 'token revoked', which stops the
// JavaScript client for good: the app saw the user signed out while the
// other devices reconnected). closeRevoked (a worker that missed the
// message) still closes with 4003: sb:revoked does not keep reconnect.
func TestRevokeWithReconnectDuringUpgradeAsksToReconnect(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	pub := publisher(t, rd.URL())

	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	leaked := token(t, "alice", time.Hour)

	var armed atomic.Bool
	var first *testkit.Client
	revokeNow := func() {
		body, err := json.Marshal(proto.Disconnect{
			Control: proto.ControlDisconnect, Users: []string{"alice"}, Reason: "claims changed", Reconnect: true,
			RevokeBefore: time.Now().UnixMilli(),
		})
		if err != nil {
			t.Error(err)
			return
		}
		ctx := context.Background()
		if err := pub.HSet(ctx, proto.RevokedKey, "alice", time.Now().UnixMilli()).Err(); err != nil {
			t.Error(err)
			return
		}
		if err := pub.Publish(ctx, proto.Channel, body).Err(); err != nil {
			t.Error(err)
			return
		}
		if code := testkit.CloseCode(first.WaitClosed(wait)); code != proto.CloseReconnect {
			t.Errorf("first socket closed with %d, want %d", code, proto.CloseReconnect)
		}
	}
	wrap := func(next func(string, time.Time) bool) func(string, time.Time) bool {
		return func(user string, iat time.Time) bool {
			revoked := next(user, iat)
			if user == "alice" && armed.CompareAndSwap(true, false) {
				revokeNow()
			}
			return revoked
		}
	}
	r := startWorkerWith(t, cfg, 0, zap.NewNop(), withRevokedCheck(wrap))
	url := "ws://" + r.addr + "/socket"

	first = testkit.Dial(t, url, leaked)
	armed.Store(true)
	late, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Authorization": {"Bearer " + leaked}})
	if err != nil {
		t.Fatalf("the upgrade admitted during the revoke: %v", err)
	}
	defer late.Close()
	if armed.Load() {
		t.Fatal("the revoke did not land during the second upgrade")
	}
	_ = late.SetReadDeadline(time.Now().Add(wait))
	if _, data, err := late.ReadMessage(); testkit.CloseCode(err) != proto.CloseReconnect {
		t.Fatalf("socket of alice admitted during a revoke that asked every socket to reconnect: read %q, %v; "+
			"want a close with %d, as her other sockets got: with 4003 her client stops for good", data, err, proto.CloseReconnect)
	}
}
