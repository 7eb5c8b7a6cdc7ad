package main

import (
	"context"
	"errors"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// Chat is the app's own family of handlers.
type Chat struct {
	d     event.Dispatcher
	rooms event.Rooms
	rdb   redis.UniversalClient
	log   *zap.Logger
}

// Register registers the app's events on mux.
func (c *Chat) Register(mux *event.Mux) {
	mux.Handle("roomSay", event.Typed(c.RoomSay))
	mux.Handle("members", event.Typed(c.Members))
	mux.Handle("typing", event.Typed(c.Typing))
	mux.Handle("read", event.Typed(c.Read))
	mux.Handle("presencePing", event.Typed(c.PresencePing))
	mux.Handle("whoIsOnline", event.Typed(c.WhoIsOnline))
}

// RoomArgs names a room.
type RoomArgs struct {
	Room string `json:"room"`
	Text string `json:"text,omitempty"`
	CID  string `json:"cid,omitempty"` // the sender's own id of a room message
}

// Validate checks the room name.
func (a *RoomArgs) Validate() error {
	if !proto.ValidRoomName(a.Room) {
		return event.BadRequest("args.room must match %s", proto.RoomPattern)
	}
	return nil
}

// RoomSay is socket.to(room).emit("room_say", ...): every device of every
// member gets it, with the id the sender gave it (cid), by which the
// sending client (and only it) drops its own copy.
func (c *Chat) RoomSay(ctx context.Context, r *event.Request, in RoomArgs) (map[string]any, error) {
	if in.Text == "" || len(in.CID) > 64 {
		return nil, event.BadRequest("args.text is required, args.cid at most 64 bytes")
	}
	members, err := c.member(ctx, in.Room, r.User)
	if err != nil {
		return nil, err
	}
	msg := map[string]any{"room": in.Room, "from": r.User, "cid": in.CID, "text": in.Text, "ts": time.Now().UnixMilli()}
	return map[string]any{"members": len(members)}, c.d.ToUsers(ctx, members, "room_say", msg)
}

// Members is io.in(room).fetchSockets(), at the level of users.
func (c *Chat) Members(ctx context.Context, r *event.Request, in RoomArgs) ([]string, error) {
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

// Typing tells the peer (or the room) that r.User types, transient
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
		return event.NoResult{}, volatile.ToUsers(ctx, members, "typing", args)
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

// Read tells the sender of a message, on all its devices, that r.User read it.
func (c *Chat) Read(ctx context.Context, r *event.Request, in ReadArgs) (event.NoResult, error) {
	if !dispatch.ValidUser(in.To) || in.MsgID == "" {
		return event.NoResult{}, event.BadRequest("args.to and args.msg_id are required")
	}
	return event.NoResult{}, c.d.ToUsers(ctx, []string{in.To}, "read_receipt", map[string]any{"by": r.User, "msg_id": in.MsgID})
}

// presenceKey is a sorted set of online users, scored by their last ping.
const presenceKey = "chat:online"

// presenceTTL is how long a user stays online after its last ping
// (PRESENCE_TTL, 30 s by default; clients ping at a third of it).
func presenceTTL() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("PRESENCE_TTL")); err == nil && d > 0 {
		return d
	}
	return 30 * time.Second
}

// PresencePing marks r.User online; the first ping after being offline
// broadcasts presence {user, online: true}.
func (c *Chat) PresencePing(ctx context.Context, r *event.Request, _ event.NoResult) (event.NoResult, error) {
	added, err := c.rdb.ZAdd(ctx, presenceKey, redis.Z{Score: float64(time.Now().UnixMilli()), Member: r.User}).Result()
	if err != nil {
		return event.NoResult{}, event.Unavailable("presence unavailable")
	}
	if added == 1 {
		return event.NoResult{}, c.d.Broadcast(ctx, "presence", map[string]any{"user": r.User, "online": true})
	}
	return event.NoResult{}, nil
}

// WhoIsOnline answers which of the users asked about are online.
func (c *Chat) WhoIsOnline(ctx context.Context, _ *event.Request, in struct {
	Users []string `json:"users"`
}) (map[string]bool, error) {
	out := make(map[string]bool, len(in.Users))
	if len(in.Users) == 0 {
		return out, nil
	}
	scores, err := c.rdb.ZMScore(ctx, presenceKey, in.Users...).Result()
	if err != nil {
		return nil, event.Unavailable("presence unavailable")
	}
	for i, u := range in.Users {
		out[u] = scores[i] != 0
	}
	return out, nil
}

// sweepPresence broadcasts presence {online: false} for users whose last
// ping is older than presenceTTL; ZREM makes one instance the announcer.
func (c *Chat) sweepPresence(ctx context.Context) {
	ttl := presenceTTL()
	t := time.NewTicker(ttl / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cut := strconv.FormatInt(time.Now().Add(-ttl).UnixMilli(), 10)
		stale, err := c.rdb.ZRangeByScore(ctx, presenceKey, &redis.ZRangeBy{Min: "-inf", Max: cut}).Result()
		if err != nil {
			continue
		}
		for _, u := range stale {
			n, err := c.rdb.ZRem(ctx, presenceKey, u).Result()
			if err != nil || n == 0 {
				continue
			}
			if err := c.d.Broadcast(ctx, "presence", map[string]any{"user": u, "online": false}); err != nil && !errors.Is(err, context.Canceled) {
				c.log.Warn("presence offline", zap.String("user", u), zap.Error(err))
			}
		}
	}
}
