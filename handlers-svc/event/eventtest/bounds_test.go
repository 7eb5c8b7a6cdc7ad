package eventtest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/proto"
)

// TestRecorderBoundsTargets: the Recorder refuses what the real
// dispatcher refuses (package dispatch's bounds), so a handler test does
// not pass on a dispatch that fails in service; rooms' members are not
// counted against dispatch.MaxUsers, as in service.
func TestRecorderBoundsTargets(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	many := func(k int, f string) []string {
		out := make([]string, k)
		for i := range out {
			out[i] = fmt.Sprintf(f, i)
		}
		return out
	}
	for name, do := range map[string]func() error{
		"control character": func() error { return rec.ToUsers(ctx, []string{"bob\x00"}, "e", nil) },
		"too many users":    func() error { return rec.ToUsers(ctx, many(dispatch.MaxUsers+1, "u%d"), "e", nil) },
		"bad conn":          func() error { return rec.ToConns(ctx, []string{"c 1"}, "e", nil) },
		"too many rooms":    func() error { return rec.ToRooms(ctx, many(dispatch.MaxRooms+1, "r%d"), "e", nil) },
		"join":              func() error { _, _, err := rec.Join(ctx, "r", "a\u202eb"); return err },
		"in a batch": func() error {
			return rec.Batch(ctx, func(d event.Dispatcher) error { return d.ToUsers(ctx, []string{""}, "e", nil) })
		},
	} {
		err := do()
		if e, ok := errors.AsType[*event.Error](err); !ok || e.Code != proto.CodeBadRequest {
			t.Errorf("%s: %v, want bad_request", name, err)
		}
	}
	if n := len(rec.Dispatches()); n != 0 {
		t.Fatalf("%d dispatches recorded for refused calls", n)
	}
	for _, room := range []string{"a", "b"} {
		for _, u := range many(proto.MaxRoomMembers, room+"%d") {
			if _, _, err := rec.Join(ctx, room, u); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := rec.ToRooms(ctx, []string{"a", "b"}, "e", nil); err != nil {
		t.Fatalf("two full rooms: %v", err)
	}
	if d := rec.Dispatches(); len(d) != 1 || len(d[0].Users) != 2*proto.MaxRoomMembers {
		t.Fatalf("recorded %d dispatches, want one to %d users", len(d), 2*proto.MaxRoomMembers)
	}
}
