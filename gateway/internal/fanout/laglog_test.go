package fanout

import (
	"testing"
	"time"
)

// TestLagLogOnePerWindow: the first lagging episode is logged, then at most
// one per lagLogEvery, and the one logged after a gap counts those skipped.
func TestLagLogOnePerWindow(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	steps := []struct {
		at      time.Duration
		logged  bool
		skipped int // after the step, before the caller resets it
	}{
		{0, true, 0},
		{100 * time.Millisecond, false, 1},
		{lagLogEvery - time.Millisecond, false, 2},
		{lagLogEvery, true, 2},
		{lagLogEvery + time.Second, false, 1},
		{3 * lagLogEvery, true, 1},
	}
	var l lagLog
	for i, s := range steps {
		got := l.enter(t0.Add(s.at))
		if got != s.logged || l.logged != s.logged || l.skipped != s.skipped {
			t.Fatalf("step %d at %s: enter = %v, skipped %d; want %v, %d", i, s.at, got, l.skipped, s.logged, s.skipped)
		}
		if got {
			l.skipped = 0 // as setLagging does once it has logged the count
		}
	}
}
