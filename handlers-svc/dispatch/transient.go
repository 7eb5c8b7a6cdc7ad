package dispatch

import (
	"context"
	"slices"

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
	_ event.ExceptDispatcher    = (*Dispatcher)(nil)
	_ event.ExceptDispatcher    = (*batch)(nil)
	_ event.Rooms               = (*view)(nil)
	_ event.Batcher             = (*view)(nil)
	_ event.TransientDispatcher = (*view)(nil)
	_ event.ExceptDispatcher    = (*view)(nil)
)

// Transient returns d's transient view (event.Transient): a Dispatcher
// whose dispatches to users, to rooms and broadcasts are published
// without being recorded, so the sockets connected now get them, without
// a position, and a device that is away or resumes never does. Its
// dispatches to connections, its rooms' membership and its bounds are
// d's.
func (d *Dispatcher) Transient() event.Dispatcher { return &view{d: d} }

// Except returns d's view that leaves conns out (event.Except): its
// dispatches are d's, recorded as d records them, but the sockets of
// conns get nothing of them, live or on a resume that names them as its
// previous connections (docs/protocol.md sections 4 and 6). conns are
// checked at each dispatch as a Message's ExceptConns are: at most
// MaxConns connection ids of the gateway's form, else bad_request.
func (d *Dispatcher) Except(conns ...string) event.Dispatcher {
	return &view{d: d, record: d.record, except: slices.Clone(conns)}
}

// view is a Dispatcher's transient view (record false), one that leaves
// connections out (except), or both.
type view struct {
	d      *Dispatcher
	record bool
	except []string
}

// check refuses v's except list as Message.Check refuses ExceptConns.
func (v *view) check(name string) error { return checkExceptOf(name, v.except) }

// checkExceptOf refuses the except list of a dispatch of event name made
// through an Except view as Message.Check refuses ExceptConns.
func checkExceptOf(name string, except []string) error {
	if len(except) > MaxConns {
		return event.BadRequest("dispatch %s: it leaves out %d connections, more than %d", name, len(except), MaxConns)
	}
	return checkExcept(except)
}

func (v *view) ToUsers(ctx context.Context, users []string, name string, args any) error {
	if err := checkUsers(name, users); err != nil {
		return err
	}
	if err := v.check(name); err != nil {
		return err
	}
	return v.d.toUsers(ctx, users, name, args, v.record, v.except)
}

func (v *view) ToConns(ctx context.Context, conns []string, name string, args any) error {
	if err := v.check(name); err != nil {
		return err
	}
	return v.d.toConns(ctx, conns, name, args, v.except)
}

func (v *view) Broadcast(ctx context.Context, name string, args any) error {
	if err := v.check(name); err != nil {
		return err
	}
	return v.d.broadcast(ctx, name, args, v.record, v.except)
}

func (v *view) Join(ctx context.Context, room, user string) (int, bool, error) {
	return v.d.Join(ctx, room, user)
}

func (v *view) Leave(ctx context.Context, room, user string) (int, bool, error) {
	return v.d.Leave(ctx, room, user)
}

func (v *view) Members(ctx context.Context, room string) ([]string, error) {
	return v.d.Members(ctx, room)
}

// ToRooms publishes the event for every member of each of rooms, once per
// user, as the view publishes to users.
func (v *view) ToRooms(ctx context.Context, rooms []string, name string, args any) error {
	if err := checkRooms(name, rooms); err != nil {
		return err
	}
	if err := v.check(name); err != nil {
		return err
	}
	users, err := v.d.roomMembers(ctx, rooms)
	if err != nil {
		return err
	}
	return v.d.toUsers(ctx, users, name, args, v.record, v.except)
}

// Batch is the Dispatcher's Batch, with fn given the batch's view of the
// same kind: its dispatches are transient or leave connections out as
// v's, and event.Transient or event.Except of it gives the batch's view.
func (v *view) Batch(ctx context.Context, fn func(event.Dispatcher) error) error {
	return v.d.Batch(ctx, func(b event.Dispatcher) error {
		bb := b.(*batch)
		return fn(&batch{d: bb.d, units: bb.units, record: v.record, except: v.except})
	})
}

// Transient returns v's transient view: v itself if it is one.
func (v *view) Transient() event.Dispatcher {
	if !v.record {
		return v
	}
	return &view{d: v.d, except: v.except}
}

// Except returns v's view that leaves conns out too.
func (v *view) Except(conns ...string) event.Dispatcher {
	return &view{d: v.d, record: v.record, except: append(slices.Clone(v.except), conns...)}
}

// Transient returns the batch's transient view: its dispatches join the
// batch, in order, but are not recorded.
func (b *batch) Transient() event.Dispatcher {
	return &batch{d: b.d, units: b.units, record: false, except: b.except}
}

// Except returns the batch's view that leaves conns out: its dispatches
// join the batch, in order, and their sockets get nothing of them.
func (b *batch) Except(conns ...string) event.Dispatcher {
	return &batch{d: b.d, units: b.units, record: b.record, except: append(slices.Clone(b.except), conns...)}
}
