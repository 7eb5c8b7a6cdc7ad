package loadgen

import (
	"testing"
	"time"
)

// TestQuantileAtLeastFractionAtOrBelow: Quantile says it returns the
// duration at or below which a fraction q of the durations lie. Of 160
// durations, 158 of 1 ms and 2 of 100 ms, only 98.75 % are at or below
// 1 ms, so p99 is 100 ms (nearest rank: ceil(0.99*160) = 159th). The rank
// is rounded (q*n + 0.5) instead of rounded up, so it answers 1 ms, one
// rank too low whenever q*n has a fraction under one half.
func TestQuantileAtLeastFractionAtOrBelow(t *testing.T) {
	var h Histogram
	for range 158 {
		h.Record(time.Millisecond)
	}
	h.Record(100 * time.Millisecond)
	h.Record(100 * time.Millisecond)
	if got := h.Quantile(0.99); got < 100*time.Millisecond {
		t.Errorf("p99 of 158 x 1 ms and 2 x 100 ms = %s; want 100 ms: only 98.75 %% lie at or below %s", got, got)
	}
}
