package dispatch

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/proto"
)

// Probe checks that Redis answers where d's dispatches go and records the
// outcome as a dispatch's is: with LogOutages, an outage is logged once,
// when it begins and when it ends, whether a dispatch or a probe finds it
// first. A service that may sit idle calls it every second or two, so that
// Redis going away is in its log before the first dispatch fails. On one
// Redis it is a PING; on a Redis Cluster one read of each partition's run
// key, in one pipeline, so that a master that is down is found, and
// logged, for the partitions it serves. It returns the first failure, or
// nil; a probe cut short by ctx records nothing.
func (d *Dispatcher) Probe(ctx context.Context) error {
	rdb := d.pub.rdb
	if !d.cluster {
		err := rdb.Ping(ctx).Err()
		d.probed(ctx, err, 1)
		if err != nil {
			return fmt.Errorf("probe redis: %w", err)
		}
		return nil
	}
	cmds := make([]*redis.IntCmd, proto.Partitions)
	pipe := rdb.Pipeline()
	for p := range proto.Partitions {
		cmds[p] = pipe.Exists(ctx, proto.RunKey(p))
	}
	_, first := pipe.Exec(ctx)
	// One record of each outcome, so that a master down is one line
	// naming its partitions.
	var up, down uint32
	for p, cmd := range cmds {
		if cmd.Err() == nil {
			up |= d.outageBit(p)
		} else {
			down |= d.outageBit(p)
		}
	}
	if up != 0 {
		d.probed(ctx, nil, up)
	}
	if down != 0 {
		d.probed(ctx, first, down)
	}
	if first != nil {
		return fmt.Errorf("probe redis: %w", first)
	}
	return nil
}

// probed records the outcome of a probe of the parts of Redis in bits. A
// probe's own deadline passing is an outage (Redis hangs); ctx ending is
// the caller giving up, which says nothing of Redis.
func (d *Dispatcher) probed(ctx context.Context, err error, bits uint32) {
	switch {
	case err == nil:
		d.reached(bits)
	case ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded):
		d.unreachable(bits, err)
	}
}
