package redisdispatch

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// Dispatcher publishes dispatch messages on proto.Channel.
type Dispatcher struct {
	pub  publisher
	log  *zap.Logger // nil: outages are not logged here
	down atomic.Bool // the last publish failed to reach Redis
}

var (
	_ event.Dispatcher = (*Dispatcher)(nil)
	_ event.Batcher    = (*Dispatcher)(nil)
)

// New returns a Dispatcher that publishes with rdb. The caller owns rdb and
// closes it after the last dispatch. rdb should not retry commands
// (MaxRetries -1): a publish repeated after a lost reply is delivered twice.
// rdb is a single-server client (or a failover one): a Redis Cluster client
// could not keep a transaction on one node inside a shared pipeline. With
// ContextTimeoutEnabled set on rdb, a round trip to Redis ends by the last
// deadline of the dispatches it carries; without it, only by rdb's own
// timeouts.
func New(rdb *redis.Client) *Dispatcher { return &Dispatcher{pub: newPublisher(rdb)} }

// LogOutages makes d log when Redis stops taking its dispatches and when it
// takes them again, once per change rather than once per failed dispatch
// (each of those still returns unavailable to its handler). It returns d;
// call it before the first dispatch.
func (d *Dispatcher) LogOutages(log *zap.Logger) *Dispatcher {
	d.log = log
	return d
}

// observe records the outcome of one publish and logs a change of state.
func (d *Dispatcher) observe(ctx context.Context, err error) error {
	err = publishError(ctx, err)
	switch {
	case err == nil:
		if d.down.Swap(false) && d.log != nil {
			d.log.Info("redis reachable again: dispatches resume")
		}
	case ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded): // unavailable, not the handler running out of time
		if !d.down.Swap(true) && d.log != nil {
			d.log.Error("redis unreachable: dispatches fail with unavailable until it is back", zap.Error(err))
		}
	}
	return err
}

// ToUsers publishes the event for every device of each of users.
func (d *Dispatcher) ToUsers(ctx context.Context, users []string, name string, args any) error {
	if len(users) == 0 {
		return checkOnly(name, args)
	}
	body, err := encode(&proto.Dispatch{Event: name, Users: users}, args)
	if err != nil {
		return err
	}
	return d.publish(ctx, body)
}

// ToConns publishes the event for each of conns.
func (d *Dispatcher) ToConns(ctx context.Context, conns []string, name string, args any) error {
	if len(conns) == 0 {
		return checkOnly(name, args)
	}
	body, err := encode(&proto.Dispatch{Event: name, Conns: conns}, args)
	if err != nil {
		return err
	}
	return d.publish(ctx, body)
}

// Broadcast publishes the event for every socket of every gateway worker.
func (d *Dispatcher) Broadcast(ctx context.Context, name string, args any) error {
	body, err := encode(&proto.Dispatch{Event: name, Broadcast: true}, args)
	if err != nil {
		return err
	}
	return d.publish(ctx, body)
}

// Batch runs fn with a Dispatcher that collects its dispatches, then
// publishes them in one MULTI/EXEC transaction: every gateway worker gets
// all of them, in order, or none is published. The transaction may share a
// pipeline with other callers' publishes; nothing comes between its own.
func (d *Dispatcher) Batch(ctx context.Context, fn func(event.Dispatcher) error) error {
	var b batch
	if err := fn(&b); err != nil {
		return err
	}
	switch len(b.bodies) {
	case 0:
		return nil
	case 1:
		return d.publish(ctx, b.bodies[0])
	}
	return d.observe(ctx, d.pub.publish(ctx, b.bodies...))
}

// batch collects encoded dispatches for Batch. It is used by one handler
// call at a time, so it needs no lock.
type batch struct{ bodies [][]byte }

func (b *batch) ToUsers(_ context.Context, users []string, name string, args any) error {
	if len(users) == 0 {
		return checkOnly(name, args)
	}
	return b.add(&proto.Dispatch{Event: name, Users: users}, args)
}

func (b *batch) ToConns(_ context.Context, conns []string, name string, args any) error {
	if len(conns) == 0 {
		return checkOnly(name, args)
	}
	return b.add(&proto.Dispatch{Event: name, Conns: conns}, args)
}

func (b *batch) Broadcast(_ context.Context, name string, args any) error {
	return b.add(&proto.Dispatch{Event: name, Broadcast: true}, args)
}

func (b *batch) add(msg *proto.Dispatch, args any) error {
	body, err := encode(msg, args)
	if err != nil {
		return err
	}
	b.bodies = append(b.bodies, body)
	return nil
}

// checkOnly reports the programming errors a dispatch to nobody would have
// had, so they do not hide until the list is non-empty.
func checkOnly(name string, args any) error {
	if !proto.ValidEventName(name) {
		return fmt.Errorf("dispatch: invalid event name %q", name)
	}
	if _, err := event.EncodeArgs(args); err != nil {
		return fmt.Errorf("dispatch %s: %w", name, err)
	}
	return nil
}

// encode checks msg's event name and args and returns the JSON body of the
// dispatch. Its errors are programming errors, not outages, but for args
// over proto.MaxDispatchArgs: bad_request, the answer to the request that
// asked for them.
func encode(msg *proto.Dispatch, args any) ([]byte, error) {
	if !proto.ValidEventName(msg.Event) {
		return nil, fmt.Errorf("dispatch: invalid event name %q", msg.Event)
	}
	raw, err := event.EncodeArgs(args)
	if err != nil {
		return nil, fmt.Errorf("dispatch %s: %w", msg.Event, err)
	}
	if len(raw) > proto.MaxDispatchArgs {
		return nil, event.BadRequest("dispatch %s: its args are %d bytes, more than the %d allowed", msg.Event, len(raw), proto.MaxDispatchArgs)
	}
	msg.Args = raw
	return proto.AppendDispatch(make([]byte, 0, 128+len(raw)), msg), nil
}

// publish sends body on proto.Channel using ctx.
func (d *Dispatcher) publish(ctx context.Context, body []byte) error {
	return d.observe(ctx, d.pub.publish(ctx, body))
}

// publishError turns a failure to reach Redis into an *event.Error with
// code unavailable wrapping the cause, unless ctx itself ended, which is
// returned as the context's error (so a handler that ran out of time
// reports timeout).
func publishError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("publish %s: %w", proto.Channel, ctxErr)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// The round trip outlasted the callers' deadline (see flush); ctx
		// ends at the same instant, if it has not yet.
		return fmt.Errorf("publish %s: %w", proto.Channel, err)
	}
	return &event.Error{
		Code:    proto.CodeUnavailable,
		Message: "dispatch unavailable",
		Err:     fmt.Errorf("publish %s: %w", proto.Channel, err),
	}
}
