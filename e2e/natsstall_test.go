package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/e2e/recovery"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// stallNoticed bounds how long a frozen link to NATS may go unnoticed:
// both services ping every second and give up after two pings unanswered
// (2 to 3 s, natsconn), with margin for race builds on a busy machine.
// nats.go's defaults took minutes.
const stallNoticed = 6 * time.Second

// prompt is the client of the health and metrics checks while NATS is
// stalled: each must answer within a second, as a load balancer's or
// Prometheus's would need.
var prompt = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// promptGet GETs url, failing the test unless it answers within prompt's
// timeout; it returns the status and the body.
func promptGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	start := time.Now()
	resp, err := prompt.Get(url)
	if err != nil {
		t.Fatalf("GET %s with NATS stalled: %v (after %s)", url, err, time.Since(start))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s with NATS stalled: %v", url, err)
	}
	return resp.StatusCode, body
}

// TestNATSLinkStalled: the link between both services and NATS freezes:
// a fault proxy in front of NATS passes no byte either way and closes
// nothing, either taking and dropping what is sent (toxiproxy's timeout
// toxic: a middlebox that swallows the traffic) or holding it, nothing
// acknowledged (testkit.Proxy: a black-holed path, where a busy sender's
// writes block once its kernel buffers fill, as the worker test
// TestNATSStalledWhileWriting makes them). Every gateway worker's and
// handlers-svc's /readyz turns 503 naming NATS within stallNoticed, and
// meanwhile /readyz and /metrics answer within a second each time;
// envelopes then get unavailable at once, not a timeout. With the path
// back both services reconnect by themselves: requests are acked and
// delivered on both workers and everything is ready again.
func TestNATSLinkStalled(t *testing.T) {
	for _, tt := range []struct {
		name  string
		start func(t *testing.T, upstream string) (addr string, stall, heal func())
	}{
		{"dropped", func(t *testing.T, upstream string) (string, func(), func()) {
			px := recovery.StartProxy(t, upstream)
			return px.Addr, func() { px.Stall(t) }, func() { px.Heal(t) }
		}},
		{"held", func(t *testing.T, upstream string) (string, func(), func()) {
			px := testkit.StartProxy(t, upstream)
			return px.Addr(), px.Freeze, px.Thaw
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := testkit.StartNATS(t)
			addr, stall, heal := tt.start(t, fmt.Sprintf("127.0.0.1:%d", n.Port))
			testNATSLinkStalled(t, n, addr, stall, heal)
		})
	}
}

// testNATSLinkStalled runs TestNATSLinkStalled with both services on NATS
// n through the fault proxy at addr, which stall and heal act on.
func testNATSLinkStalled(t *testing.T, n *testkit.NATS, addr string, stall, heal func()) {
	url := "NATS_URL=nats://" + addr
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, NATS: n, Env: []string{url}, HandlersEnv: []string{url}})
	a0, a1 := s.DialOn("alice", 0), s.DialOn("alice", 1)
	b0, b1 := s.DialOn("bob", 0), s.DialOn("bob", 1)
	awaitDeliveries(t, "before", b0, []*testkit.Client{a0, a1})

	stall()
	stalled := time.Now()
	urls := []string{
		"http://" + s.Addr + "/readyz", "http://" + s.MetricsAddr + "/readyz", "http://" + s.MetricsAddr + "/metrics",
		"http://" + s.HandlersAddr + "/readyz", "http://" + s.HandlersAddr + "/metrics",
	}
	testkit.Eventually(t, stallNoticed, "every worker and handlers-svc report NATS not connected", func() bool {
		for _, u := range urls {
			promptGet(t, u) // each answers promptly, whatever it says
		}
		return workersNATSDown(t, s) && handlersNATSDown(t, s)
	})
	t.Logf("stall noticed by every worker and handlers-svc after %s", time.Since(stalled))
	// The gauges agree, and keep answering promptly.
	for _, c := range []struct{ url, gauge string }{
		{"http://" + s.MetricsAddr + "/metrics", `switchboard_gateway_nats_connected{worker="0"} 0`},
		{"http://" + s.MetricsAddr + "/metrics", `switchboard_gateway_nats_connected{worker="1"} 0`},
		{"http://" + s.HandlersAddr + "/metrics", `switchboard_handlers_nats_connected 0`},
	} {
		if _, body := promptGet(t, c.url); !containsLine(body, c.gauge) {
			t.Errorf("%s has no line %q with NATS stalled", c.url, c.gauge)
		}
	}
	// A worker whose link is known down refuses at once: unavailable,
	// not the handler's timeout.
	for i, c := range []*testkit.Client{b0, b1} {
		expectUnavailable(t, c, fmt.Sprintf("stalled-%d", i))
	}
	assertOpen(t, a0, a1, b0, b1)

	heal()
	healed := time.Now()
	awaitDeliveries(t, "after", b0, []*testkit.Client{a0, a1})
	i := 0
	testkit.Eventually(t, recoveryBound, "worker 1's requests are acked again", func() bool {
		i++
		ref := fmt.Sprintf("w1-%d", i)
		b1.Send("sendMessage", map[string]any{"text": "from worker 1"}, ref)
		return b1.ExpectRef(wait+5*time.Second, ref).Event == proto.EventAck
	})
	t.Logf("path back -> requests acked on both workers after %s", time.Since(healed))
	assertReadyAgain(t, s)
	s.WaitAllReady()
	assertOpen(t, a0, a1, b0, b1)
}

// workersNATSDown reports whether the gateway's admin /readyz is 503 with
// every worker naming NATS.
func workersNATSDown(t *testing.T, s *testkit.Stack) bool {
	t.Helper()
	code, raw := promptGet(t, "http://"+s.MetricsAddr+"/readyz")
	var body struct {
		Workers []struct {
			Reasons []string `json:"reasons"`
		} `json:"workers"`
	}
	if code != http.StatusServiceUnavailable || json.Unmarshal(raw, &body) != nil || len(body.Workers) != s.Workers {
		return false
	}
	for _, w := range body.Workers {
		if !slices.Contains(w.Reasons, "nats not connected") {
			return false
		}
	}
	return true
}

// handlersNATSDown reports whether handlers-svc's /readyz is 503 naming
// NATS.
func handlersNATSDown(t *testing.T, s *testkit.Stack) bool {
	t.Helper()
	code, raw := promptGet(t, "http://"+s.HandlersAddr+"/readyz")
	var body struct {
		Reasons []string `json:"reasons"`
	}
	return code == http.StatusServiceUnavailable && json.Unmarshal(raw, &body) == nil && slices.Contains(body.Reasons, "nats not connected")
}

// containsLine reports whether page has line as one of its lines.
func containsLine(page []byte, line string) bool {
	for l := range strings.Lines(string(page)) {
		if strings.TrimRight(l, "\n") == line {
			return true
		}
	}
	return false
}
