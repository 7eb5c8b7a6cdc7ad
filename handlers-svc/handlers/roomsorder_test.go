package handlers_test

// Rooms under concurrent joins and leaves of one user, and the limiter
// charged before a join (each test failed on cca7280, which moved the
// charge and added the room_left of a non-member's leave).

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/handlers-svc/limit"
	"github.com/switchboard/switchboard/proto"
)

// fillRoom makes room hold n members u0..u(n-1), in rec's memory.
func fillRoom(t *testing.T, rec *eventtest.Recorder, room string, n int) {
	t.Helper()
	for i := range n {
		if _, _, err := rec.Join(context.Background(), room, fmt.Sprint("u", i)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestJoinFullRoomIsBadRequestWithDefaultLimits: protocol.md section 5
// says a join beyond a room's 1,000 members gets bad_request. Charging
// the limiter before the join with the members plus the joiner (1,001,
// over the default burst, which limit.Sender refuses outright) answered
// rate_limited for ever instead; a full room is not charged.
func TestJoinFullRoomIsBadRequestWithDefaultLimits(t *testing.T) {
	rec := eventtest.NewRecorder()
	mux := limitedRoomsMux(t, rec, limit.DefaultConfig())
	fillRoom(t, rec, "full", proto.MaxRoomMembers)
	_, err := serve(mux, "joinRoom", "alice", map[string]string{"room": "full"})
	if w := event.WireError(err); w == nil || w.Code != proto.CodeBadRequest {
		t.Fatalf("alice's join of a room of %d members, default limits: %v, want bad_request (the room is full)",
			proto.MaxRoomMembers, w)
	}
}

// TestRefusedJoinChargesNothing: a join of a full room dispatches nothing
// and charges nothing. Charged first (1,001 recipients each), a few
// refused joins turned the same request's bad_request into rate_limited,
// and refused the sender's messages to its own rooms too. (A join refused
// because the user is in proto.MaxRoomsPerUser rooms still pays.)
func TestRefusedJoinChargesNothing(t *testing.T) {
	rec := eventtest.NewRecorder()
	mux := limitedRoomsMux(t, rec, limit.Config{RecipientsPerSecond: 1, RecipientsBurst: 5000})
	fillRoom(t, rec, "full", proto.MaxRoomMembers)
	for i := range 5 {
		_, err := serve(mux, "joinRoom", "alice", map[string]string{"room": "full"})
		if w := event.WireError(err); w == nil || w.Code != proto.CodeBadRequest {
			t.Fatalf("alice's join %d of a full room: %v, want bad_request; none of the 4 before reached anyone, "+
				"but each was charged the room's members", i+1, w)
		}
	}
	if n := reached(rec); n != 0 {
		t.Fatalf("refused joins dispatched to %d users", n)
	}
}

// roomEvents subscribes to proto.Channel and returns a function that
// returns, once marker is broadcast, the room_joined and room_left events
// published to user, in order, as "<event> <args.user>".
func roomEvents(t *testing.T, addr string, d *dispatch.Dispatcher, user string) func() []string {
	t.Helper()
	ctx := context.Background()
	sub := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = sub.Close() })
	ps := sub.Subscribe(ctx, proto.Channel)
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	return func() []string {
		t.Helper()
		if err := d.Broadcast(ctx, "marker", nil); err != nil {
			t.Fatal(err)
		}
		var events []string
		for {
			m, err := ps.ReceiveMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got proto.Dispatch
			if err := json.Unmarshal([]byte(m.Payload), &got); err != nil {
				t.Fatal(err)
			}
			if got.Event == "marker" {
				return events
			}
			if (got.Event != handlers.EventRoomJoined && got.Event != handlers.EventRoomLeft) || !slices.Contains(got.Users, user) {
				continue
			}
			var rm handlers.RoomMember
			if err := json.Unmarshal(got.Args, &rm); err != nil {
				t.Fatal(err)
			}
			events = append(events, got.Event+" "+rm.User)
		}
	}
}

// TestLeaveOfNonMemberDuringJoinTellsLeftLast: alice, not in "general",
// sends joinRoom from device A and leaveRoom from device B at about the
// same time. B's leave runs after A's join script added her and before
// A's room_joined read the members (ToRooms' SMEMBERS): B finds her no
// member, its leave script removes her (left), and leftAfter sends
// room_left to carol. A's room_joined then goes out to the members, carol.
// Carol hears "room_left alice" then "room_joined alice", and alice is no
// member: carol's list of members holds alice for good (A was acked
// joined, B left). protocol.md section 5 now promises that such a leave
// "removes that join and sends room_left for it"; for it to mean
// anything, room_left must come after the room_joined it answers.
func TestLeaveOfNonMemberDuringJoinTellsLeftLast(t *testing.T) {
	ctx := context.Background()
	addr, rdb, d, mux, _ := roomsOnRedis(t, 0)
	carolHeard := roomEvents(t, addr, d, "carol")

	var bErr error
	// With no recipients bound, A's join first reads the members in
	// ToRooms, for room_joined, after its join script: B runs before that
	// read (with a bound the limiter's read would come first).
	hook := &beforeCmd{key: proto.RoomMembersKey("general"), names: []string{"smembers"}, do: func() {
		r := eventtest.NewRequest("leaveRoom", "alice", map[string]string{"room": "general"})
		r.Conn = "alice-b"
		bErr = mux.ServeEvent(ctx, r)
	}}
	rdb.AddHook(hook)
	r := eventtest.NewRequest("joinRoom", "alice", map[string]string{"room": "general"})
	r.Conn = "alice-a"
	aErr := mux.ServeEvent(ctx, r)
	if !hook.fired.Load() || aErr != nil || bErr != nil {
		t.Fatalf("setup: B's leave ran during A's join: %v; A: %v, B: %v", hook.fired.Load(), aErr, bErr)
	}
	events := carolHeard()
	members, err := d.Members(ctx, "general")
	if err != nil {
		t.Fatal(err)
	}
	member := slices.Contains(members, "alice")
	last := ""
	if len(events) > 0 {
		last = events[len(events)-1]
	}
	if want := map[bool]string{true: "room_joined alice", false: "room_left alice"}[member]; last != want {
		t.Fatalf("carol heard %q, the last %q; alice is a member: %v (%v)", events, last, member, members)
	}
}

// TestLeaveOfNonMemberRemovingAJoinIsNotRateLimitedIntoSilence: as
// TestLeaveOfNonMemberRemovesAConcurrentJoin, device B's join lands while
// device A's leave (which found alice no member) is about to run its
// leave script; B's join charges the room to alice and tells carol. A's
// leave removes alice and leftAfter charges the room again: over the
// allowance B's join just used, it is refused, and A gets handler_error.
// Alice is no member, but carol was told room_joined and never room_left,
// and nothing can tell her later: a retried leaveRoom finds alice no
// member and removes nothing (left false), so it sends nothing. The
// limiter refuses before a change, where "rate_limited, nothing done"
// holds; here the change is made.
func TestLeaveOfNonMemberRemovingAJoinIsNotRateLimitedIntoSilence(t *testing.T) {
	ctx := context.Background()
	// A burst of 2 and no in-process share: every charge is counted in Redis.
	addr, rdb, d, mux, _ := roomsOnRedis(t, 2)
	carolHeard := roomEvents(t, addr, d, "carol")

	var bErr error
	hook := &beforeCmd{key: proto.RoomMembersKey("general"), names: scripts, do: func() {
		r := eventtest.NewRequest("joinRoom", "alice", map[string]string{"room": "general"})
		r.Conn = "alice-b"
		bErr = mux.ServeEvent(ctx, r)
	}}
	rdb.AddHook(hook)
	leave := func() error {
		r := eventtest.NewRequest("leaveRoom", "alice", map[string]string{"room": "general"})
		r.Conn = "alice-a"
		return mux.ServeEvent(ctx, r)
	}
	aErr := leave()
	if !hook.fired.Load() || bErr != nil {
		t.Fatalf("setup: B's join ran during A's leave: %v, B: %v", hook.fired.Load(), bErr)
	}
	// The client retries its leave, as handler_error's message suggests
	// nothing else to do.
	retryErr := leave()
	events := carolHeard()
	members, err := d.Members(ctx, "general")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(members, "alice") && !slices.Contains(events, "room_left alice") {
		t.Fatalf("alice is no member (%v), carol heard only %q: A's leave %v, its retry %v",
			members, events, event.WireError(aErr), event.WireError(retryErr))
	}
}
