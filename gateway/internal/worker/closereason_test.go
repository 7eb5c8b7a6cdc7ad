package worker

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestBackendDisconnectLabel: a backend's disconnect is counted as
// disconnected (4003) or reconnect_requested (4002) whatever its reason
// says, even when the reason reads as the gateway's own text for a
// client's close or a lost connection: the label follows who closed the
// socket, not the text.
func TestBackendDisconnectLabel(t *testing.T) {
	rd := testkit.StartRedis(t)
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = testkit.StartNATS(t).URL(), rd.URL()
	r := startWorker(t, cfg, 0)

	dial := func(user string) *websocket.Conn {
		t.Helper()
		c, _, err := websocket.DefaultDialer.Dial("ws://"+r.addr+"/socket",
			http.Header{"Authorization": {"Bearer " + token(t, user, time.Hour)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	alice, bob := dial("alice"), dial("bob")
	open := func() string { return metric(r.w, "switchboard_gateway_connections_open") }
	testkit.Eventually(t, wait, "both sockets are open", func() bool { return open() == "2" })

	pub := publisher(t, rd.URL())
	for _, d := range []proto.Disconnect{
		{Users: []string{"alice"}, Reason: "closed by client"},
		{Users: []string{"bob"}, Reason: "connection lost", Reconnect: true},
	} {
		if err := pub.Publish(context.Background(), proto.Channel, proto.AppendDisconnect(nil, &d)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Each client reads to the close the gateway sent, and answers it.
	for _, c := range []*websocket.Conn{alice, bob} {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				break
			}
		}
	}
	testkit.Eventually(t, wait, "both sockets are closed", func() bool { return open() == "0" })
	for _, m := range []struct{ reason, want string }{
		{"disconnected", "1"},
		{"reconnect_requested", "1"},
		{"client", "0"},
		{"lost", "0"},
	} {
		if got := metric(r.w, `switchboard_gateway_connections_closed_total{reason="`+m.reason+`"}`); got != m.want {
			t.Errorf("closed for %s %q times, want %s", m.reason, got, m.want)
		}
	}
}
