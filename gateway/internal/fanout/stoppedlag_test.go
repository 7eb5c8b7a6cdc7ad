package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/fanout"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestAcquireAfterRunEndedWhileLaggingIsNotLagging: Run ends while the
// fan-out is lagging (its deliverer held, a burst queued). Run turns
// Lagging off as it returns, but with a plain Store: the channel that
// setLagging closed when lagging turned on stays closed, and is not made
// anew as setLagging does when it turns lagging off. Acquire of a new
// user then selects between that closed channel and the closed done
// channel, and returns ErrLagging (the worker's 1013 "gateway
// overloaded") about half the time, although Lagging() is false, where
// its contract is errStopped once Run has ended. Run's turn-off should
// make the channel anew under lagMu, as setLagging(false) does.
func TestAcquireAfterRunEndedWhileLaggingIsNotLagging(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	g := newGated()
	ctx, cancel := context.WithCancel(context.Background())
	sub := fanout.New(client(t, r), g, 128, zap.NewNop(), fanout.PerUser(time.Minute))
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	testkit.Eventually(t, wait, "subscribed", sub.Live)
	const burst = 40
	for i := range burst {
		publish(t, pub, fmt.Sprintf(`{"event":"e%d","broadcast":true}`, i))
	}
	testkit.Eventually(t, wait, "the whole burst is read", func() bool { return sub.Backlog() == burst })
	if !sub.Lagging() {
		t.Fatal("setup: not lagging with the whole burst queued")
	}
	cancel()
	close(g.step) // the deliverer, held in its first Deliver, sees the end
	<-done
	// Lagging turns off only at the low mark (128/64 = 2): more dropped
	// than that, and it was on when Run ended.
	if dropped := sub.DroppedAtExit(); dropped <= 2 {
		t.Fatalf("setup: only %d dropped at exit; lagging may have ended before Run did", dropped)
	}
	if sub.Lagging() {
		t.Fatal("Lagging() after Run returned")
	}
	for i := range 20 {
		actx, acancel := context.WithTimeout(context.Background(), wait)
		err := sub.Acquire(actx, "bob")
		acancel()
		sub.Release("bob")
		if err == nil || errors.Is(err, fanout.ErrLagging) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Acquire(bob) #%d after Run ended, not lagging: %v, want the stopped error", i, err)
		}
	}
}
