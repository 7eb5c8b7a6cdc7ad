package main

import (
	"net/http"
	"testing"

	"github.com/switchboard/switchboard/internal/testkit"
)

// The dispatcher's outage log lines (dispatch.Dispatcher.LogOutages).
const (
	logRedisGone = "redis unreachable: dispatches fail with unavailable until it is back"
	logRedisBack = "redis reachable again: dispatches resume"
)

// TestRedisDownWhileIdle: Redis stops while no event comes, so no dispatch
// fails to tell. handlers-svc still logs the outage, once, and answers
// /readyz 503 until Redis is back; then it logs the recovery, once, and is
// ready again.
func TestRedisDownWhileIdle(t *testing.T) {
	ns := testkit.StartNATS(t)
	rs := testkit.StartRedis(t)
	a := startApp(t, ns.Port, rs.Port)
	a.await(t, "/readyz", http.StatusOK, "")

	rs.Stop()
	awaitLog(t, a, logRedisGone)
	a.await(t, "/readyz", http.StatusServiceUnavailable, "redis not answering")

	rs.Start()
	awaitLog(t, a, logRedisBack)
	a.await(t, "/readyz", http.StatusOK, "")
	if n := a.logs.FilterMessage(logRedisGone).Len(); n != 1 {
		t.Errorf("outage logged %d times, want once", n)
	}
	if n := a.logs.FilterMessage(logRedisBack).Len(); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
	if err := a.stop(t); err != nil {
		t.Fatalf("realMain: %v", err)
	}
}
