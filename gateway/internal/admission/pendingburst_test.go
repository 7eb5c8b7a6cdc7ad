package admission

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/internal/httpserver"
	"github.com/switchboard/switchboard/internal/testkit"
)

// pendingServer serves on loopback with the client port's bounds
// (httpserver.New) and cap wired to its ConnState, as the worker does.
func pendingServer(t *testing.T, cap *PendingCap) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httpserver.New(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(rw, "ok")
	}), zap.NewNop())
	srv.ConnState = cap.ConnState
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().String()
}

// TestPendingCapBurstThenSilence: an address that opens more connections
// than GATEWAY_IP_PENDING within pendingMinAge, and then opens no more,
// is held to the cap once they have waited pendingMinAge (security.md: "at
// most GATEWAY_IP_PENDING waiting connections per worker (plus those of
// the last 0.5 s), each closed by the 5 s header timeout at the latest").
//
// It fails on main: PendingCap closes connections only when the address
// adds another (add), so a burst younger than pendingMinAge at its last
// connection is never brought under the cap. Silent connections are held
// to the 5 s header timeout; connections that sent one request and idle
// (counted as waiting for their next) to the 60 s idle timeout. An
// attacker who bursts once a minute keeps a whole burst's file
// descriptors and goroutines at a twelfth of the connection rate the
// documented bound assumes.
func TestPendingCapBurstThenSilence(t *testing.T) {
	const (
		max   = 4
		burst = 16
	)
	loopback := netip.MustParseAddr("127.0.0.1")
	for _, tc := range []struct {
		name string
		// open prepares one connection of the burst.
		open func(t *testing.T, c net.Conn)
	}{
		{"silent", func(*testing.T, net.Conn) {}},
		{"idle after one request", func(t *testing.T, c net.Conn) {
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPendingCap(max, nil)
			addr := pendingServer(t, p)
			conns := make([]net.Conn, 0, burst)
			t.Cleanup(func() {
				for _, c := range conns {
					_ = c.Close()
				}
			})
			for range burst {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
				tc.open(t, c)
			}
			// The whole burst is counted (or, were the machine slow enough
			// for it to span pendingMinAge, partly closed already).
			testkit.Eventually(t, 5*time.Second, "the burst's connections are counted", func() bool {
				return p.Waiting(loopback) >= max
			})
			// Well within the 5 s header timeout, and far within the 60 s
			// idle timeout: only PendingCap can bring the address down.
			testkit.Eventually(t, 5*pendingMinAge, fmt.Sprintf(
				"the %d connections of a burst from one address are down to GATEWAY_IP_PENDING = %d once they have waited %v (PendingCap closes the oldest only when the address opens another)",
				burst, max, pendingMinAge), func() bool { return p.Waiting(loopback) <= max })
		})
	}
}
