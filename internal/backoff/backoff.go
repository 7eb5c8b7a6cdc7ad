// Package backoff waits between retries: exponential back-off whose waits
// end early when their context does.
package backoff

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx is done; it reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Backoff is an exponential back-off: the first wait is Min (positive),
// and each wait doubles the next, up to Max. It is not safe for concurrent
// use: one retry loop owns it.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration // 0: Min
}

// Next returns the wait the next call of Wait sleeps.
func (b *Backoff) Next() time.Duration {
	if b.next == 0 {
		return b.Min
	}
	return b.next
}

// Wait sleeps Next, or until ctx is done, and doubles the next wait up to
// Max either way; it reports whether the wait passed.
func (b *Backoff) Wait(ctx context.Context) bool {
	d := b.Next()
	b.next = min(2*d, b.Max)
	return Sleep(ctx, d)
}

// Reset makes the next wait Min again, after a success.
func (b *Backoff) Reset() { b.next = 0 }
