// Package ratelimit is the per-connection allowance of incoming envelopes: a
// token bucket, and a count of refusals that tells a client that keeps
// sending over its limit (to be disconnected) from one that bursts. And
// Allowance, a bare token bucket for what is only ever refused quietly (a
// client's pings, answered or not).
//
// A Bucket or an Allowance belongs to one connection's read loop and is not
// safe for concurrent use; a Bucket costs 64 bytes, an Allowance 16, and
// neither a goroutine or timer.
package ratelimit

import "time"

// Policy is the allowance every connection gets.
type Policy struct {
	Rate  float64 // envelopes per second, refilled continuously; 0 = unlimited
	Burst float64 // bucket size: envelopes allowed at once
	// CloseAfter refusals within Window mark the client as abusive.
	CloseAfter int
	Window     time.Duration
	// OnRefuse, when set, is called for every envelope refused (for
	// metrics); it must be cheap and safe for concurrent use.
	OnRefuse func()
}

// Verdict is what to do with one envelope.
type Verdict int

const (
	Allow   Verdict = iota // within the allowance
	Refuse                 // over it: answer rate_limited
	Abusive                // over it persistently: close the connection
)

// Bucket tracks one connection.
type Bucket struct {
	tokens      float64
	last        time.Time // of the last refill; zero = full bucket
	refusals    int
	windowStart time.Time
}

// Take spends one token at now and says what to do with the envelope.
func (b *Bucket) Take(p *Policy, now time.Time) Verdict {
	if p.Rate <= 0 {
		return Allow
	}
	if b.last.IsZero() {
		b.tokens = p.Burst
	} else {
		b.tokens = min(p.Burst, b.tokens+now.Sub(b.last).Seconds()*p.Rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return Allow
	}
	return b.refused(p, now)
}

// refused counts one envelope the bucket refused at now and says what to
// do with it: Refuse, or Abusive once the refusals within the window reach
// CloseAfter.
func (b *Bucket) refused(p *Policy, now time.Time) Verdict {
	if now.Sub(b.windowStart) > p.Window {
		b.windowStart, b.refusals = now, 0
	}
	b.refusals++
	if p.OnRefuse != nil {
		p.OnRefuse()
	}
	if p.CloseAfter > 0 && b.refusals >= p.CloseAfter {
		return Abusive
	}
	return Refuse
}

// Allowance is a token bucket with no verdict beyond yes or no and no
// count of refusals, small enough for every socket to keep one. The zero
// value is a full bucket.
type Allowance struct {
	tokens float64
	last   int64 // UnixNano of the last refill; 0 = full bucket
}

// Take spends one token at now, the bucket refilled at rate per second up
// to burst, and reports whether there was one. A rate of 0 or less allows
// everything. A clock that went back refills nothing.
func (a *Allowance) Take(rate, burst float64, now time.Time) bool {
	if rate <= 0 {
		return true
	}
	a.refill(rate, burst, now)
	if a.tokens >= 1 {
		a.tokens--
		return true
	}
	return false
}

// refill adds what the time since the last refill earned at rate, up to
// burst.
func (a *Allowance) refill(rate, burst float64, now time.Time) {
	t := now.UnixNano()
	switch {
	case a.last == 0:
		a.tokens = burst
	case t > a.last:
		a.tokens = min(burst, a.tokens+float64(t-a.last)/float64(time.Second)*rate)
	}
	a.last = t
}

// Spend takes n tokens at now, the bucket refilled first as Take refills
// it, even when fewer are left: the bucket then owes them, and Take and
// Spend see it below zero until the rate has paid them back. It returns
// the tokens left, below zero while owing.
func (a *Allowance) Spend(n, rate, burst float64, now time.Time) float64 {
	a.refill(rate, burst, now)
	a.tokens -= n
	return a.tokens
}

// Give puts n tokens back, up to burst.
func (a *Allowance) Give(n, burst float64) { a.tokens = min(a.tokens+n, burst) }
