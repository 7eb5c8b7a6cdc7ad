package limit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// localShare is the part of a bound each instance admits by itself: an
// eighth of the rate and a sixteenth of the burst. Only what a counter
// takes beyond it costs a round trip to Redis, so ordinary traffic (a chat
// of a few messages a second) never does, and the bound across N
// instances is at most the configured one times 1 + N/8.
const (
	localRateShare  = 8
	localBurstShare = 16
)

// localMax is the most counters an instance keeps in memory; beyond it a
// new counter goes to Redis at once, so a sender naming ever new
// recipients cannot grow the map without bound.
const localMax = 100_000

// sweepEvery is how often counters back at a full bucket (idle: the same
// as no counter) are dropped.
const sweepEvery = time.Second

// local is the in-process first tier of one bound: a token bucket per
// counter (golang.org/x/time/rate), safe for concurrent use.
type local struct {
	limit rate.Limit
	burst int

	mu    sync.Mutex
	m     map[string]*rate.Limiter
	swept time.Time
}

// newLocal returns the local tier of a bound of perSecond with burst, or
// nil when that share rounds to nothing.
func newLocal(perSecond, burst int) *local {
	r, b := perSecond/localRateShare, burst/localBurstShare
	if r <= 0 || b <= 0 {
		return nil
	}
	return &local{limit: rate.Limit(r), burst: b, m: make(map[string]*rate.Limiter)}
}

// allow takes n of key's local allowance at now and reports whether it
// could; when it could not, nothing is taken and Redis decides.
func (l *local) allow(key string, n int, now time.Time) bool {
	if l == nil || n > l.burst {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) >= sweepEvery {
		l.sweep(now)
	}
	lim := l.m[key]
	if lim == nil {
		if len(l.m) >= localMax {
			return false
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		l.m[key] = lim
	}
	return lim.AllowN(now, n)
}

// sweepMost is the most counters one sweep looks at, so that a sweep
// holds up the senders behind l.mu for tens of microseconds, not
// milliseconds; map iteration starts at a random place, so successive
// sweeps cover every counter.
const sweepMost = 4096

// sweep drops counters whose bucket is full again at now, up to
// sweepMost of them looked at.
func (l *local) sweep(now time.Time) {
	n := 0
	for k, lim := range l.m {
		if n++; n > sweepMost {
			break
		}
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.m, k)
		}
	}
	l.swept = now
}
