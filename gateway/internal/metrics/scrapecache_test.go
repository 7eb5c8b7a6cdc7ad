package metrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestAbandonedScrapeIsNotCached: Aggregator.gatherCached reads the workers within
// the context of the scrape that found the cache stale, and cached what
// it got for CacheFor even when that context ended (the scraper hung up
// or timed out): every worker is then missing, worker_up 0, and the
// scrapes that waited for that read or come within CacheFor (1 s by
// default) are served that, as if every worker were down, though they
// all answer.
func TestAbandonedScrapeIsNotCached(t *testing.T) {
	dir := t.TempDir()
	w0 := NewWorker()
	w0.ConnOpened()
	countingWorker(t, dir, 0, w0)
	a := NewAggregator(dir, 1)
	t.Cleanup(a.Close)
	a.CacheFor(time.Hour) // longer than the test

	// A scraper that gave up: its request's context has ended.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gone := httptest.NewRequest(http.MethodGet, "/metrics", nil).WithContext(ctx)
	a.Handler().ServeHTTP(httptest.NewRecorder(), gone)

	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	if !strings.Contains(body, `switchboard_gateway_worker_up{worker="0"} 1`) ||
		!strings.Contains(body, `switchboard_gateway_connections_opened_total{worker="0"} 1`) {
		t.Errorf("a live scrape after an abandoned one is served the abandoned read, worker 0 missing (worker_up lines: %q)", grepLines(body, "worker_up{"))
	}
}

// grepLines returns the lines of body that contain s.
func grepLines(body, s string) []string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}
