package eventtest_test

import (
	"context"
	"slices"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
)

// TestRecorderExcept: the Recorder's Except view records its dispatches
// with the list (event.ExceptSender: the request's connection), in
// order with the others, transient through Transient, inside a Batch too;
// a bad id is refused as the real dispatcher refuses it.
func TestRecorderExcept(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	r := &event.Request{Conn: "c1", User: "alice"}
	if _, _, err := rec.Join(ctx, "lobby", "bob"); err != nil {
		t.Fatal(err)
	}
	steps := []func() error{
		func() error { return event.ExceptSender(rec, r).ToUsers(ctx, []string{"bob"}, "a", nil) },
		func() error { return rec.ToUsers(ctx, []string{"bob"}, "b", nil) },
		func() error {
			return event.ExceptSender(rec, r).(event.Rooms).ToRooms(ctx, []string{"lobby"}, "c", nil)
		},
		func() error { return event.Transient(event.ExceptSender(rec, r)).Broadcast(ctx, "d", nil) },
		func() error {
			return event.Atomically(ctx, rec, func(b event.Dispatcher) error {
				return event.ExceptSender(b, r).ToUsers(ctx, []string{"bob"}, "e", nil)
			})
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	ds := rec.Dispatches()
	var got []string
	for _, d := range ds {
		x := "-"
		if len(d.Except) > 0 {
			x = d.Except[0]
		}
		got = append(got, d.Event+":"+x)
	}
	if want := []string{"a:c1", "b:-", "c:c1", "d:c1", "e:c1"}; !slices.Equal(got, want) {
		t.Fatalf("recorded %v, want %v", got, want)
	}
	if tr := rec.TransientDispatches(); len(tr) != 1 || tr[0].Event != "d" {
		t.Fatalf("transient %+v, want d", tr)
	}
	if err := event.Except(rec, "a b").ToUsers(ctx, []string{"bob"}, "f", nil); event.WireError(err).Code != "bad_request" {
		t.Fatalf("a bad id: %v, want bad_request", err)
	}
}
