package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/internal/httpapi"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestSlowRedisIsNotNothingDelivered: a Redis that takes a dispatch and
// answers after go-redis's read timeout (REDIS_URL's read_timeout, when
// shorter than the API's 5 s) runs it all the same, as does one whose
// connection is lost after it ran the call (a failover, a proxy cutting
// it). The API must not answer 503 unavailable,
// which tells the caller that nothing was delivered and a retry is safe:
// the retry would deliver the event twice. It answers 504 timeout, "it may
// or may not have been delivered".
func TestSlowRedisIsNotNothingDelivered(t *testing.T) {
	srv := testkit.StartRedis(t)
	// handlers-svc's tuning (no retries, commands end by their context's
	// deadline), with REDIS_URL's read_timeout=300ms.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true,
		ReadTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	mux := http.NewServeMux()
	httpapi.New(dispatch.New(rdb, dispatch.Options{Window: time.Minute}), key, zap.NewNop()).Register(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	url := hs.URL + httpapi.Path
	if status, body := post(t, url, "Bearer "+key, `{"event":"warm","users":["alice"]}`); status != http.StatusOK {
		t.Fatalf("warm-up: %d %s", status, body) // a pooled connection, so no dial is involved
	}

	srv.Pause(t)
	status, body := post(t, url, "Bearer "+key, `{"event":"e","users":["bob"]}`)
	srv.Continue()

	// Redis runs the call it took once it goes on.
	check := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = check.Close() })
	deadline := time.Now().Add(10 * time.Second)
	var n int64
	for n == 0 && time.Now().Before(deadline) {
		var err error
		if n, err = check.XLen(context.Background(), proto.UserStreamKey("bob")).Result(); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			time.Sleep(10 * time.Millisecond) // a poll's interval
		}
	}
	if n != 1 {
		t.Fatalf("bob's stream holds %d events, want the 1 Redis took: the test did not reproduce a slow Redis", n)
	}
	var e proto.Reply
	_ = json.Unmarshal([]byte(body), &e)
	if status != http.StatusGatewayTimeout || e.Error == nil || e.Error.Code != proto.CodeTimeout ||
		!strings.Contains(e.Error.Message, "may or may not have been delivered") {
		t.Fatalf("got %d %s for a dispatch Redis recorded and published, want 504 timeout (it may have been delivered)", status, body)
	}
}
