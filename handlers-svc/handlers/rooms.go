package handlers

import (
	"context"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/limit"
	"github.com/switchboard/switchboard/proto"
)

// Events of the rooms family (docs/protocol.md section 5).
const (
	EventJoinRoom    = "joinRoom"     // client -> handler
	EventLeaveRoom   = "leaveRoom"    // client -> handler
	EventSendToRoom  = "sendToRoom"   // client -> handler
	EventRoomJoined  = "room_joined"  // to every member, the joiner included
	EventRoomLeft    = "room_left"    // to the remaining members and the leaver
	EventRoomMessage = "room_message" // to every member, the sender included
)

// undoTimeout bounds the undoing of a join whose room_joined could not be
// dispatched.
const undoTimeout = time.Second

// RoomArgs is the args of joinRoom and leaveRoom: {"room":"<name>"}.
type RoomArgs struct {
	Room string `json:"room"`
}

// Validate checks the room name against proto.RoomPattern.
func (a *RoomArgs) Validate() error {
	if a.Room == "" {
		return event.BadRequest("args.room is required")
	}
	if !proto.ValidRoomName(a.Room) {
		return event.BadRequest("args.room must match %s", proto.RoomPattern)
	}
	return nil
}

// RoomTextArgs is the args of sendToRoom: {"room":"<name>","text":"..."}.
type RoomTextArgs struct {
	RoomArgs
	Text *string `json:"text"`
}

// Validate checks the room name and the text (1 to MaxTextLen characters).
func (a *RoomTextArgs) Validate() error {
	if err := a.RoomArgs.Validate(); err != nil {
		return err
	}
	if a.Text == nil {
		return event.BadRequest("args.text is required")
	}
	if n := utf8.RuneCountInString(*a.Text); n < 1 || n > MaxTextLen {
		return event.BadRequest("args.text must be 1 to %d characters", MaxTextLen)
	}
	return nil
}

// RoomResult is the result of joinRoom and leaveRoom: the room and its
// number of members after the request.
type RoomResult struct {
	Room    string `json:"room"`
	Members int    `json:"members"`
}

// RoomMember is the args of room_joined and room_left.
type RoomMember struct {
	Room string `json:"room"`
	User string `json:"user"`
}

// RoomMessage is the args of room_message.
type RoomMessage struct {
	Room  string `json:"room"`
	From  string `json:"from"`
	Text  string `json:"text"`
	TS    int64  `json:"ts"` // Unix epoch milliseconds
	MsgID string `json:"msg_id"`
}

// Rooms serves the room events. Membership is user-level and lives in the
// event.Rooms store, so it survives reconnects and worker restarts; every
// room event goes to the members' user streams and is recovered like any
// event to a user.
type Rooms struct {
	d     event.Dispatcher
	rooms event.Rooms
	lim   *limit.Sender // nil: no limit
}

// NewRooms returns a Rooms that keeps membership in rooms and dispatches
// through d.
func NewRooms(d event.Dispatcher, rooms event.Rooms) *Rooms { return &Rooms{d: d, rooms: rooms} }

// Limit bounds how many users one sender reaches, and the bytes it sends
// through one room, with lim (nil: no bound)
// and returns h.
func (h *Rooms) Limit(lim *limit.Sender) *Rooms {
	h.lim = lim
	return h
}

// Join serves joinRoom: it makes the sender a member and, when they were
// not one already, tells every member (the sender's devices included)
// with room_joined. A room with proto.MaxRoomMembers members refuses a new
// one with bad_request.
func (h *Rooms) Join(ctx context.Context, r *event.Request, in RoomArgs) (RoomResult, error) {
	// room_joined reaches every member: a join counts them as sendToRoom
	// does, or leaving and joining a big room again and again would
	// reach its members without bound. Counted before the join, so that
	// rate_limited leaves nothing to undo: an undo could remove a join
	// another device of the user made meanwhile, and was acked for.
	// (Read only when there is a bound to count against.) Not for a full
	// room: the join is refused (bad_request) and reaches no one.
	if h.lim.RecipientsBurst() > 0 {
		members, err := h.rooms.Members(ctx, in.Room)
		if err != nil {
			return RoomResult{}, err
		}
		if !slices.Contains(members, r.User) && len(members) < proto.MaxRoomMembers {
			if err := h.lim.Recipients(ctx, r.User, len(members)+1); err != nil {
				return RoomResult{}, err
			}
		}
	}
	undoable, _ := h.rooms.(undoableRooms)
	token := ""
	var n int
	var joined bool
	var err error
	if undoable != nil {
		token = newMsgID()
		n, joined, err = undoable.JoinUndoably(ctx, in.Room, r.User, token)
	} else {
		n, joined, err = h.rooms.Join(ctx, in.Room, r.User)
	}
	if err != nil {
		return RoomResult{}, err
	}
	if joined {
		err := h.rooms.ToRooms(ctx, []string{in.Room}, EventRoomJoined, RoomMember{Room: in.Room, User: r.User})
		if err != nil {
			return RoomResult{}, h.undoJoin(ctx, undoable, in.Room, r.User, token, err)
		}
		// A leave of another device of the user may have removed this
		// join before room_joined went out, and told room_left first
		// (leftAfter): the members' last word must be room_left.
		if now, err := h.rooms.Members(ctx, in.Room); err == nil && !slices.Contains(now, r.User) {
			if err := h.d.ToUsers(ctx, append(now, r.User), EventRoomLeft, RoomMember{Room: in.Room, User: r.User}); err != nil {
				return RoomResult{}, &event.Error{Code: proto.CodeHandlerError, Err: err,
					Message: "a leave of another of your devices undid the join, and room_left could not be sent"}
			}
			return RoomResult{Room: in.Room, Members: len(now)}, nil
		}
	}
	return RoomResult{Room: in.Room, Members: n}, nil
}

// undoableRooms is a store whose joins can be undone without removing a
// membership that another join, answered as done, found meanwhile
// (package dispatch's): a join of another device of the user that lands
// between a join and its undo is acked "already a member", and must
// stand.
type undoableRooms interface {
	JoinUndoably(ctx context.Context, room, user, token string) (members int, joined bool, err error)
	UndoJoin(ctx context.Context, room, user, token string) (kept bool, err error)
}

// undoJoin undoes the join of user to room whose room_joined failed with
// err, and returns the request's error. No member heard of it: undone,
// unavailable means nothing happened and a retry is safe; even when the
// request's time is up, but not for longer than undoTimeout. A join of
// another device that found the user a member since was answered as
// done: the membership stands, and so the client is not told it was
// undone. (A store that is not undoableRooms undoes it whatever came
// between.)
func (h *Rooms) undoJoin(ctx context.Context, undoable undoableRooms, room, user, token string, err error) error {
	undo, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	if undoable == nil {
		_, _, _ = h.rooms.Leave(undo, room, user)
		return err
	}
	if kept, uerr := undoable.UndoJoin(undo, room, user, token); uerr != nil || !kept {
		return err
	}
	return &event.Error{Code: proto.CodeHandlerError, Err: err,
		Message: "another of your devices joined the room meanwhile, so you are a member, but room_joined could not be sent to its members"}
}

// Leave serves leaveRoom: when the sender is a member, it tells every
// member, the sender included, with room_left, then removes the sender.
// Leaving a room one is not in is not an error.
func (h *Rooms) Leave(ctx context.Context, r *event.Request, in RoomArgs) (RoomResult, error) {
	members, err := h.rooms.Members(ctx, in.Room)
	if err != nil {
		return RoomResult{}, err
	}
	if !slices.Contains(members, r.User) {
		// No one to tell; the store still forgets the room among the
		// user's rooms, where a join that failed half way may have left it.
		n, left, err := h.rooms.Leave(ctx, in.Room, r.User)
		if err != nil {
			return RoomResult{}, err
		}
		if left {
			// A join of another device landed since the read, told
			// the members: they are told of the leave too.
			return h.leftAfter(ctx, r, in.Room, n)
		}
		return RoomResult{Room: in.Room, Members: n}, nil
	}
	// The members now are the remaining ones and the leaver: told first,
	// so a failure (rate_limited included: room_left reaches them all, as
	// room_joined did) leaves everything as it was. At most a burst is
	// counted: a member of a room bigger than the burst must be able to
	// leave it.
	if err := h.lim.Recipients(ctx, r.User, min(len(members), h.lim.RecipientsBurst())); err != nil {
		return RoomResult{}, err
	}
	if err := h.d.ToUsers(ctx, members, EventRoomLeft, RoomMember{Room: in.Room, User: r.User}); err != nil {
		return RoomResult{}, err
	}
	n, _, err := h.rooms.Leave(ctx, in.Room, r.User)
	if err != nil {
		// Not the store's unavailable: that says nothing was sent, and
		// room_left was.
		return RoomResult{}, &event.Error{Code: proto.CodeHandlerError, Err: err,
			Message: "room_left was sent, but the room still counts you as a member: send leaveRoom again"}
	}
	return RoomResult{Room: in.Room, Members: n}, nil
}

// leftAfter tells the members of room and the user of r, who left it
// with n members remaining, with room_left, after the fact. Not counted
// against the sender's bound: the leave is done, and a refusal would
// leave it untold for good.
func (h *Rooms) leftAfter(ctx context.Context, r *event.Request, room string, n int) (RoomResult, error) {
	members, err := h.rooms.Members(ctx, room)
	if err == nil {
		err = h.d.ToUsers(ctx, append(members, r.User), EventRoomLeft, RoomMember{Room: room, User: r.User})
	}
	if err != nil {
		return RoomResult{}, &event.Error{Code: proto.CodeHandlerError, Err: err,
			Message: "you have left the room, but room_left could not be sent to its members"}
	}
	return RoomResult{Room: room, Members: n}, nil
}

// Send serves sendToRoom: a member's text goes as room_message to every
// device of every member, the sender's included, and the sender gets the
// message's id and time. A user who is not a member gets forbidden.
func (h *Rooms) Send(ctx context.Context, r *event.Request, in RoomTextArgs) (Sent, error) {
	members, err := h.rooms.Members(ctx, in.Room)
	if err != nil {
		return Sent{}, err
	}
	if !slices.Contains(members, r.User) {
		return Sent{}, event.Forbidden("you are not a member of room %s", in.Room)
	}
	if err := h.lim.Recipients(ctx, r.User, len(members)); err != nil {
		return Sent{}, err
	}
	// Each member gets the text: bounded in bytes as sendMessage's is to
	// one recipient, or a room of two would carry what sendMessage
	// refuses.
	if err := h.lim.ToRoom(ctx, r.User, in.Room, len(proto.AppendString(nil, *in.Text))); err != nil {
		return Sent{}, err
	}
	msg := RoomMessage{Room: in.Room, From: r.User, Text: *in.Text, TS: time.Now().UnixMilli(), MsgID: newMsgID()}
	if err := h.d.ToUsers(ctx, members, EventRoomMessage, msg); err != nil {
		return Sent{}, err
	}
	return Sent{MsgID: msg.MsgID, TS: msg.TS}, nil
}
