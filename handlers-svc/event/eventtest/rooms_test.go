package eventtest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/proto"
)

// TestRecorderRooms: the Recorder's rooms follow the store's rules, and
// ToRooms records one dispatch to the members, inside a batch too.
func TestRecorderRooms(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	for _, u := range []string{"carol", "alice", "bob"} {
		if n, joined, err := rec.Join(ctx, "general", u); err != nil || !joined || n == 0 {
			t.Fatalf("join %s: %d %v %v", u, n, joined, err)
		}
	}
	if n, joined, err := rec.Join(ctx, "general", "bob"); err != nil || joined || n != 3 {
		t.Fatalf("second join: %d %v %v, want 3 false", n, joined, err)
	}
	if _, _, err := rec.Join(ctx, "bad room", "bob"); event.WireError(err).Code != proto.CodeBadRequest {
		t.Fatalf("invalid room: %v", err)
	}
	if _, _, err := rec.Join(ctx, "other", "bob"); err != nil {
		t.Fatal(err)
	}
	if err := rec.ToRooms(ctx, []string{"general", "other", "empty"}, "news", map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	got := rec.Dispatches()
	if len(got) != 1 || got[0].Event != "news" || !slices.Equal(got[0].Users, []string{"alice", "bob", "carol"}) {
		t.Fatalf("dispatched %+v, want news to alice, bob, carol once each", got)
	}
	if n, left, err := rec.Leave(ctx, "general", "alice"); err != nil || !left || n != 2 {
		t.Fatalf("leave: %d %v %v", n, left, err)
	}
	if n, left, err := rec.Leave(ctx, "general", "alice"); err != nil || left || n != 2 {
		t.Fatalf("second leave: %d %v %v", n, left, err)
	}
	rec.Reset()
	err := event.Atomically(ctx, rec, func(d event.Dispatcher) error {
		return d.(event.Rooms).ToRooms(ctx, []string{"general"}, "in_batch", nil)
	})
	if got := rec.Dispatches(); err != nil || len(got) != 1 || !slices.Equal(got[0].Users, []string{"bob", "carol"}) {
		t.Fatalf("batch: %v %+v", err, got)
	}
	down := event.Unavailable("dispatch unavailable")
	rec.FailWith(down)
	if _, err := rec.Members(ctx, "general"); !errors.Is(err, down) {
		t.Fatalf("Members with FailWith: %v", err)
	}
}

func TestRecorderRoomFull(t *testing.T) {
	ctx := context.Background()
	rec := eventtest.NewRecorder()
	for i := range proto.MaxRoomMembers {
		if _, _, err := rec.Join(ctx, "big", fmt.Sprint("u", i)); err != nil {
			t.Fatal(err)
		}
	}
	n, joined, err := rec.Join(ctx, "big", "one-too-many")
	if w := event.WireError(err); w == nil || w.Code != proto.CodeBadRequest || joined || n != proto.MaxRoomMembers {
		t.Fatalf("join of a full room: %d %v %v", n, joined, err)
	}
	if _, joined, err := rec.Join(ctx, "big", "u7"); err != nil || joined {
		t.Fatalf("a member joining a full room again: %v %v", joined, err)
	}
}
