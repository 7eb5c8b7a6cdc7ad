package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestInFlightBounded: with Redis hung, each dispatch waits out its 5 s,
// holding a goroutine, its body (up to 1 MiB) and a place in the queue
// that handlers' own dispatches share. The API holds at most MaxInFlight
// of them: one more is answered 503 unavailable at once, with
// Retry-After (nothing was done, so a retry is safe), and a place freed
// is taken again.
func TestInFlightBounded(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	const key = "in-flight-key-0123456789"
	a := New(dispatch.New(rdb, dispatch.Options{Window: time.Minute}), key, zap.NewNop())
	const most = 2
	a.inFlight = make(chan struct{}, most) // MaxInFlight, made small
	hs := httptest.NewServer(a)
	t.Cleanup(hs.Close)
	post := func() (int, http.Header, string) {
		req, _ := http.NewRequest(http.MethodPost, hs.URL+Path, strings.NewReader(`{"event":"e","users":["bob"]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	if status, _, body := post(); status != http.StatusOK {
		t.Fatalf("warm-up: %d %s", status, body)
	}

	srv.Pause(t)
	held := make(chan int, most)
	for range most {
		go func() { status, _, _ := post(); held <- status }()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(a.inFlight) < most {
		if time.Now().After(deadline) {
			t.Fatalf("%d dispatches in flight, want %d", len(a.inFlight), most)
		}
		time.Sleep(time.Millisecond) // a poll's interval
	}
	start := time.Now()
	status, header, body := post()
	if took := time.Since(start); status != http.StatusServiceUnavailable || !strings.Contains(body, `"code":"unavailable"`) ||
		header.Get("Retry-After") == "" || took > 2*time.Second {
		t.Fatalf("one more while %d are in flight: %d %s (Retry-After %q) after %s, want 503 unavailable with Retry-After at once",
			most, status, body, header.Get("Retry-After"), took)
	}
	srv.Continue()
	for range most {
		if s := <-held; s != http.StatusOK {
			t.Errorf("a dispatch in flight while Redis hung: %d, want 200 once it answered", s)
		}
	}
	if status, _, body := post(); status != http.StatusOK {
		t.Fatalf("after the places were freed: %d %s", status, body)
	}
}
