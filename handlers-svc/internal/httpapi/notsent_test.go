package httpapi

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestQueuedPastDeadlineIsUnavailable: a dispatch without an idempotency
// key whose deadline passes while it waits behind another caller's flush
// is never written (dispatch.ErrNotSent): it is answered 503 unavailable,
// nothing delivered, a retry safe, as the keyed one is. It was answered
// 504 timeout, "it may have been delivered", and a caller that cannot
// retry what may have been delivered gave up an event that was not.
func TestQueuedPastDeadlineIsUnavailable(t *testing.T) {
	srv, records := testkit.StartRedis(t), testkit.StartRedis(t)
	url, d, g, _ := lateServer(t, srv, records, 300*time.Millisecond)
	bg, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	first := make(chan error, 1)
	go func() {
		_, err := d.Dispatch(bg, dispatch.Message{Event: "first", Users: []string{"alice"}})
		first <- err
	}()
	g.next(t)
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"event":"e","users":["bob"]}`))
	req.Header.Set("Authorization", "Bearer late-key-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), `"code":"unavailable"`) ||
		!strings.Contains(string(b), "nothing was delivered") {
		t.Fatalf("dispatch queued past its deadline: %d %s, want 503 unavailable, nothing delivered", resp.StatusCode, b)
	}
	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := streamLen(t, srv.Addr(), "bob"); n != 0 {
		t.Fatalf("bob's stream holds %d events, want none", n)
	}
}
