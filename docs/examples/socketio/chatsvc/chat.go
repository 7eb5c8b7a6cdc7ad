package main

import (
	"context"
	"slices"
	"time"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
)

// Chat is the app's own family of handlers.
type Chat struct {
	d      event.Dispatcher
	rooms  event.Rooms
	online event.Presence
}

// Register registers the app's events and its connect and disconnect
// hooks on mux.
func (c *Chat) Register(mux *event.Mux) {
	mux.Handle("roomSay", event.Typed(c.RoomSay))
	mux.Handle("members", event.Typed(c.Members))
	mux.Handle("typing", event.Typed(c.Typing))
	mux.Handle("read", event.Typed(c.Read))
	mux.Handle("whoIsOnline", event.Typed(c.WhoIsOnline))
	mux.OnConnect(c.Connected)
	mux.OnDisconnect(c.Disconnected)
}

// RoomSay is socket.to(room).emit("room_say", ...): every device of every
// member gets it but the socket that sent it, the sender's other devices
// included. It is recorded for every member, so a device that was away
// gets it when it resumes; the sending socket does not, when it resumes
// naming its earlier connections (prev), as client.js does. Its args are
// sendToRoom's, whose Validate bounds the text as sendMessage's (1 to
// handlers.MaxTextLen characters): each member's stream records it.
func (c *Chat) RoomSay(ctx context.Context, r *event.Request, in handlers.RoomTextArgs) (map[string]any, error) {
	members, err := c.member(ctx, in.Room, r.User)
	if err != nil {
		return nil, err
	}
	msg := map[string]any{"room": in.Room, "from": r.User, "text": *in.Text, "ts": time.Now().UnixMilli()}
	return map[string]any{"members": len(members)}, event.ExceptSender(c.d, r).ToUsers(ctx, members, "room_say", msg)
}

// Members is io.in(room).fetchSockets(), at the level of users.
func (c *Chat) Members(ctx context.Context, r *event.Request, in handlers.RoomArgs) ([]string, error) {
	return c.member(ctx, in.Room, r.User)
}

func (c *Chat) member(ctx context.Context, room, user string) ([]string, error) {
	members, err := c.rooms.Members(ctx, room)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		if m == user {
			return members, nil
		}
	}
	return nil, event.Forbidden("you are not a member of room %s", room)
}

// TypingArgs names who the typing is shown to: a user or a room.
type TypingArgs struct {
	To   string `json:"to,omitempty"`
	Room string `json:"room,omitempty"`
}

// Typing tells the peer (or the room's other members: not the typist,
// on any of her devices) that r.User types, transient
// (socket.volatile): the sockets connected now get it, and a device
// that resumes never gets it replayed. It carries its time, so that a
// client can still drop one that comes late.
func (c *Chat) Typing(ctx context.Context, r *event.Request, in TypingArgs) (event.NoResult, error) {
	args := map[string]any{"from": r.User, "room": in.Room, "ts": time.Now().UnixMilli()}
	volatile := event.Transient(c.d)
	switch {
	case in.Room != "":
		members, err := c.member(ctx, in.Room, r.User)
		if err != nil {
			return event.NoResult{}, err
		}
		others := slices.DeleteFunc(slices.Clone(members), func(m string) bool { return m == r.User })
		return event.NoResult{}, volatile.ToUsers(ctx, others, "typing", args)
	case dispatch.ValidUser(in.To):
		return event.NoResult{}, volatile.ToUsers(ctx, []string{in.To}, "typing", args)
	}
	return event.NoResult{}, event.BadRequest("args.to or args.room is required")
}

// ReadArgs is a read receipt.
type ReadArgs struct {
	To    string `json:"to"`
	MsgID string `json:"msg_id"`
}

// Validate checks what JSON cannot; event.Typed calls it. msg_id is
// bounded as handlers.md's react bounds one (sendMessage's are 32 hex
// digits): it is recorded in the stream of the user it goes to.
func (a *ReadArgs) Validate() error {
	switch {
	case !dispatch.ValidUser(a.To):
		return event.BadRequest("args.to must be a user id")
	case a.MsgID == "" || len(a.MsgID) > 64:
		return event.BadRequest("args.msg_id must be 1 to 64 bytes")
	}
	return nil
}

// Read tells the sender of a message, on all its devices, that r.User read it.
func (c *Chat) Read(ctx context.Context, r *event.Request, in ReadArgs) (event.NoResult, error) {
	return event.NoResult{}, c.d.ToUsers(ctx, []string{in.To}, "read_receipt", map[string]any{"by": r.User, "msg_id": in.MsgID})
}

// Connected is io.on("connection") for presence: the gateway counted the
// user's sockets in the step that wrote this one's lease (conn.Sockets),
// so a count of 1 is the user's first socket, told to one connect only,
// and the others hear that the user came online. A count above 1 is
// another device of a user already online: nothing to say. The
// broadcast carries the connect's time (at), by which a client keeps the
// latest state of each user: hooks may run out of order.
func (c *Chat) Connected(ctx context.Context, conn event.Conn) error {
	return c.announce(ctx, conn, 1, true)
}

// Disconnected is socket.on("disconnect") for presence: a count of 0,
// taken as the gateway removed the socket's lease, is the user's last
// socket gone.
func (c *Chat) Disconnected(ctx context.Context, conn event.Conn) error {
	return c.announce(ctx, conn, 0, false)
}

// announce broadcasts presence {user, online, at} when conn's user has
// sockets open. When the gateway could not count (Redis slow: Sockets
// is -1) it asks the leases, which two hooks may find alike: so it says
// the state, not a toggle, and saying it twice is harmless.
func (c *Chat) announce(ctx context.Context, conn event.Conn, sockets int, online bool) error {
	n := conn.Sockets
	if n < 0 {
		counts, err := c.online.Count(ctx, conn.User)
		if err != nil {
			return err
		}
		n = counts[conn.User]
	}
	if n != sockets {
		return nil
	}
	return c.d.Broadcast(ctx, "presence", map[string]any{"user": conn.User, "online": online, "at": conn.At.UnixMilli()})
}

// maxWho bounds the users one whoIsOnline asks about.
const maxWho = 100

// WhoIsOnline answers which of the users asked about have a socket open
// now, on any worker: what a client asks when it opens, before the
// presence broadcasts keep it current.
func (c *Chat) WhoIsOnline(ctx context.Context, _ *event.Request, in struct {
	Users []string `json:"users"`
}) (map[string]bool, error) {
	if len(in.Users) > maxWho || slices.ContainsFunc(in.Users, func(u string) bool { return !dispatch.ValidUser(u) }) {
		return nil, event.BadRequest("args.users must be at most %d user ids", maxWho)
	}
	n, err := c.online.Count(ctx, in.Users...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(in.Users))
	for _, u := range in.Users {
		out[u] = n[u] > 0
	}
	return out, nil
}
