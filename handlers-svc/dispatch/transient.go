package dispatch

import (
	"context"

	"github.com/switchboard/switchboard/handlers-svc/event"
)

// A transient dispatch (Message.Transient, event.Transient) is published
// as one with recording off is (NoHistory), but per dispatch: in no
// stream, without positions, through the same script call, so that in a
// Batch it keeps its place among recorded ones. Both fan-out modes and a
// Redis Cluster take it as they take any dispatch: per-user mode publishes
// it on each user's channel (SPUBLISH on a cluster, in the user's slot),
// shared mode on proto.Channel.

var (
	_ event.TransientDispatcher = (*Dispatcher)(nil)
	_ event.TransientDispatcher = (*batch)(nil)
	_ event.Rooms               = (*transient)(nil)
	_ event.Batcher             = (*transient)(nil)
)

// Transient returns d's transient view (event.Transient): a Dispatcher
// whose dispatches to users, to rooms and broadcasts are published
// without being recorded, so the sockets connected now get them, without
// a position, and a device that is away or resumes never does. Its
// dispatches to connections, its rooms' membership and its bounds are
// d's.
func (d *Dispatcher) Transient() event.Dispatcher { return &transient{d: d} }

// transient is a Dispatcher's transient view.
type transient struct{ d *Dispatcher }

func (t *transient) ToUsers(ctx context.Context, users []string, name string, args any) error {
	if err := checkUsers(name, users); err != nil {
		return err
	}
	return t.d.toUsers(ctx, users, name, args, false)
}

func (t *transient) ToConns(ctx context.Context, conns []string, name string, args any) error {
	return t.d.ToConns(ctx, conns, name, args)
}

func (t *transient) Broadcast(ctx context.Context, name string, args any) error {
	return t.d.broadcast(ctx, name, args, false)
}

func (t *transient) Join(ctx context.Context, room, user string) (int, bool, error) {
	return t.d.Join(ctx, room, user)
}

func (t *transient) Leave(ctx context.Context, room, user string) (int, bool, error) {
	return t.d.Leave(ctx, room, user)
}

func (t *transient) Members(ctx context.Context, room string) ([]string, error) {
	return t.d.Members(ctx, room)
}

// ToRooms publishes the event, transient, for every member of each of
// rooms, once per user.
func (t *transient) ToRooms(ctx context.Context, rooms []string, name string, args any) error {
	if err := checkRooms(name, rooms); err != nil {
		return err
	}
	users, err := t.d.roomMembers(ctx, rooms)
	if err != nil {
		return err
	}
	return t.d.toUsers(ctx, users, name, args, false)
}

// Batch is the Dispatcher's Batch, with fn given the batch's transient
// view: its dispatches are transient, and event.Transient of it gives
// the same view.
func (t *transient) Batch(ctx context.Context, fn func(event.Dispatcher) error) error {
	return t.d.Batch(ctx, func(b event.Dispatcher) error { return fn(b.(*batch).Transient()) })
}

// Transient returns itself.
func (t *transient) Transient() event.Dispatcher { return t }

// Transient returns the batch's transient view: its dispatches join the
// batch, in order, but are not recorded.
func (b *batch) Transient() event.Dispatcher {
	return &batch{d: b.d, units: b.units, record: false}
}
