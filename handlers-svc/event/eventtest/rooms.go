package eventtest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// roomSet is the Recorder's room membership, in memory.
type roomSet struct {
	mu sync.Mutex
	m  map[string]map[string]struct{} // room -> members
}

func newRoomSet() *roomSet { return &roomSet{m: make(map[string]map[string]struct{})} }

// roomSet returns rec's rooms, made on first use for a zero Recorder.
func (rec *Recorder) roomSet() *roomSet {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.rooms == nil {
		rec.rooms = newRoomSet()
	}
	return rec.rooms
}

// check returns the error a room operation fails with: FailWith's, the
// context's, or a bad_request for an invalid room name.
func (rec *Recorder) check(ctx context.Context, room string) error {
	rec.mu.Lock()
	err := rec.err
	rec.mu.Unlock()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !proto.ValidRoomName(room) {
		return event.BadRequest("room %q must match %s", room, proto.RoomPattern)
	}
	return nil
}

// Join makes user a member of room, in memory.
func (rec *Recorder) Join(ctx context.Context, room, user string) (int, bool, error) {
	if err := rec.check(ctx, room); err != nil {
		return 0, false, err
	}
	if !dispatch.ValidUser(user) {
		return 0, false, event.BadRequest("a room member must be a user id of 1 to %d bytes of printable UTF-8", dispatch.MaxUserLen)
	}
	rs := rec.roomSet()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	members := rs.m[room]
	if _, ok := members[user]; ok {
		return len(members), false, nil
	}
	if len(members) >= proto.MaxRoomMembers {
		return len(members), false, event.BadRequest("room %s is full: it has %d members", room, proto.MaxRoomMembers)
	}
	if members == nil {
		members = make(map[string]struct{})
		rs.m[room] = members
	}
	members[user] = struct{}{}
	return len(members), true, nil
}

// Leave removes user from room, in memory.
func (rec *Recorder) Leave(ctx context.Context, room, user string) (int, bool, error) {
	if err := rec.check(ctx, room); err != nil {
		return 0, false, err
	}
	rs := rec.roomSet()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	members := rs.m[room]
	if _, ok := members[user]; !ok {
		return len(members), false, nil
	}
	delete(members, user)
	if len(members) == 0 {
		delete(rs.m, room)
	}
	return len(members), true, nil
}

// Members returns the members of room, sorted.
func (rec *Recorder) Members(ctx context.Context, room string) ([]string, error) {
	if err := rec.check(ctx, room); err != nil {
		return nil, err
	}
	rs := rec.roomSet()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return slices.Sorted(maps.Keys(rs.m[room])), nil
}

// ToRooms records one dispatch to the members of rooms, sorted, each once;
// nothing when the rooms have none.
func (rec *Recorder) ToRooms(ctx context.Context, rooms []string, name string, args any) error {
	return rec.toRooms(ctx, rooms, name, args, false)
}

func (rec *Recorder) toRooms(ctx context.Context, rooms []string, name string, args any, transient bool) error {
	if err := bounds(dispatch.Message{Event: name, Rooms: rooms}); err != nil {
		return err
	}
	seen := make(map[string]struct{})
	for _, room := range rooms {
		members, err := rec.Members(ctx, room)
		if err != nil {
			return fmt.Errorf("dispatch %s to room %s: %w", name, room, err)
		}
		for _, u := range members {
			seen[u] = struct{}{}
		}
	}
	return rec.toUsers(ctx, slices.Sorted(maps.Keys(seen)), name, args, transient)
}
