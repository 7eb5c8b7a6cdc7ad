package eventtest

import (
	"context"
	"slices"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
)

var (
	_ event.ExceptDispatcher = (*Recorder)(nil)
	_ event.ExceptDispatcher = (*transient)(nil)
	_ event.Rooms            = (*except)(nil)
	_ event.Batcher          = (*except)(nil)
	_ event.ExceptDispatcher = (*except)(nil)
)

// Except returns the Recorder's view that leaves conns out (event.Except):
// it records its dispatches with conns as their Except, with the
// Recorder's checks (conns as dispatch.Message.ExceptConns), rooms and
// FailWith, so a test asserts that a handler left its sender out.
func (rec *Recorder) Except(conns ...string) event.Dispatcher {
	return &except{rec: rec, conns: slices.Clone(conns)}
}

// Except returns the transient view's view that leaves conns out.
func (t *transient) Except(conns ...string) event.Dispatcher {
	return &except{rec: t.rec, transient: true, conns: slices.Clone(conns)}
}

// except is a Recorder's view that leaves connections out, transient or
// not.
type except struct {
	rec       *Recorder
	transient bool
	conns     []string
}

// do records what fn dispatches through a Recorder of its own (the
// transient view of it for a transient except), with x's list.
func (x *except) do(fn func(d event.Dispatcher) error) error {
	check := dispatch.Message{Event: "e", Conns: []string{"c"}, ExceptConns: x.conns}
	if err := check.Check(); err != nil {
		return err
	}
	b := Recorder{rooms: x.rec.roomSet()}
	var d event.Dispatcher = &b
	if x.transient {
		d = b.Transient()
	}
	if err := fn(d); err != nil {
		return err
	}
	for i := range b.dispatches {
		b.dispatches[i].Except = slices.Clone(x.conns)
	}
	x.rec.mu.Lock()
	defer x.rec.mu.Unlock()
	if x.rec.ended {
		name := ""
		if len(b.dispatches) > 0 {
			name = b.dispatches[0].Event
		}
		return endedError(name)
	}
	if x.rec.err != nil {
		return x.rec.err
	}
	x.rec.dispatches = append(x.rec.dispatches, b.dispatches...)
	x.rec.transient = append(x.rec.transient, b.transient...)
	return nil
}

func (x *except) ToUsers(ctx context.Context, users []string, name string, args any) error {
	return x.do(func(d event.Dispatcher) error { return d.ToUsers(ctx, users, name, args) })
}

func (x *except) ToConns(ctx context.Context, conns []string, name string, args any) error {
	return x.do(func(d event.Dispatcher) error { return d.ToConns(ctx, conns, name, args) })
}

func (x *except) Broadcast(ctx context.Context, name string, args any) error {
	return x.do(func(d event.Dispatcher) error { return d.Broadcast(ctx, name, args) })
}

func (x *except) ToRooms(ctx context.Context, rooms []string, name string, args any) error {
	return x.do(func(d event.Dispatcher) error { return d.(event.Rooms).ToRooms(ctx, rooms, name, args) })
}

func (x *except) Join(ctx context.Context, room, user string) (int, bool, error) {
	return x.rec.Join(ctx, room, user)
}

func (x *except) Leave(ctx context.Context, room, user string) (int, bool, error) {
	return x.rec.Leave(ctx, room, user)
}

func (x *except) Members(ctx context.Context, room string) ([]string, error) {
	return x.rec.Members(ctx, room)
}

// Batch is the Recorder's Batch, with fn given the batch's view of the
// same kind.
func (x *except) Batch(ctx context.Context, fn func(event.Dispatcher) error) error {
	return x.rec.Batch(ctx, func(d event.Dispatcher) error {
		if x.transient {
			d = event.Transient(d)
		}
		return fn(event.Except(d, x.conns...))
	})
}

// Transient returns x's transient view.
func (x *except) Transient() event.Dispatcher {
	return &except{rec: x.rec, transient: true, conns: x.conns}
}

// Except returns x's view that leaves conns out too.
func (x *except) Except(conns ...string) event.Dispatcher {
	return &except{rec: x.rec, transient: x.transient, conns: append(slices.Clone(x.conns), conns...)}
}
