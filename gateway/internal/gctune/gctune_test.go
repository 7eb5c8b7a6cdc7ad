package gctune

import (
	"context"
	"runtime/debug"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestTuner(t *testing.T) {
	const mb = 1 << 20
	type step struct {
		allocated   uint64
		d           time.Duration
		busy, moved bool
	}
	steps := []step{
		{0, time.Second, false, false},
		{BusyRate - 1, time.Second, false, false},   // just under: still quiet
		{BusyRate / 2, time.Second / 2, true, true}, // a rate, not a count
		{10 * mb, time.Second, true, false},
	}
	// Quiet only after QuietIntervals calm intervals in a row; one busy
	// interval among them starts the count again, and one between the
	// rates changes nothing.
	for range QuietIntervals - 1 {
		steps = append(steps, step{0, time.Second, true, false})
	}
	steps = append(steps, step{3 * mb, time.Second, true, false})
	for range QuietIntervals - 1 {
		steps = append(steps, step{QuietRate - 1, time.Second, true, false})
	}
	steps = append(steps, step{(QuietRate + BusyRate) / 2, time.Second, true, false})
	for range QuietIntervals - 1 {
		steps = append(steps, step{0, time.Second, true, false})
	}
	steps = append(steps, step{0, time.Second, false, true},
		step{QuietRate, time.Second, false, false}, // between the rates: stays quiet
		step{BusyRate, time.Second, true, true})

	var tu Tuner
	for i, s := range steps {
		busy, moved := tu.Observe(s.allocated, s.d)
		if busy != s.busy || moved != s.moved {
			t.Fatalf("step %d (%d bytes in %s): busy %v, changed %v; want %v, %v", i, s.allocated, s.d, busy, moved, s.busy, s.moved)
		}
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
