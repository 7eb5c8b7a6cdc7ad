package supervisor

import (
	"context"
	"time"
)

// parentPoll is how often a worker without Pdeathsig checks its parent.
const parentPoll = 500 * time.Millisecond

// watchParent returns a context that ends when ctx does, when its cancel
// function is called, or when getppid no longer returns the parent it
// returned at first. The goroutine that polls every period ends with the
// context.
func watchParent(ctx context.Context, getppid func() int, every time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	parent := getppid()
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if getppid() != parent {
					cancel()
					return
				}
			}
		}
	}()
	return ctx, cancel
}
