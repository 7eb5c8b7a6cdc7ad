package dispatch_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// TestRooms: membership is a Redis set that Join, Leave and Members keep;
// joining twice is no change; ToRooms records in each member's stream,
// once per user however many of the rooms they are in.
func TestRooms(t *testing.T) {
	r := newRecorder(t, time.Minute)
	ctx := context.Background()
	for i, u := range []string{"carol", "alice", "bob"} {
		n, joined, err := r.d.Join(ctx, "general", u)
		if err != nil || !joined || n != i+1 {
			t.Fatalf("join %s: %d %v %v", u, n, joined, err)
		}
	}
	if n, joined, err := r.d.Join(ctx, "general", "bob"); err != nil || joined || n != 3 {
		t.Fatalf("second join: %d %v %v", n, joined, err)
	}
	if _, _, err := r.d.Join(ctx, "other", "bob"); err != nil {
		t.Fatal(err)
	}
	if got, err := r.d.Members(ctx, "general"); err != nil || !slices.Equal(got, []string{"alice", "bob", "carol"}) {
		t.Fatalf("members %v %v", got, err)
	}
	if got, _ := r.rdb.SMembers(ctx, proto.RoomMembersKey("general")).Result(); len(got) != 3 {
		t.Fatalf("the set %s holds %v", proto.RoomMembersKey("general"), got)
	}
	if err := r.d.ToRooms(ctx, []string{"general", "other"}, "room_message", map[string]string{"text": "hi"}); err != nil {
		t.Fatal(err)
	}
	got := r.next(t)
	if !slices.Equal(got.Users, []string{"alice", "bob", "carol"}) || len(got.Pos) != 3 {
		t.Fatalf("published %+v, want every member once, with positions", got)
	}
	for _, u := range got.Users {
		if e := r.entries(t, proto.UserStreamKey(u)); len(e) != 1 || !strings.Contains(e[0], "room_message") {
			t.Errorf("%s's stream %q, want the room_message", u, e)
		}
	}
	if n, left, err := r.d.Leave(ctx, "general", "alice"); err != nil || !left || n != 2 {
		t.Fatalf("leave: %d %v %v", n, left, err)
	}
	if n, left, err := r.d.Leave(ctx, "general", "alice"); err != nil || left || n != 2 {
		t.Fatalf("second leave: %d %v %v", n, left, err)
	}
	for _, u := range []string{"bob", "carol"} {
		if _, _, err := r.d.Leave(ctx, "general", u); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := r.rdb.Exists(ctx, proto.RoomMembersKey("general")).Result(); n != 0 {
		t.Fatal("an empty room's set is kept")
	}
	for _, bad := range []string{"", "a b", strings.Repeat("r", 65)} {
		if _, _, err := r.d.Join(ctx, bad, "bob"); event.WireError(err).Code != proto.CodeBadRequest {
			t.Errorf("Join(%q): %v, want bad_request", bad, err)
		}
	}
}

// TestUndoJoin: UndoJoin removes a member whose join still holds its
// token, with their place among their rooms, and no member that a join
// since found a member (answered as done), nor one that left and joined
// again; the hash of undoable joins goes with the room's last member.
func TestUndoJoin(t *testing.T) {
	r := newRecorder(t, time.Minute)
	ctx := context.Background()
	member := func() bool {
		return slices.Contains(r.rdb.SMembers(ctx, proto.RoomMembersKey("general")).Val(), "alice")
	}
	if _, joined, err := r.d.JoinUndoably(ctx, "general", "alice", "t1"); err != nil || !joined {
		t.Fatalf("join: %v %v", joined, err)
	}
	if kept, err := r.d.UndoJoin(ctx, "general", "alice", "t1"); err != nil || kept || member() {
		t.Fatalf("undo of the join: kept %v, %v; a member: %v", kept, err, member())
	}
	if n := r.rdb.Exists(ctx, proto.UserRoomsKey("alice"), proto.RoomJoinKey("general", "alice")).Val(); n != 0 {
		t.Fatalf("%d of alice's rooms and the room's joins are kept after the undo", n)
	}
	if _, _, err := r.d.JoinUndoably(ctx, "general", "alice", "t2"); err != nil {
		t.Fatal(err)
	}
	if _, joined, err := r.d.Join(ctx, "general", "alice"); err != nil || joined {
		t.Fatalf("second join: %v %v", joined, err)
	}
	if kept, err := r.d.UndoJoin(ctx, "general", "alice", "t2"); err != nil || !kept || !member() {
		t.Fatalf("undo after a join that found alice a member: kept %v, %v; a member: %v", kept, err, member())
	}
	if _, _, err := r.d.Leave(ctx, "general", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.d.JoinUndoably(ctx, "general", "alice", "t3"); err != nil {
		t.Fatal(err)
	}
	if kept, err := r.d.UndoJoin(ctx, "general", "alice", "t2"); err != nil || !kept || !member() {
		t.Fatalf("undo of a join that a leave and a new join ended: kept %v, %v; a member: %v", kept, err, member())
	}
	if _, _, err := r.d.Leave(ctx, "general", "alice"); err != nil {
		t.Fatal(err)
	}
	if kept, err := r.d.UndoJoin(ctx, "general", "alice", "t3"); err != nil || kept || member() {
		t.Fatalf("undo after a leave: kept %v, %v; a member: %v", kept, err, member())
	}
	if n := r.rdb.Exists(ctx, proto.RoomMembersKey("general"), proto.RoomJoinKey("general", "alice")).Val(); n != 0 {
		t.Fatalf("%d of the room's keys are kept with no member", n)
	}
}

// TestRoomFull: the 1,001st member is refused, atomically, however many
// join at once; a member joining again is not.
func TestRoomFull(t *testing.T) {
	r := newRecorder(t, time.Minute)
	ctx := context.Background()
	members := make([]any, proto.MaxRoomMembers-10)
	for i := range members {
		members[i] = fmt.Sprint("m", i)
	}
	if err := r.rdb.SAdd(ctx, proto.RoomMembersKey("big"), members...).Err(); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 30)
	for i := range 30 {
		go func() {
			_, _, err := r.d.Join(ctx, "big", fmt.Sprint("late", i))
			errs <- err
		}()
	}
	refused := 0
	for range 30 {
		if err := <-errs; err != nil {
			if w := event.WireError(err); w.Code != proto.CodeBadRequest || !strings.Contains(w.Message, "full") {
				t.Fatalf("join: %v", err)
			}
			refused++
		}
	}
	if n, _ := r.rdb.SCard(ctx, proto.RoomMembersKey("big")).Result(); n != proto.MaxRoomMembers || refused != 20 {
		t.Fatalf("%d members, %d refused; want %d and 20", n, refused, proto.MaxRoomMembers)
	}
	if _, joined, err := r.d.Join(ctx, "big", "m7"); err != nil || joined {
		t.Fatalf("a member joining a full room again: %v %v", joined, err)
	}
}

// TestBatchToRooms: inside a batch, a dispatch to rooms goes out with the
// batch's other dispatches, in one script call.
func TestBatchToRooms(t *testing.T) {
	r := newRecorder(t, time.Minute)
	ctx := context.Background()
	if _, _, err := r.d.Join(ctx, "general", "bob"); err != nil {
		t.Fatal(err)
	}
	err := r.d.Batch(ctx, func(d event.Dispatcher) error {
		if err := d.(event.Rooms).ToRooms(ctx, []string{"general"}, "first", nil); err != nil {
			return err
		}
		return d.ToUsers(ctx, []string{"alice"}, "second", nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := r.next(t), r.next(t); a.Event != "first" || !slices.Equal(a.Users, []string{"bob"}) || b.Event != "second" {
		t.Fatalf("published %+v then %+v", a, b)
	}
}

// TestManyRoomsAttack: one user joining ever new rooms made a Redis set
// for each, kept for good (a room lives as long as it has members): at
// the frame rate, millions of rooms a day from one account. A user is in
// at most proto.MaxRoomsPerUser rooms now; a join beyond is refused with
// nothing done, leaving one frees a place, and a join refused for a full
// room takes none.
func TestManyRoomsAttack(t *testing.T) {
	r := newRecorder(t, time.Minute)
	ctx := context.Background()
	for i := range proto.MaxRoomsPerUser {
		if _, _, err := r.d.Join(ctx, fmt.Sprint("r", i), "mallory"); err != nil {
			t.Fatalf("room %d: %v", i, err)
		}
	}
	_, _, err := r.d.Join(ctx, "one-more", "mallory")
	if w := event.WireError(err); w == nil || w.Code != proto.CodeBadRequest || !strings.Contains(w.Message, "rooms") {
		t.Fatalf("a join beyond %d rooms: %v, want bad_request", proto.MaxRoomsPerUser, err)
	}
	if n, _ := r.rdb.Exists(ctx, proto.RoomMembersKey("one-more")).Result(); n != 0 {
		t.Fatal("the refused join made the room")
	}
	if _, joined, err := r.d.Join(ctx, "r7", "mallory"); err != nil || joined {
		t.Fatalf("joining one of her rooms again: %v %v", joined, err)
	}
	if _, _, err := r.d.Leave(ctx, "r7", "mallory"); err != nil {
		t.Fatal(err)
	}
	// A full room refuses her, and the place stays hers.
	members := make([]any, proto.MaxRoomMembers)
	for i := range members {
		members[i] = fmt.Sprint("m", i)
	}
	if err := r.rdb.SAdd(ctx, proto.RoomMembersKey("big"), members...).Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.d.Join(ctx, "big", "mallory"); !strings.Contains(event.WireError(err).Message, "full") {
		t.Fatalf("joining a full room: %v", err)
	}
	if _, joined, err := r.d.Join(ctx, "one-more", "mallory"); err != nil || !joined {
		t.Fatalf("a join after leaving one: %v %v", joined, err)
	}
	// Another user is not affected.
	if _, _, err := r.d.Join(ctx, "one-more", "alice"); err != nil {
		t.Fatalf("alice: %v", err)
	}
}
