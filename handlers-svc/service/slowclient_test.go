package service

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/handlers-svc/internal/config"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestSlowClientsAreCutOff: a client that sends a request's headers and
// then its body slowly, or not at all, holds its connection (and the
// goroutine serving it) no longer than httpReadTimeout, on every endpoint
// of HANDLERS_ADDR: without a key as well as with one. A refusal without
// the key is answered at once, without waiting for a body the API never
// reads.
func TestSlowClientsAreCutOff(t *testing.T) {
	const apiKey = "slow-client-key-0123456789"
	ns := testkit.StartNATS(t)
	rs := testkit.StartRedis(t)
	a := startApp(t, ns.Port, rs.Port, func(c *config.Config) { c.APIKey = apiKey })
	a.await(t, "/readyz", http.StatusOK, "")
	addr := strings.TrimPrefix(a.base, "http://")

	tests := []struct {
		name, req, status string
		within            time.Duration // the answer's bound
	}{
		{"no key, no body", "POST /v1/dispatch HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n", "401", httpReadTimeout / 2},
		{"key, half a body", "POST /v1/dispatch HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + apiKey +
			"\r\nContent-Length: 100\r\n\r\n{\"event\":", "400", httpReadTimeout + 10*time.Second},
		{"health check with a body", "GET /healthz HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n", "200", httpReadTimeout + 10*time.Second},
	}
	type result struct {
		line string
		took time.Duration
		err  error
	}
	results := make([]chan result, len(tests))
	// All at once, so the test takes one read timeout, not three.
	for i, tt := range tests {
		results[i] = make(chan result, 1)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		start := time.Now()
		if _, err := c.Write([]byte(tt.req)); err != nil {
			t.Fatal(err)
		}
		// Our own bound, well past the server's: a server that never
		// lets go fails the test here rather than hanging it.
		_ = c.SetReadDeadline(start.Add(tt.within + 20*time.Second))
		go func() {
			line, err := bufio.NewReader(c).ReadString('\n')
			results[i] <- result{line, time.Since(start), err}
		}()
	}
	for i, tt := range tests {
		r := <-results[i]
		t.Logf("%s: %q %v after %s", tt.name, r.line, r.err, r.took)
		if !strings.HasPrefix(r.line, "HTTP/1.1 "+tt.status+" ") {
			t.Errorf("%s: got %q (%v) after %s, want a %s: the server held the connection", tt.name, r.line, r.err, r.took, tt.status)
		} else if r.took > tt.within {
			t.Errorf("%s: answered after %s, want within %s", tt.name, r.took, tt.within)
		}
	}
}
