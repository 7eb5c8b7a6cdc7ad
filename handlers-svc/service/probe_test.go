package service

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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

// TestReadinessReadsTheProbe: /readyz and the /metrics scrape read the
// Redis probe's last outcome instead of sending a PING each: many of them
// add no command to Redis beyond the probe's one a second.
func TestReadinessReadsTheProbe(t *testing.T) {
	ns := testkit.StartNATS(t)
	rs := testkit.StartRedis(t)
	a := startApp(t, ns.Port, rs.Port)
	a.await(t, "/readyz", http.StatusOK, "")
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })

	before, start := pings(t, rdb), time.Now()
	const requests = 40
	for i := range requests {
		path := "/readyz"
		if i%4 == 0 {
			path = "/metrics"
		}
		resp, err := httpClient.Get(a.base + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
	}
	probes := int64(time.Since(start)/redisProbeEvery) + 2 // one in flight at each end
	if n := pings(t, rdb) - before; n > probes {
		t.Fatalf("%d PINGs for %d requests in %s, want at most the probe's %d", n, requests, time.Since(start), probes)
	}
	if err := a.stop(t); err != nil {
		t.Fatalf("realMain: %v", err)
	}
}

// pings returns how many PINGs Redis has run.
func pings(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if rest, ok := strings.CutPrefix(line, "cmdstat_ping:calls="); ok {
			n, err := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	return 0
}
