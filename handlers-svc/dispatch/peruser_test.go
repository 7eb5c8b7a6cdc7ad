package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestPerUserRouting: with PerUser, a dispatch to users goes out as one
// message per user on that user's channel, naming that user only with that
// user's position, also inside a Batch and for rooms; broadcasts, dispatches
// to connections, and dispatches to users and connections at once stay on
// the shared channel. Every message is published in call order on one
// subscription that listens to all the channels.
func TestPerUserRouting(t *testing.T) {
	srv := testkit.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub := newClient(t, srv.Addr())
	ps := sub.Subscribe(ctx, proto.Channel, proto.UserChannel("bob"), proto.UserChannel("alice"))
	t.Cleanup(func() { _ = ps.Close() })
	for range 3 {
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rdb := newClient(t, srv.Addr())
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute, PerUser: true})
	if _, _, err := d.Join(ctx, "lobby", "alice"); err != nil {
		t.Fatal(err)
	}

	pos, err := d.Dispatch(ctx, dispatch.Message{Event: "m1", Users: []string{"bob", "alice", "bob"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ToConns(ctx, []string{"c1"}, "m2", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dispatch(ctx, dispatch.Message{Event: "m3", Users: []string{"bob"}, Conns: []string{"c1"}}); err != nil {
		t.Fatal(err)
	}
	if err := d.Batch(ctx, func(b event.Dispatcher) error {
		if err := b.Broadcast(ctx, "m4", nil); err != nil {
			return err
		}
		return b.ToUsers(ctx, []string{"alice"}, "m5", nil)
	}); err != nil {
		t.Fatal(err)
	}
	if err := d.ToRooms(ctx, []string{"lobby"}, "m6", nil); err != nil {
		t.Fatal(err)
	}

	type want struct{ channel, event, user string }
	for i, w := range []want{
		{proto.UserChannel("bob"), "m1", "bob"},
		{proto.UserChannel("alice"), "m1", "alice"},
		{proto.Channel, "m2", ""},
		{proto.Channel, "m3", "bob"}, // with a connection: on the shared channel, once
		{proto.Channel, "m4", ""},
		{proto.UserChannel("alice"), "m5", "alice"},
		{proto.UserChannel("alice"), "m6", "alice"},
	} {
		msg, err := ps.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		dd, err := proto.DecodeDispatch([]byte(msg.Payload))
		if err != nil {
			t.Fatal(err)
		}
		if msg.Channel != w.channel || dd.Event != w.event {
			t.Fatalf("message %d: %s on %s, want %s on %s", i, dd.Event, msg.Channel, w.event, w.channel)
		}
		if w.channel != proto.Channel {
			if len(dd.Users) != 1 || dd.Users[0] != w.user || len(dd.Pos) != 1 || dd.Pos[w.user] == "" {
				t.Fatalf("message %d names %v with %v, want %s alone with its position", i, dd.Users, dd.Pos, w.user)
			}
			if dd.Event == "m1" && dd.Pos[w.user] != pos.Users[w.user] {
				t.Fatalf("%s's position %s, Dispatch returned %s", w.user, dd.Pos[w.user], pos.Users[w.user])
			}
		}
	}
}

// TestPerUserOfflineIsNotUnheard: in per-user mode a dispatch to a user no
// worker holds reaches no subscriber, which is normal (the user is
// offline) and not counted as unheard, nor does it end an unheard
// episode; a broadcast no worker hears still is counted.
func TestPerUserOfflineIsNotUnheard(t *testing.T) {
	srv := testkit.StartRedis(t)
	ctx := context.Background()
	d := dispatch.New(newClient(t, srv.Addr()), dispatch.Options{Window: time.Minute, PerUser: true})
	if err := d.ToUsers(ctx, []string{"offline", "away"}, "message", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dispatch(ctx, dispatch.Message{Event: "message", Users: []string{"offline"}}); err != nil {
		t.Fatal(err)
	}
	if n := d.Unheard(); n != 0 {
		t.Fatalf("Unheard = %d after dispatches to offline users, want 0", n)
	}
	if err := d.Broadcast(ctx, "news", nil); err != nil {
		t.Fatal(err)
	}
	if n := d.Unheard(); n != 1 {
		t.Fatalf("Unheard = %d after a broadcast no worker heard, want 1", n)
	}
}
