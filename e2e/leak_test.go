package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/testkit"
)

// churn opens and closes n sockets with `parallel` goroutines, one socket
// at a time each: half close with a close frame as a browser does, half
// drop the TCP connection. It returns how many cycles completed.
func churn(t *testing.T, s *testkit.Stack, n, parallel int) int64 {
	t.Helper()
	var done, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	dialer := websocket.Dialer{HandshakeTimeout: wait}
	for g := range parallel {
		header := http.Header{"Authorization": {"Bearer " + s.Token(fmt.Sprintf("churn%d", g))}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += parallel {
				if err := cycle(&dialer, s.URL(), header, i%2 == 0); err != nil {
					// A busy machine may refuse a dial now and then
					// (ephemeral ports); one retry, then it counts.
					if err = cycle(&dialer, s.URL(), header, i%2 == 0); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err)
						continue
					}
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d connect/disconnect cycles failed; first: %v", f, n, firstErr.Load())
	}
	return done.Load()
}

// cycle connects, reads the connected frame and disconnects.
func cycle(d *websocket.Dialer, url string, header http.Header, closeFrame bool) error {
	wsc, _, err := d.Dial(url, header)
	if err != nil {
		return err
	}
	defer wsc.Close()
	_ = wsc.SetReadDeadline(time.Now().Add(wait))
	if _, _, err := wsc.ReadMessage(); err != nil {
		return fmt.Errorf("connected frame: %w", err)
	}
	if closeFrame {
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
		if err := wsc.WriteControl(websocket.CloseMessage, msg, time.Now().Add(wait)); err != nil {
			return err
		}
		for { // until the server's close frame, or the end of the stream
			if _, _, err := wsc.ReadMessage(); err != nil {
				break
			}
		}
	}
	return nil
}

type workerUsage struct{ goroutines, heap, rss float64 }

func usage(m testkit.Samples, workers int) []workerUsage {
	g := m.PerWorker("go_goroutines")
	h := m.PerWorker("go_memstats_heap_inuse_bytes")
	r := m.PerWorker("process_resident_memory_bytes")
	out := make([]workerUsage, workers)
	for w := range out {
		out[w] = workerUsage{g[w], h[w], r[w]}
	}
	return out
}

// TestConnectChurnNoLeaks: after 10,000 connect/disconnect cycles spread
// over both workers, each worker's sockets, goroutines and heap return to
// their baseline, read from the gateway's /metrics.
func TestConnectChurnNoLeaks(t *testing.T) {
	// 10,000 upgrades from one address in seconds is what the per-address
	// rate limit refuses (TestUpgradeFloodAttack); this test is about
	// leaks, so it is off here.
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_IP_UPGRADE_RATE=0"}})
	noneOpen := func(m testkit.Samples) bool {
		open := m.PerWorker("switchboard_gateway_connections_open")
		return len(open) == s.Workers && open[0] == 0 && open[1] == 0
	}
	// Warm up, so pools and lazily made structures exist before the
	// baseline is taken.
	churn(t, s, 200, 4)
	base := usage(awaitMetrics(t, s, "the warm-up's sockets are all closed", noneOpen), s.Workers)

	const cycles, parallel = 10000, 8
	start := time.Now()
	n := churn(t, s, cycles, parallel)
	took := time.Since(start)
	opened := s.Metrics().PerWorker("switchboard_gateway_connections_opened_total")
	t.Logf("%d connect/disconnect cycles in %s (%.0f/s); sockets opened per worker: %v", n, took, float64(n)/took.Seconds(), opened)
	for w := range s.Workers {
		if opened[w] < cycles/10 {
			t.Errorf("worker %d took only %v sockets: the churn did not spread across workers", w, opened[w])
		}
	}

	// Goroutines end as sockets close; the heap bound allows for garbage
	// not collected yet (up to GOGC=100% of the live heap) plus a margin,
	// far below what 10,000 leaked sockets would hold.
	var after []workerUsage
	testkit.Eventually(t, 60*time.Second, "every worker is back to its baseline", func() bool {
		m := s.Metrics()
		if !noneOpen(m) {
			return false
		}
		after = usage(m, s.Workers)
		for w := range after {
			if after[w].goroutines > base[w].goroutines+10 || after[w].heap > 2*base[w].heap+16<<20 {
				return false
			}
		}
		return true
	})
	for w := range after {
		t.Logf("worker %d: goroutines %.0f -> %.0f, heap in use %.1f -> %.1f MiB, RSS %.1f -> %.1f MiB", w,
			base[w].goroutines, after[w].goroutines, base[w].heap/(1<<20), after[w].heap/(1<<20), base[w].rss/(1<<20), after[w].rss/(1<<20))
		if after[w].rss > base[w].rss+256<<20 {
			t.Errorf("worker %d RSS grew from %.0f to %.0f MiB", w, base[w].rss/(1<<20), after[w].rss/(1<<20))
		}
	}
}
