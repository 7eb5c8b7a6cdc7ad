package worker

import (
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestProbeWaitsForHeldLocks: Probe returns at once on an idle worker,
// blocks while one of the locks it takes is held (a deadlock there would
// stop the watchdog's beats), and returns once the lock is released.
func TestProbeWaitsForHeldLocks(t *testing.T) {
	w := New(testConfig(), 0, zap.NewNop())
	w.Probe() // idle: returns

	held := &w.pings.slots[pingSlots-1].mu
	held.Lock()
	done := make(chan struct{})
	go func() { w.Probe(); close(done) }()
	select {
	case <-done:
		t.Fatal("Probe returned while a pinger lock was held")
	case <-time.After(100 * time.Millisecond):
	}
	held.Unlock()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Probe did not return once the lock was released")
	}
}
