package dispatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

var _ event.Rooms = (*Dispatcher)(nil)

// joinScript adds a member unless the room is full, atomically.
// KEYS[1] the room's members set; KEYS[2] the user's undoable join
// (proto.RoomJoinKey); ARGV[1] the user; ARGV[2] the most members;
// ARGV[3] the join's token, kept while the join may be undone ("" none);
// ARGV[4] how long it is kept (ms). A join that finds the user a member
// is answered as done, so the membership is no longer any join's to
// undo. Returns {members after, 1 joined | 0 already a member | -1 full}.
var joinScript = redis.NewScript(`
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[2])
  return {redis.call('SCARD', KEYS[1]), 0}
end
local n = redis.call('SCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then
  return {n, -1}
end
redis.call('SADD', KEYS[1], ARGV[1])
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
end
return {n + 1, 1}
`)

// leaveScript removes a member. KEYS[1] the room's members set; KEYS[2]
// the user's undoable join; ARGV[1] the user. Returns {members after, 1
// left | 0 was not a member}.
var leaveScript = redis.NewScript(`
local r = redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return {redis.call('SCARD', KEYS[1]), r}
`)

// undoJoinScript removes a member whose join still holds its token.
// KEYS and ARGV[1] as leaveScript's; ARGV[2] the join's token. Returns
// 1 undone, 0 not a member, -1 a member another join was answered for
// (or whose token outlived joinUndoTTL: kept, the safe side).
var undoJoinScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return redis.call('SISMEMBER', KEYS[1], ARGV[1]) * -1
end
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
`)

// joinUndoTTL is how long a join's token is kept for its undo, beyond
// the deadline of the request that made it when it has one: well past
// the room_joined dispatch the undo follows, and short enough that the
// tokens of joins that went well, and those an older release's leave
// left behind in a rolling deploy, go by themselves.
const joinUndoTTL = time.Minute

// Join makes user a member of room (a Redis set that lives as long as the
// room has members). It reports the members after it and whether user was
// not one before. A room of proto.MaxRoomMembers members refuses a new one
// with a bad_request *event.Error, and so does a user in
// proto.MaxRoomsPerUser rooms already: each room is a set kept for as long
// as it has members, which one user joining ever new rooms would make
// without end.
//
// The user's rooms (proto.UserRoomsKey) lie in the user's partition, the
// room's members in the room's own slot, so they are two scripts: the
// user's place is taken first and given back when the room refuses them
// or cannot be reached.
func (d *Dispatcher) Join(ctx context.Context, room, user string) (int, bool, error) {
	return d.JoinUndoably(ctx, room, user, "")
}

// JoinUndoably is Join that keeps token (when not "") with a new
// membership, so that UndoJoin with the same token can undo it until a
// join that finds user a member (answered as done), or a leave, ends it.
func (d *Dispatcher) JoinUndoably(ctx context.Context, room, user, token string) (int, bool, error) {
	if err := checkRoom(room, user); err != nil {
		return 0, false, err
	}
	placed, err := userRoomScript.Run(ctx, d.pub.rdb, []string{proto.UserRoomsKey(user)}, room, proto.MaxRoomsPerUser).Int64()
	if err != nil {
		return 0, false, d.storeError(ctx, "join room "+room, err)
	}
	if placed < 0 {
		return 0, false, event.BadRequest("you are in %d rooms, the most there may be: leave one first", proto.MaxRoomsPerUser)
	}
	// Kept a minute, or past the deadline of the request that may undo it
	// (its room_joined fails at the latest then), when that is later.
	ttl := joinUndoTTL
	if dl, ok := ctx.Deadline(); ok {
		ttl = max(ttl, time.Until(dl)+joinUndoTTL)
	}
	res, err := joinScript.Run(ctx, d.pub.rdb, roomKeys(room, user), user, proto.MaxRoomMembers, token, ttl.Milliseconds()).Int64Slice()
	if err == nil && res[1] == 1 {
		// A leave of the room by the same user that ran between the two
		// scripts gave the place back (Leave gives it back also when user
		// is no member yet): a member always holds one, so it is taken
		// again, past the bound if it must (by the few joins at once).
		// The user is a member either way: a place not taken only
		// loosens the bound until the user leaves, where failing the
		// join would tell the client it is not in a room it is in.
		_ = d.pub.rdb.SAdd(ctx, proto.UserRoomsKey(user), room).Err()
	}
	if err == nil && res[1] >= 0 {
		d.roomsOK()
		return int(res[0]), res[1] == 1, nil
	}
	if _, answered := errors.AsType[redis.Error](err); placed == 1 && (err == nil || answered || unsent(err)) {
		// Surely not a member (full, refused or never sent): the place
		// goes back (a failure here leaves it taken until the user
		// leaves the room, as does a join that may have run).
		undo, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = d.pub.rdb.SRem(undo, proto.UserRoomsKey(user), room).Err()
		cancel()
	}
	if err != nil {
		return 0, false, d.storeError(ctx, "join room "+room, err)
	}
	d.roomsOK()
	return int(res[0]), false, event.BadRequest("room %s is full: it has %d members", room, proto.MaxRoomMembers)
}

// userRoomScript adds a room to a user's rooms unless they are in the most
// there may be, atomically. KEYS[1] the user's rooms; ARGV[1] the room;
// ARGV[2] the most rooms. Returns 1 added, 0 there already, -1 too many.
var userRoomScript = redis.NewScript(`
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return 0
end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return -1
end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
`)

// Leave removes user from room. It reports the members after it and
// whether user was one.
func (d *Dispatcher) Leave(ctx context.Context, room, user string) (int, bool, error) {
	// Any non-empty id may leave: one that an earlier release let join.
	if err := checkRoomName(room); err != nil {
		return 0, false, err
	}
	if user == "" {
		return 0, false, event.BadRequest("a room member must be a non-empty user id")
	}
	res, err := leaveScript.Run(ctx, d.pub.rdb, roomKeys(room, user), user).Int64Slice()
	if err == nil {
		// Also when user was no member: a place a failed join left taken
		// is given back by leaving the room.
		err = d.pub.rdb.SRem(ctx, proto.UserRoomsKey(user), room).Err()
	}
	if err != nil {
		return 0, false, d.storeError(ctx, "leave room "+room, err)
	}
	d.roomsOK()
	return int(res[0]), res[1] == 1, nil
}

// UndoJoin removes user from room if the membership is still that of
// the join JoinUndoably made with token: not when a join since found user
// a member and was answered as done, nor when a leave (and maybe a new
// join) came since. It reports whether user is a member after it, kept
// for another join.
func (d *Dispatcher) UndoJoin(ctx context.Context, room, user, token string) (kept bool, err error) {
	if err := checkRoom(room, user); err != nil {
		return false, err
	}
	r, err := undoJoinScript.Run(ctx, d.pub.rdb, roomKeys(room, user), user, token).Int64()
	if err == nil && r == 1 {
		// As Leave does: the user's place among their rooms goes back.
		err = d.pub.rdb.SRem(ctx, proto.UserRoomsKey(user), room).Err()
	}
	if err != nil {
		return false, d.storeError(ctx, "undo join of room "+room, err)
	}
	d.roomsOK()
	return r < 0, nil
}

// roomKeys returns the keys of room's scripts for user: its members and
// user's undoable join, in one slot.
func roomKeys(room, user string) []string {
	return []string{proto.RoomMembersKey(room), proto.RoomJoinKey(room, user)}
}

// Members returns the members of room, sorted.
func (d *Dispatcher) Members(ctx context.Context, room string) ([]string, error) {
	if err := checkRoomName(room); err != nil {
		return nil, err
	}
	members, err := d.pub.rdb.SMembers(ctx, proto.RoomMembersKey(room)).Result()
	if err != nil {
		return nil, d.storeError(ctx, "members of room "+room, err)
	}
	d.roomsOK()
	slices.Sort(members)
	return members, nil
}

// ToRooms records and publishes the event for every member of each of
// rooms, once per user: in their user streams, as ToUsers does. rooms are
// at most MaxRooms (as a Message's), else a bad_request *event.Error.
func (d *Dispatcher) ToRooms(ctx context.Context, rooms []string, name string, args any) error {
	if err := checkRooms(name, rooms); err != nil {
		return err
	}
	users, err := d.roomMembers(ctx, rooms)
	if err != nil {
		return err
	}
	return d.toUsers(ctx, users, name, args, d.record, nil)
}

// roomMembers returns the members of rooms, sorted, each once, read in
// one round trip.
func (d *Dispatcher) roomMembers(ctx context.Context, rooms []string) ([]string, error) {
	for _, room := range rooms {
		if err := checkRoomName(room); err != nil {
			return nil, err
		}
	}
	if len(rooms) == 1 {
		users, err := d.Members(ctx, rooms[0])
		if err != nil && ctx.Err() != nil {
			return nil, notSent(ctx.Err()) // a read: nothing was published
		}
		return users, err
	}
	cmds := make([]*redis.StringSliceCmd, len(rooms))
	_, err := d.pub.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, room := range rooms {
			cmds[i] = p.SMembers(ctx, proto.RoomMembersKey(room))
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, notSent(ctx.Err()) // a read: nothing was published
		}
		return nil, d.storeError(ctx, "members of rooms", err)
	}
	d.roomsOK()
	var users []string
	for _, c := range cmds {
		users = append(users, c.Val()...)
	}
	slices.Sort(users)
	return slices.Compact(users), nil
}

// checkRoom refuses an invalid room name and a user id no token may carry
// (ValidUser) with a bad_request *event.Error: such a member never
// connects, and every dispatch to the room would record its events.
func checkRoom(room, user string) error {
	if err := checkRoomName(room); err != nil {
		return err
	}
	if !ValidUser(user) {
		return event.BadRequest("a room member must be a user id of 1 to %d bytes of printable UTF-8", MaxUserLen)
	}
	return nil
}

// checkRoomName refuses an invalid room name with a bad_request
// *event.Error.
func checkRoomName(room string) error {
	if !proto.ValidRoomName(room) {
		return event.BadRequest("room %q must match %s", room, proto.RoomPattern)
	}
	return nil
}

// storeError is a failed room command's error: the context's when it
// ended, else unavailable, wrapping the cause; an outage is logged once,
// as a failed publish's is.
func (d *Dispatcher) storeError(ctx context.Context, what string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", what, ctxErr)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	e := &event.Error{Code: proto.CodeUnavailable, Message: "rooms unavailable", Err: fmt.Errorf("%s: %w", what, err)}
	d.unreachable(d.roomsBit(), e)
	return e
}

// roomsOK records a room command that reached Redis: on a Redis Cluster,
// where the room keys are apart from the partitions, it ends their
// outage (on one Redis the next publish does).
func (d *Dispatcher) roomsOK() {
	if d.cluster {
		d.reached(clusterRoomsBit)
	}
}

// roomsBit is the bit of Dispatcher.down for the room keys.
func (d *Dispatcher) roomsBit() uint32 {
	if !d.cluster {
		return 1
	}
	return clusterRoomsBit
}

// Rooms of a batch: membership is read and changed at once, not with the
// batch; ToRooms reads the members now and adds the dispatch to the batch.

func (b *batch) Join(ctx context.Context, room, user string) (int, bool, error) {
	return b.d.Join(ctx, room, user)
}

func (b *batch) Leave(ctx context.Context, room, user string) (int, bool, error) {
	return b.d.Leave(ctx, room, user)
}

func (b *batch) Members(ctx context.Context, room string) ([]string, error) {
	return b.d.Members(ctx, room)
}

func (b *batch) ToRooms(ctx context.Context, rooms []string, name string, args any) error {
	if err := checkRooms(name, rooms); err != nil {
		return err
	}
	users, err := b.d.roomMembers(ctx, rooms)
	if err != nil {
		return err
	}
	return b.toUsers(ctx, users, name, args)
}
