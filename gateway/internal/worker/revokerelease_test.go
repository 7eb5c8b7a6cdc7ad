package worker

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestRevokedDuringUpgradeKeepsTheUsersChannel (per-user fan-out): a
// socket closed by serveSocket's revoked check never Acquired the user's
// channel, but socketClosed Releases it all the same ("every Acquire ...
// is matched by one Release"). The Release is then another socket's: a
// socket of the same user on a token issued after the revoke, which stays
// open, loses its channel after the linger and with it every dispatch to
// its user, live, with no error and no close.
//
// Bob's socket, closed after the revoked one, is the clock: the fan-out
// leaves an idle channel once it has been idle for the linger, in one
// pass with every channel idle longer, so once Redis has no subscriber on
// bob's channel, alice's would be gone too had it gone idle.
func TestRevokedDuringUpgradeKeepsTheUsersChannel(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	pub := publisher(t, rd.URL())

	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	cfg.FanoutMode = string(proto.FanoutPerUser)
	cfg.FanoutLinger = 100 * time.Millisecond

	revokeBefore := time.Now().Add(-5 * time.Second)
	leaked := issuedAt(t, "alice", revokeBefore.Add(-10*time.Second))
	var armed atomic.Bool
	var old *testkit.Client   // alice's socket on the leaked token, open before the revoke
	var fresh *testkit.Client // alice's socket on a token issued after the revoke
	var url string
	wrap := func(next func(string, time.Time) bool) func(string, time.Time) bool {
		return func(user string, iat time.Time) bool {
			revoked := next(user, iat)
			if user == "alice" && armed.CompareAndSwap(true, false) {
				publishRevoke(t, pub, "alice", revokeBefore, false)
				if code := testkit.CloseCode(old.WaitClosed(wait)); code != proto.CloseDisconnected {
					t.Errorf("old socket closed with %d, want %d", code, proto.CloseDisconnected)
				}
				// Alice's app, told of the revoke, is back at once with a
				// token issued after it (another tab, say); it stays.
				c, _, err := testkit.TryDial(t, url, token(t, "alice", time.Hour))
				if err != nil {
					t.Errorf("alice's upgrade with a fresh token: %v", err)
				}
				fresh = c
			}
			return revoked
		}
	}
	r := startWorkerWith(t, cfg, 0, zap.NewNop(), withRevokedCheck(wrap))
	url = "ws://" + r.addr + "/socket"

	old = testkit.Dial(t, url, leaked)
	bob := testkit.Dial(t, url, token(t, "bob", time.Hour))

	armed.Store(true)
	late, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Authorization": {"Bearer " + leaked}})
	if err != nil {
		t.Fatalf("the upgrade admitted during the revoke: %v", err)
	}
	_ = late.SetReadDeadline(time.Now().Add(wait))
	if _, _, err := late.ReadMessage(); testkit.CloseCode(err) != proto.CloseDisconnected {
		t.Fatalf("the socket admitted during the revoke: %v, want a close with %d", err, proto.CloseDisconnected)
	}
	late.Close()
	if armed.Load() || fresh == nil {
		t.Fatal("the revoke did not land during the upgrade")
	}
	// Closed and gone from the hub: fresh and bob are left.
	testkit.Eventually(t, wait, "the revoked sockets have left the hub", func() bool { return r.w.hub.Len() == 2 })

	bob.Close()
	numsub := func(user string) int64 {
		m, err := pub.PubSubNumSub(context.Background(), proto.UserChannel(user)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return m[proto.UserChannel(user)]
	}
	testkit.Eventually(t, wait, "bob's channel is left after the linger", func() bool { return numsub("bob") == 0 })
	if got := numsub("alice"); got != 1 {
		t.Errorf("alice's channel has %d subscribers with her socket %s open; want 1: the revoked socket, which never "+
			"acquired it, released the open socket's hold on it", got, fresh.Conn)
	}
	d := proto.Dispatch{Event: "after", Users: []string{"alice"}}
	if err := pub.Publish(context.Background(), proto.UserChannel("alice"), proto.AppendDispatch(nil, &d)).Err(); err != nil {
		t.Fatal(err)
	}
	fresh.Expect(wait, "a dispatch to alice on her channel", func(f proto.Frame) bool { return f.Event == "after" })
}
