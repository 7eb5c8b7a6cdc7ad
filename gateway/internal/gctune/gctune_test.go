package gctune

import (
	"context"
	"runtime/debug"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestTuner: busy and quiet by the allocation rate over the last
// QuietIntervals intervals, with the band between the rates keeping the
// state.
func TestTuner(t *testing.T) {
	const mb = 1 << 20
	var tu Tuner
	observe := func(what string, allocated uint64, d time.Duration) (busy, changed bool) {
		t.Helper()
		return tu.Observe(allocated, d)
	}
	// Idle, with a burst of 8 MB every 10 intervals (the presence refresh
	// of 5,000 users every 10 s): 0.8 MB/s over the window, quiet.
	for i := range 100 {
		n := uint64(0)
		if i%10 == 9 {
			n = 8 * mb
		}
		if busy, _ := observe("burst", n, time.Second); busy {
			t.Fatalf("interval %d: busy on a burst of 8 MB every 10 intervals", i)
		}
	}
	// Traffic: 10 MB/s is busy within two intervals.
	busyAt := -1
	for i := range 3 {
		if busy, changed := observe("traffic", 10*mb, time.Second); busy && changed {
			busyAt = i
		}
	}
	if busyAt < 0 || busyAt > 1 {
		t.Fatalf("10 MB/s turned busy at interval %d, want within 2", busyAt)
	}
	// Between the rates, busy stays busy.
	for i := range 3 * QuietIntervals {
		if busy, _ := observe("between", (QuietRate+BusyRate)/2, time.Second); !busy {
			t.Fatalf("interval %d at 1.5 MB/s: turned quiet while busy", i)
		}
	}
	// Traffic stops: quiet once the window's rate is below QuietRate,
	// within QuietIntervals intervals, and not at the first.
	quietAt := -1
	for i := range QuietIntervals {
		if busy, changed := observe("calm", 0, time.Second); !busy && changed {
			quietAt = i
			break
		}
	}
	if quietAt < 1 {
		t.Fatalf("turned quiet at interval %d of calm, want within %d and not at once", quietAt, QuietIntervals)
	}
	// Between the rates, quiet stays quiet.
	for i := range 3 * QuietIntervals {
		if busy, _ := observe("between", (QuietRate+BusyRate)/2, time.Second); busy {
			t.Fatalf("interval %d at 1.5 MB/s: turned busy while quiet", i)
		}
	}
	// A rate, not a count: BusyRate/2 bytes in half a second, in a
	// window of them, is busy.
	var fresh Tuner
	busy := false
	for range QuietIntervals {
		busy, _ = fresh.Observe(BusyRate/2, time.Second/2)
	}
	if !busy {
		t.Fatal("BusyRate/2 bytes per half second is not busy")
	}
}

// sink keeps the allocations of TestRun from being optimised away.
var sink []byte

// TestRun allocates fast enough to count as busy and then stops: Run
// raises the GC percent, then lowers it back.
func TestRun(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	const interval = 20 * time.Millisecond
	go func() { defer close(done); Run(ctx, interval, zap.NewNop()) }()
	defer func() { cancel(); <-done }()

	await := func(want int, alloc bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for Percent() != want {
			if time.Now().After(deadline) {
				t.Fatalf("GC percent %d after 10 s, want %d", Percent(), want)
			}
			if alloc {
				for range 64 {
					sink = make([]byte, 64<<10) // 4 MB per round: far past BusyRate
				}
			}
			time.Sleep(interval / 4)
		}
	}
	await(QuietPercent, false)
	await(BusyPercent, true)
	await(QuietPercent, false)
}
