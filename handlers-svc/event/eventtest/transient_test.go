package eventtest_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/proto"
)

// events returns the events of ds, in order.
func events(ds []proto.Dispatch) string {
	var names []string
	for _, d := range ds {
		names = append(names, d.Event)
	}
	return strings.Join(names, " ")
}

// TestRecorderTransient: the Recorder's transient view records dispatches
// to users, to rooms and broadcasts (alone or in a batch) among the
// others, and TransientDispatches tells them apart; a dispatch to
// connections through it is recorded as any is. Its checks, rooms and
// FailWith are the Recorder's, and Reset forgets them too.
func TestRecorderTransient(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	if _, _, err := rec.Join(ctx, "general", "carol"); err != nil {
		t.Fatal(err)
	}
	td := event.Transient(rec)
	steps := []func() error{
		func() error { return rec.ToUsers(ctx, []string{"bob"}, "message", nil) },
		func() error { return td.ToUsers(ctx, []string{"bob"}, "typing", map[string]string{"from": "alice"}) },
		func() error { return td.(event.Rooms).ToRooms(ctx, []string{"general"}, "cursor", nil) },
		func() error { return td.Broadcast(ctx, "presence", nil) },
		func() error { return td.ToConns(ctx, []string{"c1"}, "greeting", nil) },
		func() error {
			return event.Atomically(ctx, rec, func(d event.Dispatcher) error {
				if err := event.Transient(d).ToUsers(ctx, []string{"bob"}, "typing_stopped", nil); err != nil {
					return err
				}
				return d.ToUsers(ctx, []string{"bob"}, "message_sent", nil)
			})
		},
		func() error {
			return event.Atomically(ctx, td, func(d event.Dispatcher) error {
				return d.ToUsers(ctx, []string{"bob"}, "seen", nil)
			})
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if got, want := events(rec.Dispatches()), "message typing cursor presence greeting typing_stopped message_sent seen"; got != want {
		t.Fatalf("Dispatches: %s, want %s", got, want)
	}
	if got, want := events(rec.TransientDispatches()), "typing cursor presence typing_stopped seen"; got != want {
		t.Fatalf("TransientDispatches: %s, want %s", got, want)
	}
	tr := rec.TransientDispatches()
	if !slices.Equal(tr[0].Users, []string{"bob"}) || string(tr[0].Args) != `{"from":"alice"}` || !slices.Equal(tr[1].Users, []string{"carol"}) || !tr[2].Broadcast {
		t.Fatalf("TransientDispatches = %v", tr)
	}

	if err := td.ToUsers(ctx, []string{"bob"}, "connected", nil); err == nil {
		t.Fatal("a reserved event name through the transient view: no error")
	}
	if err := td.ToUsers(ctx, []string{"bad\n"}, "typing", nil); event.WireError(err).Code != proto.CodeBadRequest {
		t.Fatalf("an invalid user id through the transient view: %v, want bad_request", err)
	}
	boom := errors.New("boom")
	rec.FailWith(boom)
	if err := td.ToUsers(ctx, []string{"bob"}, "typing", nil); !errors.Is(err, boom) {
		t.Fatalf("FailWith: %v, want boom", err)
	}
	rec.FailWith(nil)
	rec.Reset()
	if n, m := len(rec.Dispatches()), len(rec.TransientDispatches()); n != 0 || m != 0 {
		t.Fatalf("after Reset: %d dispatches, %d transient", n, m)
	}
}

// TestTransientWithoutSupport: event.Transient of a Dispatcher that
// cannot dispatch transient returns it, and its dispatches are made as
// it makes them.
func TestTransientWithoutSupport(t *testing.T) {
	rec := eventtest.NewRecorder()
	plain := struct{ event.Dispatcher }{rec} // hides Recorder.Transient
	if err := event.Transient(plain).ToUsers(context.Background(), []string{"bob"}, "typing", nil); err != nil {
		t.Fatal(err)
	}
	if n, m := len(rec.Dispatches()), len(rec.TransientDispatches()); n != 1 || m != 0 {
		t.Fatalf("%d dispatches, %d transient; want the one, recorded as the dispatcher records", n, m)
	}
}
