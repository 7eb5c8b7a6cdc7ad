package dispatch_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestBatchDispatcherUsedConcurrently: event's package doc says every
// Dispatcher must be safe for concurrent use, and eventtest.Recorder's
// batch is. The Redis dispatcher's batch (the d that event.Atomically
// hands fn) appended to a shared slice without a lock: a handler that
// fans its dispatches out over goroutines inside Atomically passed its
// Recorder test, then in production lost some of them (731-790 of 800
// published), every call and the batch answering nil. And a dispatch
// through the batch after fn returned is refused, not silently dropped.
func TestBatchDispatcherUsedConcurrently(t *testing.T) {
	const workers, each = 8, 500
	fanOut := func(ctx context.Context, d event.Dispatcher) error {
		return event.Atomically(ctx, d, func(d event.Dispatcher) error {
			var wg sync.WaitGroup
			errs := make(chan error, workers*each)
			start := make(chan struct{})
			for w := range workers {
				wg.Go(func() {
					<-start
					for i := range each {
						if err := d.ToUsers(ctx, []string{fmt.Sprintf("u%d-%d", w, i)}, "notice", nil); err != nil {
							errs <- err
						}
					}
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			return <-errs // nil when there was none
		})
	}
	ctx := context.Background()

	// The handler's unit test: the Recorder keeps every dispatch.
	rec := eventtest.NewRecorder()
	if err := fanOut(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Dispatches()); n != workers*each {
		t.Fatalf("the Recorder recorded %d dispatches, want %d", n, workers*each)
	}

	// The same handler on the Redis dispatcher.
	srv := testkit.StartRedis(t)
	ps := subscribe(t, newClient(t, srv.Addr()))
	d := dispatch.New(newClient(t, srv.Addr()), dispatch.Options{Window: dispatch.NoHistory})
	if err := fanOut(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := d.Broadcast(ctx, "marker", nil); err != nil {
		t.Fatal(err)
	}
	published := 0
	for {
		if got := receive(t, ps); strings.HasPrefix(got, `{"event":"marker"`) {
			break
		}
		published++
	}
	if published != workers*each {
		t.Fatalf("the batch published %d of the %d dispatches its calls accepted (each answered nil)", published, workers*each)
	}

	// Kept past fn: a dispatch then is refused, never silently dropped.
	var kept event.Dispatcher
	if err := d.Batch(ctx, func(b event.Dispatcher) error { kept = b; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := kept.ToUsers(ctx, []string{"late"}, "notice", nil); err == nil {
		t.Fatal("a dispatch through a batch after it ended answered nil; nothing publishes it")
	}
}
