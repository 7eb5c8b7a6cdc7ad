package event

import "context"

// Rooms is the room side of the dispatch path (docs/protocol.md section 5):
// user-level groups whose membership outlives sockets, so a member gets a
// room's events on every device, after reconnects and worker restarts,
// and recovers them like any event to a user. The Redis dispatcher
// (package dispatch) and eventtest.Recorder implement it.
//
// A room name matches proto.RoomPattern; an invalid one is a bad_request
// *Error. A failure to reach the store is an *Error with code unavailable.
type Rooms interface {
	// Join makes user a member of room. It reports the number of members
	// after it and whether user was not a member before; joining a room
	// twice is not an error. A room that has proto.MaxRoomMembers members
	// refuses a new one with a bad_request *Error.
	Join(ctx context.Context, room, user string) (members int, joined bool, err error)
	// Leave removes user from room. It reports the number of members
	// after it and whether user was a member.
	Leave(ctx context.Context, room, user string) (members int, left bool, err error)
	// Members returns the members of room, sorted; none for a room no one
	// is in.
	Members(ctx context.Context, room string) ([]string, error)
	// ToRooms delivers the event to every device of every member of each
	// room, once per user however many of the rooms they are in. It is
	// recorded in each member's stream, as a dispatch to users is.
	ToRooms(ctx context.Context, rooms []string, event string, args any) error
}
