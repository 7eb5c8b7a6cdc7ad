package worker

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// stallNoticed bounds how long a frozen link to NATS may go unnoticed:
// natsconn's settings aim at 2 to 3 s (a write blocked for 2 s, or two
// pings a second apart unanswered), with margin for -race on a busy
// machine. nats.go's defaults took a minute and more.
const stallNoticed = 6 * time.Second

// prompt is the client of the checks made while NATS is stalled: each
// must answer within a second, as a load balancer's probe or a scrape
// needs.
var prompt = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// promptGet GETs url and fails the test unless it answers within
// prompt's timeout; it returns the status and the body.
func promptGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := prompt.Get(url)
	if err != nil {
		t.Fatalf("GET %s with NATS stalled: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s with NATS stalled: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// TestNATSStalledWhileWriting: the path to NATS freezes (nothing passes
// either way, nothing is closed) while the worker writes to it, so
// nats.go's writer blocks in a write while holding the connection's lock,
// which nc.IsConnected waits for. The worker's /readyz, on its client port
// and its admin handler, and its /metrics answer within a second all
// along, and within stallNoticed say that NATS is not connected; an
// envelope then gets unavailable at once rather than the handler's
// timeout. Thawed, the worker reconnects by itself and is ready again.
func TestNATSStalledWhileWriting(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	px := testkit.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", n.Port))
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = "nats://"+px.Addr(), rd.URL()
	r := startWorker(t, cfg, 0)
	admin := httptest.NewServer(r.w.AdminHandler())
	defer admin.Close()
	c := testkit.Dial(t, "ws://"+r.addr+"/socket", token(t, "alice", time.Hour))

	// Freeze the path and fill the kernel's buffers through the worker's
	// own connection, as a burst of envelopes would, until nats.go blocks
	// in a write.
	frozen := time.Now()
	release := jam(t, r.w.nc, px)

	ready := []string{"http://" + r.addr + "/readyz", admin.URL + "/readyz"}
	testkit.Eventually(t, stallNoticed, "/readyz says NATS is not connected", func() bool {
		down := true
		for _, u := range ready {
			code, body := promptGet(t, u)
			down = down && code == http.StatusServiceUnavailable && strings.Contains(body, "nats not connected")
		}
		_, page := promptGet(t, admin.URL+"/metrics")
		return down && strings.Contains(page, "\nswitchboard_gateway_nats_connected 0\n")
	})
	t.Logf("stall noticed after %s", time.Since(frozen))

	sent := time.Now()
	c.Send("sendMessage", map[string]any{"text": "while stalled"}, "stalled")
	if f := c.ExpectRef(wait, "stalled"); f.Event != proto.EventError || !strings.Contains(string(f.Args), string(proto.CodeUnavailable)) {
		t.Errorf("envelope with NATS stalled: got %s %s, want error unavailable", f.Event, f.Args)
	} else if took := time.Since(sent); took >= cfg.HandlerTimeout {
		t.Errorf("unavailable took %s, the handler timeout's %s: the worker waited for NATS", took, cfg.HandlerTimeout)
	}

	release()
	testkit.Eventually(t, wait, "ready again once thawed", func() bool {
		for _, u := range ready {
			if status(u) != http.StatusOK {
				return false
			}
		}
		return metric(r.w, "switchboard_gateway_nats_connected") == "1"
	})
}
