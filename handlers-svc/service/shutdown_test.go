package service

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/handlers-svc/internal/config"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestShutdownFinishesDispatchAPIRequests: a dispatch with an
// Idempotency-Key that is in flight when the service stops is served to
// the end, with the API and Redis still open: the HTTP server stops
// taking requests and finishes those it has before they close. Before,
// they closed first, and a request in that window was refused 503 (or,
// with its key reserved and its dispatch cut off, 504 with the key left
// pending for IdempotencyTTL). Its retry against another instance is
// then answered from the first one's record, delivering nothing again.
func TestShutdownFinishesDispatchAPIRequests(t *testing.T) {
	const apiKey = "shutdown-test-key-0123456789"
	ns := testkit.StartNATS(t)
	rs := testkit.StartRedis(t)
	withKey := func(c *config.Config) { c.APIKey = apiKey }
	a := startApp(t, ns.Port, rs.Port, withKey)
	b := startApp(t, ns.Port, rs.Port, withKey)
	a.await(t, "/readyz", http.StatusOK, "")
	b.await(t, "/readyz", http.StatusOK, "")
	addr := strings.TrimPrefix(a.base, "http://")

	const idemKey = "shutdown-in-flight-1"
	body := `{"event":"shutdown","users":["alice"],"args":{"n":1}}`
	head := "POST /v1/dispatch HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + apiKey +
		"\r\nIdempotency-Key: " + idemKey + "\r\nContent-Type: application/json" +
		fmt.Sprintf("\r\nContent-Length: %d\r\n\r\n", len(body))
	// In flight: the headers and half the body sent.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := io.WriteString(c, head+body[:len(body)/2]); err != nil {
		t.Fatal(err)
	}
	// In the handler, reading its body. Until then a stop drops it: net/http
	// closes a connection whose request it reads once Shutdown has begun,
	// and one it has not accepted yet goes with the listener.
	testkit.Eventually(t, 20*time.Second, "the request in the dispatch API's handler", func() bool {
		v, _ := value(a.scrape(t), "switchboard_handlers_dispatch_api_in_flight", nil)
		return v == 1
	})

	a.cancel() // as SIGTERM does
	// The listener closes once the HTTP server stops taking requests:
	// before, that was after the API and Redis had closed.
	testkit.Eventually(t, 20*time.Second, "the stopping instance refuses new connections", func() bool {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		_ = nc.Close()
		return false
	})
	if _, err := io.WriteString(c, body[len(body)/2:]); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the request in flight got no answer: %v", err)
	}
	first, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the request in flight at shutdown: %d %s, want 200: the API or Redis closed under it", resp.StatusCode, first)
	}
	if err := a.stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// The retry, as a caller makes it, against the other instance.
	req, err := http.NewRequest(http.MethodPost, b.base+"/v1/dispatch", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Idempotency-Key", idemKey)
	retry, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := io.ReadAll(retry.Body)
	retry.Body.Close()
	if retry.StatusCode != http.StatusOK || retry.Header.Get("Idempotent-Replayed") != "true" || string(again) != string(first) {
		t.Fatalf("retry on the other instance: %d replayed=%q %s, want 200 replayed %s: the key was left pending or free",
			retry.StatusCode, retry.Header.Get("Idempotent-Replayed"), again, first)
	}
}
