package worker

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/admission"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// withRevokedCheck rebuilds the worker's admission as New does, with its
// Revoked check wrapped by wrap: a test's way to act at the moment an
// upgrade has passed the check, before the socket is in the hub.
func withRevokedCheck(wrap func(next func(string, time.Time) bool) func(string, time.Time) bool) Option {
	return func(w *Worker) {
		cfg := w.cfg
		w.adm = admission.New(admission.Config{
			JWTSecret: cfg.JWTSecret, JWTPreviousSecret: cfg.JWTPreviousSecret, JWTAudience: cfg.JWTAudience, JWTLeeway: cfg.JWTLeeway,
			AllowedOrigins: cfg.AllowedOrigins, Dev: cfg.Dev,
			MaxConns: cfg.MaxConns, MaxConnsPerUser: cfg.MaxConnsPerUser,
			IPUpgradeRate: cfg.IPUpgradeRate, IPUpgradeBurst: cfg.IPUpgradeBurst,
			Starting: w.startingReason, Revoked: wrap(w.revoked.Revoked),
		}, w.hub, w.metrics, w.log)
	}
}

// TestRevokeDuringUpgradeClosesTheSocket: a socket whose upgrade passed
// the revoked check (admission.Admit) just before a backend's disconnect
// with revoke reached the worker, and that is registered in the hub
// (serveSocket's AddReserved) just after the worker closed the user's
// sockets (Worker.disconnect), is closed before it is sent anything, with
// the code the others got: 4003, or 4002 when the disconnect asked to
// reconnect (4003 stops the JavaScript client for good). Nothing orders
// the two (the check runs on the upgrade's goroutine, the disconnect on
// the fan-out's, and between the check and AddReserved lie the
// handshake's write and the socket's setup); before the fix the socket
// lived on with its revoked token until the token's exp. The wrapper only
// pins that interleaving down.
func TestRevokeDuringUpgradeClosesTheSocket(t *testing.T) {
	for _, c := range []struct {
		name      string
		reconnect bool
		code      int
	}{{"disconnect", false, proto.CloseDisconnected}, {"reconnect", true, proto.CloseReconnect}} {
		t.Run(c.name, func(t *testing.T) { testRevokeDuringUpgrade(t, c.reconnect, c.code) })
	}
}

func testRevokeDuringUpgrade(t *testing.T, reconnect bool, code int) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	pub := publisher(t, rd.URL())

	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	leaked := token(t, "alice", time.Hour)

	var armed atomic.Bool
	var first *testkit.Client // alice's socket open before the revoke
	wrap := func(next func(string, time.Time) bool) func(string, time.Time) bool {
		return func(user string, iat time.Time) bool {
			revoked := next(user, iat)
			if user == "alice" && armed.CompareAndSwap(true, false) {
				// This upgrade passed the check; the revoke lands now,
				// before the socket is in the hub. The worker has
				// handled it once it closed the socket alice had.
				publishRevoke(t, pub, "alice", time.Now(), reconnect)
				if got := testkit.CloseCode(first.WaitClosed(wait)); got != code {
					t.Errorf("first socket closed with %d, want %d", got, code)
				}
			}
			return revoked
		}
	}
	r := startWorkerWith(t, cfg, 0, zap.NewNop(), withRevokedCheck(wrap))
	url := "ws://" + r.addr + "/socket"

	first = testkit.Dial(t, url, leaked)
	armed.Store(true)
	// The upgrade the revoke overtakes: it is let in, but closed before
	// it is sent anything, connected included.
	late, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Authorization": {"Bearer " + leaked}})
	if err != nil {
		t.Fatalf("the upgrade admitted during the revoke: %v", err)
	}
	defer late.Close()
	_ = late.SetReadDeadline(time.Now().Add(wait))
	if _, data, err := late.ReadMessage(); testkit.CloseCode(err) != code {
		t.Fatalf("socket of alice admitted while her tokens were being revoked: read %q, %v; want a close with %d "+
			"before any frame, as her other sockets got", data, err, code)
	}
	if armed.Load() {
		t.Fatal("the revoke did not land during the second upgrade")
	}

	// The revocation holds for new upgrades: the same token is refused.
	if _, resp, err := testkit.TryDial(t, url, leaked); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("a new upgrade with the revoked token: err %v, HTTP %d; want 401", err, status)
	}
}

// publishRevoke revokes user's tokens issued before at, as handlers-svc's
// dispatch.Disconnect does: recorded in sb:revoked, then published,
// asking the clients to reconnect or not; a failure is reported with
// t.Error (it may run on the worker's goroutine).
func publishRevoke(t *testing.T, pub *redis.Client, user string, at time.Time, reconnect bool) {
	body, err := json.Marshal(proto.Disconnect{
		Control: proto.ControlDisconnect, Users: []string{user}, Reason: "leaked token", Reconnect: reconnect,
		RevokeBefore: at.UnixMilli(),
	})
	if err != nil {
		t.Error(err)
		return
	}
	ctx := context.Background()
	if err := pub.HSet(ctx, proto.RevokedKey, user, at.UnixMilli()).Err(); err != nil {
		t.Error(err)
		return
	}
	if err := pub.Publish(ctx, proto.Channel, body).Err(); err != nil {
		t.Error(err)
	}
}

// TestRevokeMissedWhileUnsubscribedClosesSockets: a worker that was not
// subscribed when a revoke was published (a Redis failover, a network
// blip between it and Redis while handlers-svc still reached Redis)
// learns of it from sb:revoked when it subscribes again, and then closes
// the user's sockets it holds on a revoked token, not only refuses new
// upgrades (before the fix such a socket stayed open until exp: the
// disconnect message is not recorded anywhere). The missed publish is
// modelled by recording the revoke in sb:revoked as handlers-svc does
// first, without publishing it, then cutting the worker's subscription
// (CLIENT KILL TYPE pubsub) so that it subscribes and loads again.
func TestRevokeMissedWhileUnsubscribedClosesSockets(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	pub := publisher(t, rd.URL())

	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	r := startWorker(t, cfg, 0)
	url := "ws://" + r.addr + "/socket"
	// A token issued before the revoke, and one after it, which stays.
	leaked := issuedAt(t, "alice", time.Now().Add(-10*time.Second))
	a := testkit.Dial(t, url, leaked)
	fresh := testkit.Dial(t, url, token(t, "alice", time.Hour))

	ctx := context.Background()
	if err := pub.HSet(ctx, proto.RevokedKey, "alice", time.Now().Add(-3*time.Second).UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := pub.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	// The worker has subscribed again and loaded sb:revoked once the
	// token is refused.
	testkit.Eventually(t, wait, "the worker refuses alice's revoked token", func() bool {
		// A plain dial: one admitted just before the load is closed
		// with 4003 before its connected frame, which TryDial fails on.
		c, resp, err := websocket.DefaultDialer.Dial(url, http.Header{"Authorization": {"Bearer " + leaked}})
		if err == nil {
			_ = c.Close()
			return false
		}
		return resp != nil && resp.StatusCode == http.StatusUnauthorized
	})

	if code := testkit.CloseCode(a.WaitClosed(wait)); code != proto.CloseDisconnected {
		t.Fatalf("socket %s of alice, on a token issued before the revoke, closed with %d after the worker loaded it; want %d",
			a.Conn, code, proto.CloseDisconnected)
	}
	// The worker loaded the hash before it closed a: fresh was looked at.
	fresh.Send("ping", nil, "p1")
	if f := fresh.ExpectRef(wait, "p1"); f.Event == "" {
		t.Fatal("alice's socket on a token issued after the revoke: no answer")
	}
	if closed, err := fresh.Closed(); closed {
		t.Fatalf("alice's socket on a token issued after the revoke was closed: %v", err)
	}
}

// issuedAt returns a token of user issued at iat, valid for an hour.
func issuedAt(t *testing.T, user string, iat time.Time) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: user, IssuedAt: jwt.NewNumericDate(iat), ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestRevokeMissedWithReconnectCloses4002: a missed revoke whose
// disconnect asked the clients to reconnect (4002: get a fresh token and
// come back) closes the worker's sockets on revoked tokens with 4002 too,
// not with 4003, which tells a client to stop for good. Handlers-svc
// records that ask in proto.RevokedReconnectKey beside sb:revoked; before
// it did, a worker that missed the message could only close with 4003,
// logging the user out on that device.
func TestRevokeMissedWithReconnectCloses4002(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	pub := publisher(t, rd.URL())

	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	r := startWorker(t, cfg, 0)
	url := "ws://" + r.addr + "/socket"
	a := testkit.Dial(t, url, issuedAt(t, "alice", time.Now().Add(-10*time.Second)))
	b := testkit.Dial(t, url, issuedAt(t, "bob", time.Now().Add(-10*time.Second)))

	// As handlers-svc records a revoke of alice asking to reconnect, and
	// one of bob that does not: carol's stale reconnect mark (an older
	// revoke) does not make bob's 4002.
	ctx := context.Background()
	at := time.Now().Add(-3 * time.Second).UnixMilli()
	if err := pub.HSet(ctx, proto.RevokedKey, "alice", at, "bob", at).Err(); err != nil {
		t.Fatal(err)
	}
	if err := pub.HSet(ctx, proto.RevokedReconnectKey, "alice", at, "bob", at-5000).Err(); err != nil {
		t.Fatal(err)
	}
	if err := pub.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	if code := testkit.CloseCode(a.WaitClosed(wait)); code != proto.CloseReconnect {
		t.Errorf("alice's socket, revoked by a disconnect asking to reconnect, closed with %d; want %d", code, proto.CloseReconnect)
	}
	if code := testkit.CloseCode(b.WaitClosed(wait)); code != proto.CloseDisconnected {
		t.Errorf("bob's socket, whose latest revoke did not ask to reconnect, closed with %d; want %d", code, proto.CloseDisconnected)
	}
}
