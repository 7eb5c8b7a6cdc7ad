//go:build unix

package worker

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/gateway/internal/config"
	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestStalledReaderDuringReplay: a client that stops reading during a
// replay larger than the send queue is not waited for: once its kernel
// buffers are full, the write that blocks is given up after ws.WriteWait
// and the socket is closed (write failed), as any stalled socket is. The
// replay waits for the queue to drain, so it never overflows it, but a
// reader that takes nothing leaves the queue undrained for good.
func TestStalledReaderDuringReplay(t *testing.T) {
	rd := testkit.StartRedis(t)
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = testkit.StartNATS(t).URL(), rd.URL()
	cfg.SendQueueBytes = config.MinSendQueueBytes
	r := startWorker(t, cfg, 0)

	pub := publisher(t, rd.URL())
	args, _ := json.Marshal(map[string]string{"text": strings.Repeat("x", 16000)})
	var from string
	for i := range 601 { // 600 missed, 9.6 MB: more than loopback's buffers hold
		p, _, err := streams.Publish(context.Background(), pub, time.Minute,
			&proto.Dispatch{Event: "message", Args: args, Users: []string{"alice"}})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			from = p[0]
		}
	}
	// A client with a small receive buffer that reads nothing after the
	// upgrade.
	d := websocket.Dialer{NetDialContext: (&net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		_ = rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10) })
		return err
	}}).DialContext}
	cl, _, err := d.Dial("ws://"+r.addr+"/socket?resume="+from, http.Header{"Authorization": {"Bearer " + token(t, "alice", time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	open := func() string { return metric(r.w, "switchboard_gateway_connections_open") }
	testkit.Eventually(t, wait, "the socket is open", func() bool { return open() == "1" })
	testkit.Eventually(t, ws.WriteWait+2*wait, "the stalled socket is closed", func() bool { return open() == "0" })
	if got := metric(r.w, `switchboard_gateway_connections_closed_total{reason="write_failed"}`); got != "1" {
		t.Fatalf("closed for write_failed %q times, want once", got)
	}
}
