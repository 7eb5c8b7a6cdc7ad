package loadgen

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram is a log-linear histogram of durations in microseconds, safe for
// concurrent Record calls: values below 2*histSub µs are exact, larger ones
// fall in buckets no wider than 1/histSub of their value (under 1% error),
// the layout of HdrHistogram with 2 significant digits.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	total  atomic.Uint64
	max    atomic.Uint64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits // sub-buckets per power of two
	histMaxExp  = 40               // values up to 2^47 µs, far beyond any run
	histBuckets = histSub * (histMaxExp + 2)
)

// bucketOf returns the bucket index of v.
func bucketOf(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits - 1 // v>>e is in [histSub, 2*histSub)
	if e > histMaxExp {
		return histBuckets - 1
	}
	return histSub*e + int(v>>e)
}

// bucketHigh returns the largest value that falls in bucket i.
func bucketHigh(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	e := i/histSub - 1
	low := uint64(i-histSub*e) << e
	return low + (1 << e) - 1
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d.Microseconds(), 0))
	h.counts[bucketOf(v)].Add(1)
	h.total.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count returns how many durations were recorded.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Max returns the largest duration recorded, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) * time.Microsecond }

// Quantile returns the duration at or below which a fraction q (0..1) of the
// recorded durations lie: the upper end of that bucket, capped at Max. It
// returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	// The smallest rank with at least q of the durations at or below it
	// (less a hair, for q*n that float64 leaves just above a whole number).
	rank := uint64(math.Ceil(q*float64(n) - 1e-9))
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			v := min(bucketHigh(i), h.max.Load())
			return time.Duration(v) * time.Microsecond
		}
	}
	return h.Max()
}

// HistSnapshot is a Histogram in a form that crosses a process boundary as
// JSON: the non-empty buckets as [index, count] pairs, and the exact max.
type HistSnapshot struct {
	Buckets [][2]uint64 `json:"buckets"`
	Max     uint64      `json:"max_us"`
}

// Snapshot returns h's current content.
func (h *Histogram) Snapshot() HistSnapshot {
	s := HistSnapshot{Max: h.max.Load()}
	for i := range h.counts {
		if n := h.counts[i].Load(); n > 0 {
			s.Buckets = append(s.Buckets, [2]uint64{uint64(i), n})
		}
	}
	return s
}

// Merge adds a snapshot's durations to h, as if they had been recorded here.
func (h *Histogram) Merge(s HistSnapshot) {
	for _, b := range s.Buckets {
		i := min(int(b[0]), histBuckets-1)
		h.counts[i].Add(b[1])
		h.total.Add(b[1])
	}
	for {
		m := h.max.Load()
		if s.Max <= m || h.max.CompareAndSwap(m, s.Max) {
			return
		}
	}
}
