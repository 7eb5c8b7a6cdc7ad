package event

import (
	"context"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/switchboard/switchboard/proto"
)

// Dispatcher delivers events to clients through every gateway worker. It is
// the handler's view of the dispatch path: a handler is given one and calls
// it as many times as it needs.
//
// An event name must match proto.EventPattern and not be one of the
// gateway's own (proto.Reserved): either mistake is a plain error
// (handler_error). args is marshalled to JSON with EncodeArgs: a
// json.RawMessage passes through unchanged and nil becomes null; args over
// proto.MaxDispatchArgs bytes, or targets past the bounds of package
// dispatch, are a bad_request *Error. Each method returns once the dispatch
// has been handed to the delivery path, not once clients received it; a
// failure to reach it is an *Error with code unavailable (nothing was
// delivered), and a call the path took but did not answer is one with code
// timeout (it may have been delivered). Dispatching to no users or no
// connections does nothing.
type Dispatcher interface {
	// ToUsers delivers the event to every connected device of each user.
	ToUsers(ctx context.Context, users []string, event string, args any) error
	// ToConns delivers the event to each of the given connections.
	ToConns(ctx context.Context, conns []string, event string, args any) error
	// Broadcast delivers the event to every connected socket.
	Broadcast(ctx context.Context, event string, args any) error
}

// EncodeArgs marshals the args of a dispatch to JSON the way every Dispatcher
// does: nil stays nil (sent as null), a json.RawMessage is passed through
// after checking that it is valid JSON, and anything else goes through
// json.Marshal. A value that cannot be marshalled is a programming error and
// yields a plain error. JSON that no gateway could deliver (CheckArgs) is a
// bad_request.
func EncodeArgs(args any) (json.RawMessage, error) {
	b, err := encodeJSON(args)
	if err != nil || b == nil {
		return b, err
	}
	// A json.RawMessage, also as a field, keeps its bytes through
	// json.Marshal, UTF-8 or not.
	return b, CheckArgs(b)
}

// encodeJSON is EncodeArgs without CheckArgs: Request.Respond's, whose
// result the transport checks (one no client can be sent is
// handler_error, the handler's fault, not the client's).
func encodeJSON(v any) (json.RawMessage, error) {
	switch a := v.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if a == nil {
			return nil, nil
		}
		if !proto.ValidJSON(a) {
			return nil, fmt.Errorf("encode args: invalid json.RawMessage")
		}
		return a, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode args: %w", err)
	}
	return b, nil
}

// CheckArgs returns a bad_request *Error when args, valid JSON, are JSON
// no gateway can deliver (proto.ValidArgs): not UTF-8, which no socket's
// text frame may carry, or nested deeper than proto.MaxArgsDepth.
func CheckArgs(args json.RawMessage) error {
	switch {
	case proto.ValidArgs(args):
		return nil
	case !utf8.Valid(args):
		return BadRequest("args are not UTF-8: no socket can be sent them")
	default:
		return BadRequest("args are nested deeper than %d levels", proto.MaxArgsDepth)
	}
}

// Batcher is implemented by a Dispatcher that can deliver several
// dispatches together, in order, in one step: none of them when the
// delivery path cannot be reached, but not all or none in every case.
type Batcher interface {
	// Batch runs fn with a Dispatcher that collects dispatches; when fn
	// returns nil they are delivered together, in order. An error with
	// code unavailable says none of them was delivered (a retry is
	// safe); any other says some may have been: timeout (the path took
	// them and did not answer), or, with the Redis dispatcher, a batch
	// partly delivered (its error wraps dispatch.ErrPartlyDelivered, code
	// handler_error or timeout), since Redis may fail one dispatch of the
	// batch while it runs the others, and on a Redis Cluster each
	// partition's share is delivered apart. When fn fails nothing is
	// delivered and its error is returned.
	Batch(ctx context.Context, fn func(d Dispatcher) error) error
}

// Atomically runs fn so that the dispatches it makes through its Dispatcher
// are delivered together, in order, in one step, when d supports it (it
// is a Batcher, as the Redis dispatcher and eventtest.Recorder are);
// otherwise fn's dispatches go out one by one through d. Use it when a
// client would see a half-done action: sendMessage's "message" to the
// recipient and "message_sent" to the sender's devices go out in one
// step, so that an outage (unavailable), or fn failing half way,
// delivers neither.
// It is not all or none in every case (Batcher): Redis may fail one
// dispatch of the batch while it runs the others, and on a Redis Cluster
// the recipient's and the sender's partitions may fare differently; the
// error is then never unavailable, but handler_error or timeout, which
// tell the client it may have been delivered.
//
// Only dispatches made through fn's d are in the batch. The d of the Redis
// dispatcher and of eventtest.Recorder is also a Rooms: a dispatch to rooms
// joins the batch as d.(Rooms).ToRooms(...), while one made through the
// family's own Rooms inside fn is delivered at once, outside it.
func Atomically(ctx context.Context, d Dispatcher, fn func(d Dispatcher) error) error {
	if b, ok := d.(Batcher); ok {
		return b.Batch(ctx, fn)
	}
	return fn(d)
}

// TransientDispatcher is implemented by a Dispatcher that can dispatch
// without recording: the Redis dispatcher, its batches, and
// eventtest.Recorder.
type TransientDispatcher interface {
	// Transient returns a Dispatcher whose dispatches to users, to rooms
	// (when it is also a Rooms) and broadcasts are transient.
	Transient() Dispatcher
}

// Transient returns a Dispatcher whose dispatches to users and rooms, and
// broadcasts, are transient (Socket.IO's "volatile"): delivered to the
// sockets connected when they are sent, without a position, and never
// recorded, so a device that is away, or drops and resumes, does not get
// them later (docs/protocol.md section 6). Use it for events that are
// stale as soon as they are missed, such as typing indicators, cursors
// and presence pings; recording them would cost a stream entry per user,
// and replay a "typing…" long over to a device that resumes:
//
//	return event.Transient(c.d).ToUsers(ctx, []string{in.To}, "typing", typing)
//
// Dispatches to connections are transient anyway. The result of the Redis
// dispatcher and of eventtest.Recorder is also a Rooms (its ToRooms is
// transient, membership unchanged) and a Batcher; inside Atomically,
// Transient of fn's d puts transient dispatches in the batch. When d is
// not a TransientDispatcher, Transient returns d itself: its dispatches
// are then delivered as d delivers them, recorded if it records.
func Transient(d Dispatcher) Dispatcher {
	if t, ok := d.(TransientDispatcher); ok {
		return t.Transient()
	}
	return d
}

// ExceptDispatcher is implemented by a Dispatcher that can leave
// connections out of its dispatches: the Redis dispatcher, its views and
// batches, and eventtest.Recorder.
type ExceptDispatcher interface {
	// Except returns a Dispatcher whose dispatches reach none of conns.
	Except(conns ...string) Dispatcher
}

// Except returns a Dispatcher whose dispatches leave out the sockets of
// conns, though they are among the targets (docs/protocol.md section 4,
// an extension): their users' other devices, and every other target, get
// them as usual, recorded as d records them. The sockets of conns get
// nothing, live, in a gap filled, or on a resume whose client names one
// of them as a previous connection of its session (as client.js does).
// conns are connection ids of the gateway's form, at most
// dispatch.MaxConns, else the dispatch is refused with bad_request.
// Except composes with Transient, and inside Atomically, Except of fn's d
// puts the dispatches in the batch. When d is not an ExceptDispatcher,
// Except returns d itself: its dispatches then reach conns too.
func Except(d Dispatcher, conns ...string) Dispatcher {
	if e, ok := d.(ExceptDispatcher); ok && len(conns) > 0 {
		return e.Except(conns...)
	}
	return d
}

// ExceptSender returns Except(d, r.Conn): a Dispatcher whose dispatches
// reach everyone they name but the connection r came on, Socket.IO's
// socket.broadcast.emit and socket.to(room).emit:
//
//	return event.ExceptSender(c.d, r).ToUsers(ctx, members, "room_say", msg)
//
// The sender's other devices get it. A request without a connection (one
// not from a socket) leaves nothing out.
func ExceptSender(d Dispatcher, r *Request) Dispatcher {
	if r == nil || r.Conn == "" {
		return d
	}
	return Except(d, r.Conn)
}
