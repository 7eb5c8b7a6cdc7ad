// Package eventtest provides utilities for testing event handlers without
// NATS or Redis, as net/http/httptest does for HTTP handlers: a Recorder that
// implements event.Dispatcher and event.Rooms and records every dispatch,
// Presence, an event.Presence held in memory, NewRequest to build a
// request, and Result to read what the handler answered.
//
// A Recorder is safe for concurrent use, so it can record the dispatches of
// handlers that run in parallel.
package eventtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// Recorder is an event.Dispatcher that records the dispatches a handler
// makes instead of delivering them. It applies the same checks as the real
// dispatcher: the event name must be valid and not one of the gateway's
// own (proto.Reserved), args must marshal to JSON of at most
// proto.MaxDispatchArgs bytes, targets are bounded as package dispatch
// bounds them (user ids a token can carry, at most dispatch.MaxUsers
// users, MaxConns connections and MaxRooms rooms), and a context that has
// ended fails the dispatch with the context's error.
//
// Its rooms live in memory, with the real store's rules (room names, at
// most proto.MaxRoomMembers members); ToRooms records one dispatch to the
// rooms' members, sorted, which is what the real dispatcher delivers.
//
// Its Transient view (event.Transient) records dispatches as transient:
// Dispatches returns them with the others, in order, and
// TransientDispatches returns them alone.
type Recorder struct {
	mu         sync.Mutex
	dispatches []proto.Dispatch
	transient  []bool // by index of dispatches: made through the Transient view
	err        error
	rooms      *roomSet // shared with the Recorders of Batch
	ended      bool     // a Batch's Recorder whose fn has returned: it refuses dispatches, as the real batch does
}

var (
	_ event.Dispatcher          = (*Recorder)(nil)
	_ event.Batcher             = (*Recorder)(nil)
	_ event.Rooms               = (*Recorder)(nil)
	_ event.TransientDispatcher = (*Recorder)(nil)
)

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{rooms: newRoomSet()} }

// ToUsers records a dispatch to users. Like the real dispatcher, it
// refuses with bad_request more than dispatch.MaxUsers users or an id no
// token can carry (dispatch.Message.Check).
func (rec *Recorder) ToUsers(ctx context.Context, users []string, name string, args any) error {
	if err := bounds(dispatch.Message{Event: name, Users: users}); err != nil {
		return err
	}
	return rec.toUsers(ctx, users, name, args, false)
}

// toUsers is ToUsers without the bounds: for rooms' members, which the
// real dispatcher does not count against dispatch.MaxUsers.
func (rec *Recorder) toUsers(ctx context.Context, users []string, name string, args any, transient bool) error {
	return rec.record(ctx, proto.Dispatch{Event: name, Users: slices.Clone(users)}, args, len(users) == 0, transient)
}

// ToConns records a dispatch to conns. Like the real dispatcher, it
// refuses with bad_request more than dispatch.MaxConns connections or an
// id the gateway never makes.
func (rec *Recorder) ToConns(ctx context.Context, conns []string, name string, args any) error {
	if err := bounds(dispatch.Message{Event: name, Conns: conns}); err != nil {
		return err
	}
	return rec.record(ctx, proto.Dispatch{Event: name, Conns: slices.Clone(conns)}, args, len(conns) == 0, false)
}

// bounds returns the real dispatcher's refusal of m's targets, or nil; an
// invalid or reserved event name and no target are left to record, which
// refuses them as the real dispatcher does.
func bounds(m dispatch.Message) error {
	if !proto.ValidEventName(m.Event) || proto.Reserved(m.Event) || len(m.Users)+len(m.Conns)+len(m.Rooms) == 0 {
		return nil
	}
	return m.Check()
}

// Broadcast records a dispatch to every socket.
func (rec *Recorder) Broadcast(ctx context.Context, name string, args any) error {
	return rec.record(ctx, proto.Dispatch{Event: name, Broadcast: true}, args, false, false)
}

func (rec *Recorder) record(ctx context.Context, d proto.Dispatch, args any, empty, transient bool) error {
	if !proto.ValidEventName(d.Event) {
		return fmt.Errorf("dispatch: invalid event name %q", d.Event)
	}
	if proto.Reserved(d.Event) {
		return fmt.Errorf("dispatch: event name %q is the gateway's own", d.Event)
	}
	raw, err := event.EncodeArgs(args)
	if err != nil {
		return fmt.Errorf("dispatch %s: %w", d.Event, err)
	}
	if empty {
		return nil
	}
	if len(raw) > proto.MaxDispatchArgs {
		return event.BadRequest("dispatch %s: its args are %d bytes, more than the %d allowed", d.Event, len(raw), proto.MaxDispatchArgs)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dispatch %s: %w", d.Event, err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.ended {
		return endedError(d.Event)
	}
	if rec.err != nil {
		return rec.err
	}
	d.Args = slices.Clone(raw)
	rec.dispatches = append(rec.dispatches, d)
	rec.transient = append(rec.transient, transient)
	return nil
}

// Batch records the dispatches fn makes all together, after fn returns nil,
// or none of them: when fn fails, or FailWith set an error, which it
// returns.
func (rec *Recorder) Batch(ctx context.Context, fn func(event.Dispatcher) error) error {
	b := &Recorder{rooms: rec.roomSet()}
	err := fn(b)
	b.mu.Lock()
	b.ended = true
	dispatches, transient := b.dispatches, b.transient
	b.mu.Unlock()
	if err != nil {
		return err
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.err != nil {
		return rec.err
	}
	rec.dispatches = append(rec.dispatches, dispatches...)
	rec.transient = append(rec.transient, transient...)
	return nil
}

// endedError refuses a dispatch through a batch after the function given
// to Batch returned, as the real batch does.
func endedError(name string) error {
	if name != "" {
		name = " " + name
	}
	return fmt.Errorf("dispatch%s: its batch has ended (the function given to Batch returned): nothing is published", name)
}

// Dispatches returns a copy of the dispatches recorded so far, in order.
func (rec *Recorder) Dispatches() []proto.Dispatch {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.dispatches)
}

// TransientDispatches returns a copy of the dispatches recorded so far
// through the Recorder's transient view (event.Transient), in order:
// those the real dispatcher would publish without recording them.
// Dispatches returns them too, among the others.
func (rec *Recorder) TransientDispatches() []proto.Dispatch {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []proto.Dispatch
	for i, d := range rec.dispatches {
		if rec.transient[i] {
			out = append(out, d)
		}
	}
	return out
}

// Reset forgets the recorded dispatches.
func (rec *Recorder) Reset() {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.dispatches = nil
	rec.transient = nil
}

// FailWith makes every later dispatch and room operation (Join, Leave,
// Members, ToRooms) return err and record or change nothing, to test how a
// handler reacts to a dispatch failure; nil restores normal recording. Use
// an *event.Error with code unavailable to act like a Redis outage.
func (rec *Recorder) FailWith(err error) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.err = err
}

// Result decodes the result the handler set on r (with Request.Respond, or
// as a typed handler's return value) into a T. It fails when there is none
// or it does not decode, and when it is over proto.MaxResult bytes, which
// handlers-svc answers with handler_error instead of sending it.
// Result[event.NoResult] checks a plain ack instead: it fails when the
// handler set a result. It reads what Respond set whatever the handler
// returned: the client gets that result only when the handler returned
// nil, so check the handler's error first.
func Result[T any](r *event.Request) (T, error) {
	var v T
	raw := r.Result()
	if _, plain := any(v).(event.NoResult); plain {
		if raw != nil {
			return v, fmt.Errorf("eventtest: the request has the result %s, want none (event.NoResult)", raw)
		}
		return v, nil
	}
	if raw == nil {
		return v, errors.New("eventtest: the request has no result")
	}
	if len(raw) > proto.MaxResult {
		return v, fmt.Errorf("eventtest: the result is %d bytes, more than proto.MaxResult (%d): the client would get handler_error", len(raw), proto.MaxResult)
	}
	if !utf8.Valid(raw) {
		return v, errors.New("eventtest: the result is not UTF-8: the client would get handler_error")
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("eventtest: decode result %s: %w", raw, err)
	}
	return v, nil
}

// NewRequest returns a request for the event name sent by user on the
// connection "<user>-conn", with args marshalled to JSON: nil leaves Args
// absent and a json.RawMessage is used as is, so a test can send any JSON.
// For a user whose "<user>-conn" is no connection id the gateway makes
// (printable ASCII, at most dispatch.MaxConnLen bytes), such as "josé", the
// connection is "conn-" and 16 hex digits of the user's SHA-256 instead, so
// that a handler can always answer the sender's device with
// Dispatcher.ToConns(ctx, []string{r.Conn}, ...). Change the returned fields
// to test other cases. NewRequest panics if args cannot be marshalled, as a
// test mistake.
func NewRequest(name, user string, args any) *event.Request {
	r := &event.Request{Event: name, User: user, Conn: connOf(user)}
	switch a := args.(type) {
	case nil:
	case json.RawMessage:
		r.Args = a
	default:
		b, err := json.Marshal(args)
		if err != nil {
			panic(fmt.Sprintf("eventtest: marshal args: %v", err))
		}
		r.Args = b
	}
	return r
}

// connOf returns the connection id NewRequest gives user's request: one
// the Recorder, like the real dispatcher, takes in ToConns.
func connOf(user string) string {
	conn := user + "-conn"
	m := dispatch.Message{Event: "conn", Conns: []string{conn}}
	if m.Check() == nil {
		return conn
	}
	sum := sha256.Sum256([]byte(user))
	return "conn-" + hex.EncodeToString(sum[:8])
}
