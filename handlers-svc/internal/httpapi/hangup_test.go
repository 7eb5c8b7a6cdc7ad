package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/internal/httpapi"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestCallerHangsUp: a caller whose request is cancelled before its
// dispatch runs is logged as the caller's doing, at debug, not as a
// refused dispatch at warn (which points operators at Redis), and Redis
// is not marked unreachable: the next dispatch logs no "reachable
// again".
func TestCallerHangsUp(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	core, logs := observer.New(zapcore.DebugLevel)
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute}).LogOutages(zap.New(core))
	api := httpapi.New(d, key, zap.New(core))

	body := `{"event":"post_updated","users":["bob"]}`
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the caller is gone before its dispatch is queued
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, httpapi.Path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	api.ServeHTTP(httptest.NewRecorder(), req)

	if n := logs.FilterMessage("dispatch abandoned: the caller hung up").FilterLevelExact(zapcore.DebugLevel).Len(); n != 1 {
		t.Errorf("hang-up logged %d times at debug, want once; logs: %v", n, logs.All())
	}
	if warn := logs.Filter(func(e observer.LoggedEntry) bool { return e.Level >= zapcore.WarnLevel }); warn.Len() != 0 {
		t.Errorf("a caller's hang-up logged at warn or above: %v", warn.All())
	}

	req = httptest.NewRequest(http.MethodPost, httpapi.Path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("next dispatch: %d %s", rec.Code, rec.Body)
	}
	if n := logs.FilterMessageSnippet("redis").Len(); n != 0 {
		t.Errorf("the hang-up fed the outage log: %v", logs.FilterMessageSnippet("redis").All())
	}
}
