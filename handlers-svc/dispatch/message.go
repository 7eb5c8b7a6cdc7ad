package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/late"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// maxUnitUsers is the most users one published message names: a dispatch
// to more (a room's members, say) is published as several messages, all
// in one script call, so no single message grows past ~50 KB of user ids
// and positions.
const maxUnitUsers = 128

// Bounds of a Message, so that one dispatch cannot hold Redis for long:
// its script call writes one stream entry per user.
const (
	// MaxUserLen is the most bytes of a user id a Message may name: the
	// gateway takes no longer one from a token.
	MaxUserLen = proto.MaxUserLen
	// MaxConnLen is the most bytes of a connection id a Message may name:
	// the gateway's ids (connected.args.conn) are under 30 bytes of
	// printable ASCII, and a dispatch to connections is published whole
	// to every gateway worker.
	MaxConnLen = 64
	// MaxUsers and MaxConns are the most users and connections a Message
	// names.
	MaxUsers = 1000
	MaxConns = 1000
	// MaxRooms is the most rooms a Message names (each of at most
	// proto.MaxRoomMembers members).
	MaxRooms = 10
)

// Message is one dispatch as another backend makes it (docs/protocol.md
// section 7): Event with Args to every device of each of Users and of
// every member of each of Rooms, to each of Conns, or, with Broadcast, to
// every socket (the other targets then add nothing). A socket named both
// in Conns and through its user gets the event once, through its user,
// however many messages the dispatch is published as. Args is JSON of at
// most proto.MaxDispatchArgs bytes (64 KiB): send a large document as a
// link or an id the client fetches. It is the body of POST /v1/dispatch.
//
// Transient publishes the message without recording it (docs/protocol.md
// section 6): the sockets connected when it is sent get it, without a
// position; a device that is away, or resumes, never does, and Dispatch
// returns no positions. It is for events that are stale as soon as they
// are missed (typing indicators, cursors, presence pings: Socket.IO's
// "volatile"), which would otherwise cost a stream entry per user and be
// replayed on resume. A dispatch to connections only is transient
// whatever it says, and with recording off (NoHistory) every dispatch is.
//
// ExceptConns names connections that get nothing of the message though
// they are among its targets (docs/protocol.md sections 4 and 7, an
// extension): "everyone but the sender", as Socket.IO's
// socket.broadcast.emit and socket.to(room).emit. Its other targets get
// it as usual, and a recorded message is recorded for every target user,
// with the list, so that the other devices of those users get it on
// resume while a resume that names one of those connections as its
// previous one (docs/protocol.md section 6) does not. Connection ids are
// checked as Conns' are, at most MaxConns of them.
//
// IdempotencyKey, if not "", makes Dispatch deliver the message at most
// once per key: see Dispatch. It is the dispatch API's Idempotency-Key
// header, not part of the body.
type Message struct {
	Event          string          `json:"event"`
	Args           json.RawMessage `json:"args,omitempty"`
	Users          []string        `json:"users,omitempty"`
	Conns          []string        `json:"conns,omitempty"`
	Rooms          []string        `json:"rooms,omitempty"`
	Broadcast      bool            `json:"broadcast,omitempty"`
	Transient      bool            `json:"transient,omitempty"`
	ExceptConns    []string        `json:"except_conns,omitempty"`
	IdempotencyKey string          `json:"-"`
}

// Positions are where a dispatch was recorded (docs/protocol.md section 6):
// the position of its entry in each target user's stream, and in the
// broadcast stream for a broadcast. With recovery off, for a Transient
// message, or for connections only, there are none. Replayed says they are those of an earlier
// dispatch with the same idempotency key (Message.IdempotencyKey), and
// nothing was dispatched this time.
type Positions struct {
	Users     map[string]string `json:"pos"`
	Broadcast string            `json:"bpos,omitempty"`
	Replayed  bool              `json:"-"`
}

// Check reports what is wrong with m as a bad_request *event.Error naming
// the field, or nil: a valid event name that is not one of the gateway's
// own, args that are JSON of at most proto.MaxDispatchArgs bytes, user
// ids a token may carry (1 to MaxUserLen
// bytes of printable UTF-8), connection ids of 1 to MaxConnLen bytes of
// printable ASCII, valid room names, a target, and no
// more targets than MaxUsers, MaxConns and MaxRooms.
func (m *Message) Check() error {
	switch {
	case !proto.ValidEventName(m.Event):
		return event.BadRequest("event must match %s", proto.EventPattern)
	case proto.Reserved(m.Event):
		return event.BadRequest("event %s is the gateway's own", m.Event)
	case len(m.Args) > proto.MaxDispatchArgs:
		return event.BadRequest("args is %d bytes, more than the %d allowed", len(m.Args), proto.MaxDispatchArgs)
	case len(m.Args) > 0 && !proto.ValidJSON(m.Args):
		return event.BadRequest("args is not valid JSON")
	case len(m.Args) > 0 && event.CheckArgs(m.Args) != nil:
		return event.CheckArgs(m.Args)
	case len(m.Users) == 0 && len(m.Conns) == 0 && len(m.Rooms) == 0 && !m.Broadcast:
		return event.BadRequest("no target: give users, conns, rooms or broadcast")
	case len(m.Users) > MaxUsers:
		return event.BadRequest("users names %d users, more than %d", len(m.Users), MaxUsers)
	case len(m.Conns) > MaxConns:
		return event.BadRequest("conns names %d connections, more than %d", len(m.Conns), MaxConns)
	case len(m.Rooms) > MaxRooms:
		return event.BadRequest("rooms names %d rooms, more than %d", len(m.Rooms), MaxRooms)
	case len(m.ExceptConns) > MaxConns:
		return event.BadRequest("except_conns names %d connections, more than %d", len(m.ExceptConns), MaxConns)
	}
	if err := checkExcept(m.ExceptConns); err != nil {
		return err
	}
	if err := checkIDs(m.Users, m.Conns); err != nil {
		return err
	}
	for i, r := range m.Rooms {
		if !proto.ValidRoomName(r) {
			return event.BadRequest("rooms[%d] must match %s", i, proto.RoomPattern)
		}
	}
	return nil
}

// checkIDs returns a bad_request *event.Error naming the first of users
// that is no user id a token may carry, or of conns that is no connection
// id of the gateway's form, or nil (Message.Check, Disconnect.Check).
func checkIDs(users, conns []string) error {
	for i, u := range users {
		if !ValidUser(u) {
			return event.BadRequest("users[%d] must be a user id of 1 to %d bytes of printable UTF-8", i, MaxUserLen)
		}
	}
	for i, c := range conns {
		if !validConn(c) {
			return event.BadRequest("conns[%d] must be a connection id of 1 to %d bytes of printable ASCII", i, MaxConnLen)
		}
	}
	return nil
}

// checkExcept returns a bad_request *event.Error naming the first of
// except that is no connection id of the gateway's form, or nil.
func checkExcept(except []string) error {
	for i, c := range except {
		if !validConn(c) {
			return event.BadRequest("except_conns[%d] must be a connection id of 1 to %d bytes of printable ASCII", i, MaxConnLen)
		}
	}
	return nil
}

// ValidUser reports whether user is an id a token may carry, as the
// target builders and Check require; a handler checks the user ids of its
// args with it, to name the field that is wrong
// (docs/protocol.md section 2, as the gateway checks it): 1 to MaxUserLen
// bytes of UTF-8, every character printable. No socket is ever of another,
// so a dispatch naming one is a caller's mistake, and a control or
// bidirectional-override character in it would forge text in logs.
func ValidUser(user string) bool { return proto.ValidUser(user) }

// validConn reports whether conn may be a connection id the gateway
// made: 1 to MaxConnLen bytes of printable ASCII.
func validConn(conn string) bool {
	if conn == "" || len(conn) > MaxConnLen {
		return false
	}
	for i := 0; i < len(conn); i++ {
		if conn[i] <= ' ' || conn[i] > '~' {
			return false
		}
	}
	return true
}

// Dispatch checks m (Check's errors are bad_request), reads the members of
// its rooms, and records and publishes it: in one script call on one
// Redis, one per partition of its users on a Redis Cluster. It returns
// where it was recorded. A failure to reach Redis is an *event.Error with
// code unavailable (nothing was delivered: a retry is safe); a call Redis
// took but did not answer is one with code timeout, and an error Redis
// raised while it ran the script (WRONGTYPE on a stream key something
// else overwrote, say) one with code handler_error: either may have been
// delivered, to some targets for handler_error, so a retry may deliver it
// twice.
//
// It is not all or none. The script runs each message of at most 128
// users apart, so Redis may fail one and run the others, or fail one after
// it recorded it for some of its users, who have it (handler_error);
// on a Redis Cluster one partition's call may run while another master
// refuses it, cannot be reached or does not answer (timeout, never
// unavailable). Such a dispatch, partly delivered, returns with its error
// (which wraps ErrPartlyDelivered) the Positions of exactly the users
// that have it, and the broadcast position if that part ran; a user
// without one did not get it or, where Redis did not answer, may have. A
// context that ends
// first gives an error that wraps the context's (errors.Is): one that
// ended before the call was written to Redis (queued behind other
// callers' pipeline, or reading the rooms' members) also wraps
// ErrNotSent, with code unavailable: nothing was delivered, so a retry
// is safe; one that ended once it was written may have been delivered (a
// call already written to Redis runs all the same), and its code, as
// event.WireError reads it, is timeout. NotDelivered tells the errors
// after which sending again is safe.
//
// With m.IdempotencyKey (1 to MaxIdempotencyKey bytes of visible ASCII,
// else bad_request), m is delivered at most once per key, across retries,
// processes and the dispatch API (an Idempotency-Key header with the same
// key is the same dispatch): the key is remembered for IdempotencyTTL,
// under the dispatch API's Redis record (docs/protocol.md section 7).
// The first call takes it and dispatches; its positions are recorded,
// and a later call with the key and the same message returns them, with
// Positions.Replayed set, dispatching nothing. A call that comes while
// the first still runs waits for its outcome until its own ctx ends,
// then returns an error wrapping ErrKeyPending (code timeout, nothing
// done). A first call that surely delivered nothing (NotDelivered) frees
// the key, so that a retry dispatches. A keyed call whose ctx ends while
// it is in flight waits, up to 2 s more, for Redis's answer to the round
// trip that carries it, so that the key records the outcome: delivered,
// it returns its positions and no error; not run, an ErrNotSent error.
// One whose outcome stays unknown (timeout, handler_error, that answer
// not come) leaves the key taken until it expires, and a retry gets
// ErrKeyUnknown at once rather than a second delivery; so does one
// partly delivered, whose key cannot record that it reached some users
// only. To finish such a delivery, dispatch the message to the users
// the returned Positions do not name (as Users, a room's members
// included: the rooms may have changed), under a new key derived from
// the first: the users it names got it once, the others get it once
// (but a user whose part Redis did not answer may get it twice). A
// transient or unrecorded dispatch has no positions, so it cannot be
// finished this way. The key with another message is refused with
// ErrKeyReused (bad_request). Redis failing while the key is taken is
// unavailable, nothing dispatched.
func (d *Dispatcher) Dispatch(ctx context.Context, m Message) (Positions, error) {
	if m.IdempotencyKey != "" {
		return d.dispatchOnce(ctx, m)
	}
	return d.dispatch(ctx, m)
}

// dispatch is Dispatch without an idempotency key.
func (d *Dispatcher) dispatch(ctx context.Context, m Message) (Positions, error) {
	// The dispatch API's (package late): when ctx ends first, the outcome
	// once it is known.
	report := late.From(ctx)
	pos := Positions{Users: map[string]string{}}
	if err := m.Check(); err != nil {
		return pos, err
	}
	record := d.record && !m.Transient
	var args any = m.Args
	if len(m.Args) == 0 {
		args = nil
	}
	var units []*streams.Unit
	var users []string // each once, in the order the script records them
	if m.Broadcast {
		u, err := d.encode(&proto.Dispatch{Event: m.Event, Broadcast: true, Except: m.ExceptConns}, args, record)
		if err != nil {
			return pos, err
		}
		units = append(units, u)
	} else {
		users = m.Users
		if len(m.Rooms) > 0 {
			members, err := d.roomMembers(ctx, m.Rooms)
			if err != nil {
				if report != nil && contextError(err) {
					report(late.Report{Outcome: late.NotRun})
				}
				return pos, err
			}
			users = append(slices.Clone(users), members...)
		}
		users = uniq(users)
		if d.cluster {
			users = streams.GroupUsers(users) // the order a cluster records them in
		}
		var err error
		switch {
		case len(users) > 0:
			units, err = d.userUnits(&proto.Dispatch{Event: m.Event, Users: users, Conns: m.Conns, Except: m.ExceptConns}, args, record)
		case len(m.Conns) > 0:
			var u *streams.Unit
			u, err = d.encode(&proto.Dispatch{Event: m.Event, Conns: m.Conns, Except: m.ExceptConns}, args, false)
			units = []*streams.Unit{u}
		}
		if err != nil {
			return pos, err
		}
	}
	if len(units) == 0 {
		return pos, nil // rooms without members
	}
	var after func([]string, late.Outcome)
	if report != nil {
		broadcast := m.Broadcast // not m, whose args the closure would keep
		after = func(got []string, o late.Outcome) {
			r := late.Report{Outcome: o}
			if o == late.Done {
				p := d.positions(record, broadcast, users, got)
				r.Users, r.Broadcast = p.Users, p.Broadcast
			}
			report(r)
		}
	}
	got, err := d.publishLate(ctx, after, units...)
	// A dispatch that failed has positions only when it was partly
	// delivered (ErrPartlyDelivered): those of the users who have it.
	return d.positions(record, m.Broadcast, users, got), err
}

// positions returns the Positions of a dispatch (a broadcast, or to
// users, each once in the order the script recorded them) from got, what
// its script call returned; none when it was not recorded. A target
// whose position is "" (its part failed: splitMerged, inTargetOrder) has
// none.
func (d *Dispatcher) positions(record, broadcast bool, users, got []string) Positions {
	pos := Positions{Users: map[string]string{}}
	// The script returns the positions in target order: each recorded
	// unit's users, or the broadcast stream's one.
	switch {
	case !record:
	case broadcast:
		if len(got) == 1 {
			pos.Broadcast = got[0]
		}
	case len(got) == len(users):
		for i, user := range users {
			if got[i] != "" {
				pos.Users[user] = got[i]
			}
		}
	}
	return pos
}

// userUnits returns the units of a dispatch to msg.Users, each user once,
// at most maxUnitUsers per unit; the first unit also carries msg.Conns,
// and then, if there are more units, the users of those as its SkipUsers:
// a socket named in msg.Conns whose user another unit names gets the
// event once, through its user (docs/protocol.md section 4). With record
// false the units are transient: in no stream, without positions.
func (d *Dispatcher) userUnits(msg *proto.Dispatch, args any, record bool) ([]*streams.Unit, error) {
	users := uniq(msg.Users)
	units := make([]*streams.Unit, 0, (len(users)+maxUnitUsers-1)/maxUnitUsers)
	if d.cluster {
		return d.clusterUserUnits(units, msg, users, args, record)
	}
	for start := 0; start < len(users); start += maxUnitUsers {
		part := &proto.Dispatch{Event: msg.Event, Users: users[start:min(start+maxUnitUsers, len(users))], Except: msg.Except}
		if start == 0 && len(msg.Conns) > 0 {
			part.Conns = msg.Conns
			part.SkipUsers = users[len(part.Users):] // users is each user once
		}
		u, err := d.encode(part, args, record)
		if err != nil {
			return nil, err
		}
		if start == 0 && len(users) > maxUnitUsers {
			args = part.Args // marshalled once: the next units check it only
		}
		units = append(units, u)
	}
	if len(units) == 0 {
		return nil, fmt.Errorf("dispatch %s: no users", msg.Event)
	}
	return units, nil
}
