// Package gctune sets a worker's GC percent by its load: low while the
// worker is quiet, so that its heap, mostly long-lived socket state, stays
// close to its live size in resident memory, and Go's default while it is
// busy, so that the collector runs about half as often under traffic.
//
// A fixed GOGC=50 kept idle memory low, but under load it made the
// collector run about twice as often on a worker that has one core. In the
// benchmark (docs/performance.md), with three alternating runs each at R =
// 4,000: p99 3.5-3.8 ms with a fixed 50, 2.8-3.4 ms tuned, and gateway CPU
// per delivery 3-5 % lower; turning quiet returns the busy spell's garbage
// to the system, which took idle RSS per socket at 10,000 from 7.4 to
// 6.4 KB.
package gctune

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// The GC percents, and the allocation rates between them, over the last
// QuietIntervals intervals: a worker is busy once it allocated BusyRate
// bytes a second or more over them, and quiet again once below
// QuietRate. The pings of an idle worker allocate far less; the
// benchmark's R = 1,000 allocates more. A rate over a window, not each
// interval's: the presence refresh allocates a burst every TTL/3 (about
// 1.6 KB per user with sockets on the worker), which in one interval
// read as busy and kept an idle worker with 5,000 users from ever
// turning quiet, so its garbage stayed resident (idle RSS per socket at
// 10,000 sockets 11.8 KB against 7.9 KB without presence).
const (
	QuietPercent   = 50
	BusyPercent    = 100
	BusyRate       = 2 << 20
	QuietRate      = 1 << 20
	QuietIntervals = 10
	// FreeEvery is the least time between two returns of memory (see
	// Run).
	FreeEvery = time.Minute
)

// Tuner decides from each interval's allocations whether the worker is
// busy. Its zero value is quiet.
type Tuner struct {
	busy   bool
	bytes  [QuietIntervals]uint64        // the last intervals' allocations, a ring
	spans  [QuietIntervals]time.Duration // and their lengths
	next   int                           // the ring's oldest slot
	filled int                           // slots in use
}

// Observe takes the bytes allocated in an interval of d and reports
// whether the worker is busy after it, and whether that changed.
func (t *Tuner) Observe(allocated uint64, d time.Duration) (busy, changed bool) {
	t.bytes[t.next], t.spans[t.next] = allocated, d
	t.next = (t.next + 1) % QuietIntervals
	t.filled = min(t.filled+1, QuietIntervals)
	var sum uint64
	var span time.Duration
	for i := range t.filled {
		sum += t.bytes[i]
		span += t.spans[i]
	}
	if span <= 0 {
		return t.busy, false
	}
	rate := float64(sum) / span.Seconds()
	switch {
	case !t.busy && rate >= BusyRate:
		t.busy = true
		return true, true
	case t.busy && rate < QuietRate:
		t.busy = false
		return false, true
	}
	return t.busy, false
}

// percent is the GC percent Run last set; 0 before it ran.
var percent atomic.Int32

// Percent returns the GC percent Run last set, or 0 if it has not run.
func Percent() int { return int(percent.Load()) }

func set(p int) {
	debug.SetGCPercent(p)
	percent.Store(int32(p))
}

// Run sets the GC percent to QuietPercent, then checks the process's
// allocations every interval and sets the percent of the state the Tuner
// decides, until ctx is done. Turning quiet, it also collects and returns
// the freed memory to the operating system at once (at most once per
// FreeEvery), instead of leaving the garbage of the busy spell resident
// until the heap grows again.
func Run(ctx context.Context, interval time.Duration, log *zap.Logger) {
	set(QuietPercent)
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return sample[0].Value.Uint64()
	}
	var t Tuner
	last, lastAt := read(), time.Now()
	var freed time.Time // when memory was last returned
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			n, now := read(), time.Now()
			busy, changed := t.Observe(n-last, now.Sub(lastAt))
			last, lastAt = n, now
			if !changed {
				continue
			}
			if busy {
				set(BusyPercent)
				log.Debug("busy: GC percent raised", zap.Int("gc_percent", BusyPercent))
				continue
			}
			set(QuietPercent)
			// Returning memory collects and then holds the worker's only P
			// while it releases the pages: at most once per FreeEvery.
			if freed.IsZero() || now.Sub(freed) >= FreeEvery {
				debug.FreeOSMemory()
				freed = now
				log.Debug("quiet: GC percent lowered, freed memory returned", zap.Int("gc_percent", QuietPercent))
				continue
			}
			log.Debug("quiet: GC percent lowered", zap.Int("gc_percent", QuietPercent))
		}
	}
}
