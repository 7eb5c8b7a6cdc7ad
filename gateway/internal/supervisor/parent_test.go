package supervisor

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestWatchParent: the context ends once the parent changes, and not
// before; cancelling it ends the watch (TestMain's leak check).
func TestWatchParent(t *testing.T) {
	var ppid, calls atomic.Int64
	ppid.Store(100)
	getppid := func() int { calls.Add(1); return int(ppid.Load()) }
	ctx, cancel := watchParent(context.Background(), getppid, time.Millisecond)
	defer cancel()
	// Several checks of a parent that lives on leave the context alone.
	deadline := time.Now().Add(wait)
	for calls.Load() < 5 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if calls.Load() < 5 || ctx.Err() != nil {
		t.Fatalf("after %d checks of a living parent: ctx.Err() = %v, want nil", calls.Load(), ctx.Err())
	}
	ppid.Store(1) // reparented: the supervisor died
	select {
	case <-ctx.Done():
	case <-time.After(wait):
		t.Fatal("did not end after the parent changed")
	}

	ctx, cancel = watchParent(context.Background(), getppid, time.Hour)
	cancel()
	<-ctx.Done()
}

// TestStopWithParent: this process's own parent lives on, so the context
// ends only with the one it came from.
func TestStopWithParent(t *testing.T) {
	parent, stop := context.WithCancel(context.Background())
	ctx, cancel := StopWithParent(parent)
	defer cancel()
	if ctx.Err() != nil {
		t.Fatal("ended at once")
	}
	stop()
	<-ctx.Done()
}
