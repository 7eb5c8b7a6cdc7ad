package eventtest

import (
	"context"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

var (
	_ event.Rooms               = (*transient)(nil)
	_ event.Batcher             = (*transient)(nil)
	_ event.TransientDispatcher = (*transient)(nil)
)

// Transient returns the Recorder's transient view (event.Transient): it
// records dispatches to users, to rooms and broadcasts as transient, as
// TransientDispatches returns them, with the Recorder's checks, rooms and
// FailWith.
func (rec *Recorder) Transient() event.Dispatcher { return &transient{rec: rec} }

// transient is a Recorder's transient view.
type transient struct{ rec *Recorder }

func (t *transient) ToUsers(ctx context.Context, users []string, name string, args any) error {
	if err := bounds(dispatch.Message{Event: name, Users: users}); err != nil {
		return err
	}
	return t.rec.toUsers(ctx, users, name, args, true)
}

func (t *transient) ToConns(ctx context.Context, conns []string, name string, args any) error {
	return t.rec.ToConns(ctx, conns, name, args)
}

func (t *transient) Broadcast(ctx context.Context, name string, args any) error {
	return t.rec.record(ctx, proto.Dispatch{Event: name, Broadcast: true}, args, false, true)
}

func (t *transient) Join(ctx context.Context, room, user string) (int, bool, error) {
	return t.rec.Join(ctx, room, user)
}

func (t *transient) Leave(ctx context.Context, room, user string) (int, bool, error) {
	return t.rec.Leave(ctx, room, user)
}

func (t *transient) Members(ctx context.Context, room string) ([]string, error) {
	return t.rec.Members(ctx, room)
}

func (t *transient) ToRooms(ctx context.Context, rooms []string, name string, args any) error {
	return t.rec.toRooms(ctx, rooms, name, args, true)
}

// Batch is the Recorder's Batch, with fn given the batch's transient view.
func (t *transient) Batch(ctx context.Context, fn func(event.Dispatcher) error) error {
	return t.rec.Batch(ctx, func(d event.Dispatcher) error { return fn(event.Transient(d)) })
}

// Transient returns itself.
func (t *transient) Transient() event.Dispatcher { return t }
