// Package redisdispatch implements event.Dispatcher over Redis PUBLISH on the
// channel every gateway worker subscribes to (PROTOCOL section 4).
//
// A Dispatcher is safe for concurrent use and starts no goroutines; it shares
// the go-redis client's connection pool, which reconnects by itself.
package redisdispatch

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// Dispatcher publishes dispatch messages on proto.Channel.
type Dispatcher struct {
	rdb redis.UniversalClient
}

var _ event.Dispatcher = (*Dispatcher)(nil)

// New returns a Dispatcher that publishes with rdb. The caller owns rdb and
// closes it after the last dispatch.
func New(rdb redis.UniversalClient) *Dispatcher { return &Dispatcher{rdb: rdb} }

// ToUsers publishes the event for every device of each of users.
func (d *Dispatcher) ToUsers(ctx context.Context, users []string, name string, args any) error {
	if len(users) == 0 {
		return checkOnly(name, args)
	}
	return d.publish(ctx, &proto.Dispatch{Event: name, Users: users}, args)
}

// ToConns publishes the event for each of conns.
func (d *Dispatcher) ToConns(ctx context.Context, conns []string, name string, args any) error {
	if len(conns) == 0 {
		return checkOnly(name, args)
	}
	return d.publish(ctx, &proto.Dispatch{Event: name, Conns: conns}, args)
}

// Broadcast publishes the event for every socket of every gateway worker.
func (d *Dispatcher) Broadcast(ctx context.Context, name string, args any) error {
	return d.publish(ctx, &proto.Dispatch{Event: name, Broadcast: true}, args)
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

// publish sends msg with args on proto.Channel using ctx. A failure to reach
// Redis is an *event.Error with code unavailable wrapping the cause, unless
// ctx itself ended, which is returned as the context's error (so a handler
// that ran out of time reports timeout).
func (d *Dispatcher) publish(ctx context.Context, msg *proto.Dispatch, args any) error {
	if !proto.ValidEventName(msg.Event) {
		return fmt.Errorf("dispatch: invalid event name %q", msg.Event)
	}
	raw, err := event.EncodeArgs(args)
	if err != nil {
		return fmt.Errorf("dispatch %s: %w", msg.Event, err)
	}
	msg.Args = raw
	body := proto.AppendDispatch(make([]byte, 0, 128+len(raw)), msg)
	if err := d.rdb.Publish(ctx, proto.Channel, body).Err(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("publish %s: %w", proto.Channel, ctxErr)
		}
		return &event.Error{
			Code:    proto.CodeUnavailable,
			Message: "dispatch unavailable",
			Err:     fmt.Errorf("publish %s: %w", proto.Channel, err),
		}
	}
	return nil
}
