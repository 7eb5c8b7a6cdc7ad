package backoff_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/backoff"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNextDoublesUpToMax(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
		want     []time.Duration
	}{
		{"doubles then caps", time.Microsecond, 5 * time.Microsecond,
			[]time.Duration{1000, 2000, 4000, 5000, 5000}},
		{"max below twice min", 3 * time.Microsecond, 4 * time.Microsecond,
			[]time.Duration{3000, 4000, 4000}},
		{"min equals max", time.Microsecond, time.Microsecond,
			[]time.Duration{1000, 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := backoff.Backoff{Min: tt.min, Max: tt.max}
			for i, want := range tt.want {
				if got := b.Next(); got != want {
					t.Fatalf("wait %d: Next = %s, want %s", i, got, want)
				}
				if !b.Wait(context.Background()) {
					t.Fatalf("wait %d: Wait = false with a live context", i)
				}
			}
			b.Reset()
			if got := b.Next(); got != tt.min {
				t.Fatalf("after Reset: Next = %s, want Min %s", got, tt.min)
			}
		})
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	b := backoff.Backoff{Min: time.Hour, Max: 2 * time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if b.Wait(ctx) {
		t.Fatal("Wait = true with a done context")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Wait took %s with a done context", d)
	}
	if got := b.Next(); got != 2*time.Hour {
		t.Fatalf("Next = %s after a cut wait, want it doubled to 2h", got)
	}
}

func TestSleep(t *testing.T) {
	if !backoff.Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep = false with a live context")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if backoff.Sleep(ctx, time.Hour) {
		t.Fatal("Sleep(1h) = true, want false once the context ends")
	}
}
