package metrics

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingWorker serves worker m's metrics on its socket in dir and counts
// the reads.
func countingWorker(t *testing.T, dir string, index int, m *Worker) *atomic.Int64 {
	t.Helper()
	ln, err := net.Listen("unix", SocketPath(dir, index))
	if err != nil {
		t.Fatal(err)
	}
	var reads atomic.Int64
	h := m.Handler()
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		reads.Add(1)
		h.ServeHTTP(rw, r)
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return &reads
}

// TestScrapeFloodAttack: however many scrapes of the merged /metrics come
// in, at once or one after another, the workers are read at most once per
// CacheFor, and every scrape is still answered with their series.
func TestScrapeFloodAttack(t *testing.T) {
	dir := t.TempDir()
	w0, w1 := NewWorker(), NewWorker()
	w0.ConnOpened()
	reads := []*atomic.Int64{countingWorker(t, dir, 0, w0), countingWorker(t, dir, 1, w1)}
	a := NewAggregator(dir, 2)
	t.Cleanup(a.Close)
	a.CacheFor(time.Hour) // longer than the test: one read in all
	h := a.Handler()

	scrape := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		return rec.Body.String()
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if body := scrape(); !strings.Contains(body, `switchboard_gateway_connections_opened_total{worker="0"} 1`) {
					t.Errorf("a scrape lacks worker 0's series:\n%.500s", body)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, r := range reads {
		if n := r.Load(); n != 1 {
			t.Errorf("worker %d was read %d times by 500 scrapes, want once", i, n)
		}
	}

	// Without a cache every scrape reads afresh: what a test sees right
	// after what it counts.
	b := NewAggregator(dir, 2)
	t.Cleanup(b.Close)
	for range 3 {
		rec := httptest.NewRecorder()
		b.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	}
	if n := reads[0].Load(); n != 4 {
		t.Errorf("worker 0 read %d times after 3 uncached scrapes, want 1+3", n)
	}
}
