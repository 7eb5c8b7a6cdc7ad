package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/switchboard/switchboard/proto"
)

// Probe checks that Redis answers where d's dispatches go and records the
// outcome as a dispatch's is: with LogOutages, an outage is logged once,
// when it begins and when it ends, whether a dispatch or a probe finds it
// first. A service that may sit idle calls it every second or two, so that
// Redis going away is in its log before the first dispatch fails. On one
// Redis it is a PING; on a Redis Cluster one read of each partition's run
// key, all sent at once, so that a master that is down is found, and
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
	// Each read on its own, all at once, not in one pipeline: go-redis
	// fails every command of a cluster pipeline when ctx ends in its retry
	// back-off, those the live masters answered too, so a master down
	// would take every partition down with it at each probe.
	errs := make([]error, proto.Partitions)
	var wg sync.WaitGroup
	for p := range proto.Partitions {
		wg.Go(func() { errs[p] = rdb.Exists(ctx, proto.RunKey(p)).Err() })
	}
	wg.Wait()
	// One record of each outcome, so that a master down is one line
	// naming its partitions.
	var up, down uint32
	var first error
	for p, err := range errs {
		if err == nil {
			up |= d.outageBit(p)
		} else {
			down |= d.outageBit(p)
			if first == nil {
				first = err
			}
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
