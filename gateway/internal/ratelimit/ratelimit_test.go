package ratelimit

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	p := &Policy{Rate: 10, Burst: 5, CloseAfter: 3, Window: 10 * time.Second}
	var b Bucket
	now := time.Unix(1000, 0)
	for i := range 5 {
		if v := b.Take(p, now); v != Allow {
			t.Fatalf("envelope %d of the burst: %v, want Allow", i, v)
		}
	}
	if v := b.Take(p, now); v != Refuse {
		t.Fatalf("over the burst: %v, want Refuse", v)
	}
	// 100ms later one token has been refilled at 10/s.
	now = now.Add(100 * time.Millisecond)
	if v := b.Take(p, now); v != Allow {
		t.Fatalf("after a refill: %v, want Allow", v)
	}
	if v := b.Take(p, now); v != Refuse {
		t.Fatalf("second refusal: %v, want Refuse", v)
	}
	if v := b.Take(p, now); v != Abusive {
		t.Fatalf("third refusal in the window: %v, want Abusive", v)
	}
}

func TestRefusalsForgottenAfterWindow(t *testing.T) {
	p := &Policy{Rate: 1, Burst: 1, CloseAfter: 2, Window: time.Second}
	var b Bucket
	now := time.Unix(1000, 0)
	b.Take(p, now) // spends the token
	if v := b.Take(p, now); v != Refuse {
		t.Fatalf("got %v, want Refuse", v)
	}
	// Past the window (and refilled), a later refusal starts a new count.
	now = now.Add(3 * time.Second)
	b.Take(p, now)
	if v := b.Take(p, now); v != Refuse {
		t.Fatalf("first refusal of a new window: %v, want Refuse", v)
	}
}

func TestBucketNeverExceedsBurst(t *testing.T) {
	p := &Policy{Rate: 1000, Burst: 3, Window: time.Second}
	var b Bucket
	now := time.Unix(1000, 0)
	b.Take(p, now)
	now = now.Add(time.Hour) // a long idle time refills to Burst only
	allowed := 0
	for b.Take(p, now) == Allow {
		allowed++
	}
	if allowed != 3 {
		t.Fatalf("allowed %d after idling, want the burst of 3", allowed)
	}
}

func TestUnlimited(t *testing.T) {
	var b Bucket
	p := &Policy{}
	for range 1000 {
		if b.Take(p, time.Unix(0, 0)) != Allow {
			t.Fatal("a zero rate must mean unlimited")
		}
	}
}

func BenchmarkTake(b *testing.B) {
	p := &Policy{Rate: 1e9, Burst: 1e9, CloseAfter: 10, Window: time.Second}
	var bk Bucket
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		bk.Take(p, now)
	}
}

// TestOnRefuse: the hook sees every refused envelope, abusive ones
// included, and no allowed one.
func TestOnRefuse(t *testing.T) {
	refused := 0
	p := &Policy{Rate: 1, Burst: 2, CloseAfter: 3, Window: time.Minute, OnRefuse: func() { refused++ }}
	var b Bucket
	now := time.Unix(1000, 0)
	var verdicts []Verdict
	for range 5 {
		verdicts = append(verdicts, b.Take(p, now))
	}
	want := []Verdict{Allow, Allow, Refuse, Refuse, Abusive}
	for i := range want {
		if verdicts[i] != want[i] {
			t.Fatalf("verdicts %v, want %v", verdicts, want)
		}
	}
	if refused != 3 {
		t.Errorf("OnRefuse called %d times, want 3", refused)
	}
}

// TestAllowance: a burst at once, then rate a second, never more than the
// burst after a pause, and nothing refilled by a clock that went back.
func TestAllowance(t *testing.T) {
	const rate, burst = 2, 10
	var a Allowance
	now := time.Unix(1000, 0)
	taken := func(n int) int {
		k := 0
		for range n {
			if a.Take(rate, burst, now) {
				k++
			}
		}
		return k
	}
	if got := taken(10000); got != burst {
		t.Fatalf("a flood at once: %d allowed, want the burst, %d", got, burst)
	}
	now = now.Add(time.Second)
	if got := taken(10000); got != rate {
		t.Fatalf("a second later: %d allowed, want %d", got, rate)
	}
	// One every 600 ms, below the rate, is always allowed.
	for i := range 50 {
		now = now.Add(600 * time.Millisecond)
		if !a.Take(rate, burst, now) {
			t.Fatalf("take %d at one every 600 ms refused", i)
		}
	}
	now = now.Add(time.Hour)
	if got := taken(10000); got != burst {
		t.Fatalf("after an hour: %d allowed, want the burst, %d", got, burst)
	}
	now = now.Add(-time.Hour)
	if got := taken(10); got != 0 {
		t.Fatalf("with the clock an hour back: %d allowed, want 0", got)
	}
	var unlimited Allowance
	for range 1000 {
		if !unlimited.Take(0, 0, now) {
			t.Fatal("rate 0 refused")
		}
	}
}

// TestAllowanceSpendAndGive: Spend may take the bucket below zero, and it
// then stays there until the rate has paid the debt; Give puts tokens back
// up to the burst.
func TestAllowanceSpendAndGive(t *testing.T) {
	var a Allowance
	now := time.Unix(1000, 0)
	if left := a.Spend(150, 100, 100, now); left != -50 {
		t.Fatalf("150 of a full bucket of 100: %v left, want -50", left)
	}
	if a.Take(100, 100, now) {
		t.Fatal("Take allowed while the bucket owes")
	}
	if left := a.Spend(0, 100, 100, now.Add(time.Second)); left != 50 {
		t.Fatalf("a second later at 100/s: %v left, want 50", left)
	}
	a.Give(80, 100)
	if left := a.Spend(0, 100, 100, now.Add(time.Second)); left != 100 {
		t.Fatalf("after giving 80: %v left, want the burst, 100", left)
	}
}
