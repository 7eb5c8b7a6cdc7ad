package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestTargetBuildersBounded: ToUsers, ToConns and ToRooms, alone or in a
// Batch, and Join refuse with bad_request what the dispatch API refuses
// (Message.Check): a user id no token can carry, a connection id the
// gateway never makes, more than MaxUsers, MaxConns or MaxRooms targets.
// Nothing is recorded or published for them; the largest valid ones go
// through.
func TestTargetBuildersBounded(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := newClient(t, srv.Addr())
	ps := subscribe(t, newClient(t, srv.Addr()))
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	ctx := context.Background()

	n := func(k int, f string) []string {
		out := make([]string, k)
		for i := range out {
			out[i] = fmt.Sprintf(f, i)
		}
		return out
	}
	refused := []struct {
		name string
		do   func() error
	}{
		{"control character", func() error { return d.ToUsers(ctx, []string{"bob", "mallory\x00"}, "message", nil) }},
		{"invalid UTF-8", func() error { return d.ToUsers(ctx, []string{"\xff"}, "message", nil) }},
		{"bidi override", func() error { return d.ToUsers(ctx, []string{"a\u202eb"}, "message", nil) }},
		{"empty user", func() error { return d.ToUsers(ctx, []string{""}, "message", nil) }},
		{"user too long", func() error {
			return d.ToUsers(ctx, []string{strings.Repeat("u", dispatch.MaxUserLen+1)}, "message", nil)
		}},
		{"too many users", func() error { return d.ToUsers(ctx, n(dispatch.MaxUsers+1, "u%d"), "message", nil) }},
		{"bad conn", func() error { return d.ToConns(ctx, []string{"c 1"}, "message", nil) }},
		{"too many conns", func() error { return d.ToConns(ctx, n(dispatch.MaxConns+1, "c%d"), "message", nil) }},
		{"too many rooms", func() error { return d.ToRooms(ctx, n(dispatch.MaxRooms+1, "r%d"), "message", nil) }},
		{"batch user", func() error {
			return d.Batch(ctx, func(b event.Dispatcher) error { return b.ToUsers(ctx, []string{"\n"}, "message", nil) })
		}},
		{"batch conns", func() error {
			return d.Batch(ctx, func(b event.Dispatcher) error { return b.ToConns(ctx, n(dispatch.MaxConns+1, "c%d"), "message", nil) })
		}},
		{"join", func() error { _, _, err := d.Join(ctx, "r", "bad\tid"); return err }},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if e, ok := errors.AsType[*event.Error](err); !ok || e.Code != proto.CodeBadRequest {
				t.Fatalf("err = %v, want bad_request", err)
			}
		})
	}
	if keys := rdb.Keys(ctx, "sb:*").Val(); len(keys) != 0 {
		t.Fatalf("refused dispatches left keys %v", keys)
	}

	// The largest valid ones, and rooms whose members together are more
	// than MaxUsers: the bound is on the ids a caller names.
	if err := d.ToUsers(ctx, append(n(dispatch.MaxUsers-1, "u%d"), strings.Repeat("é", dispatch.MaxUserLen/2)), "message", nil); err != nil {
		t.Fatalf("MaxUsers valid users: %v", err)
	}
	for _, room := range []string{"a", "b"} {
		for _, m := range n(proto.MaxRoomMembers, room+"%d") {
			if err := rdb.SAdd(ctx, proto.RoomMembersKey(room), m).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := d.ToRooms(ctx, []string{"a", "b"}, "message", nil); err != nil {
		t.Fatalf("two full rooms: %v", err)
	}
	// Marker: nothing was published before the valid dispatches.
	if err := d.Broadcast(ctx, "marker", nil); err != nil {
		t.Fatal(err)
	}
	var users int
	for {
		msg, err := proto.DecodeDispatch([]byte(receive(t, ps)))
		if err != nil {
			t.Fatal(err)
		}
		if msg.Broadcast {
			break
		}
		users += len(msg.Users)
	}
	if want := dispatch.MaxUsers + 2*proto.MaxRoomMembers; users != want {
		t.Fatalf("published to %d users, want %d", users, want)
	}
}
