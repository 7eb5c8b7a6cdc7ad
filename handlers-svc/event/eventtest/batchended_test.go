package eventtest_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestBatchViewsRefuseAfterTheBatchEnded: the
// real batch refuses a dispatch made after the function given to Batch
// returned, through the batch's d and through every view of it, which
// share its list (dispatch.collected); the Recorder's batch is meant to do
// the same ("the Recorder's batch too"). Its Except view does not: except.do
// records into its own Recorder and appends to the batch's without looking
// at ended, so the late dispatch answers nil and is recorded nowhere: the
// very silent drop the commit removed from the real batch, in the tool
// backend teams test their handlers with. (Done from another goroutine
// while fn returns, that append also races Recorder.Batch's read of the
// batch's dispatches, which it makes without the batch's lock.)
func TestBatchViewsRefuseAfterTheBatchEnded(t *testing.T) {
	ctx := context.Background()
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	rd := dispatch.New(rdb, dispatch.Options{Window: dispatch.NoHistory})
	rec := eventtest.NewRecorder()

	views := map[string]func(event.Dispatcher) event.Dispatcher{
		"d":                    func(d event.Dispatcher) event.Dispatcher { return d },
		"Transient(d)":         event.Transient,
		"Except(d)":            func(d event.Dispatcher) event.Dispatcher { return event.Except(d, "c-1") },
		"Transient(Except(d))": func(d event.Dispatcher) event.Dispatcher { return event.Transient(event.Except(d, "c-1")) },
	}
	for name, view := range views {
		for _, kind := range []struct {
			name string
			b    event.Batcher
		}{{"dispatch.Dispatcher", rd}, {"eventtest.Recorder", rec}} {
			var kept event.Dispatcher
			if err := kind.b.Batch(ctx, func(d event.Dispatcher) error { kept = view(d); return nil }); err != nil {
				t.Fatal(err)
			}
			if err := kept.ToUsers(ctx, []string{"bob"}, "late", nil); err == nil {
				t.Errorf("%s: a dispatch through the batch's %s after the batch ended answered nil; nothing records or publishes it",
					kind.name, name)
			}
		}
	}
	if got := rec.Dispatches(); len(got) != 0 {
		t.Errorf("the Recorder recorded %+v after its batches ended", got)
	}
}
