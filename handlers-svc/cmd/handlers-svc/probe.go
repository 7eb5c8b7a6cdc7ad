package main

import (
	"context"
	"time"
)

// Redis is probed every redisProbeEvery, each probe given redisProbeLimit:
// an idle handlers-svc (no dispatch to fail) logs Redis going away, and
// coming back, within about two seconds.
const (
	redisProbeEvery = time.Second
	redisProbeLimit = time.Second
)

// probeRedis calls probe (dispatch.Dispatcher's Probe, which logs an
// outage once, as a failed dispatch does) every redisProbeEvery until ctx
// is done.
func probeRedis(ctx context.Context, probe func(context.Context) error) {
	t := time.NewTicker(redisProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, redisProbeLimit)
		_ = probe(pctx) // its outcome is logged by the dispatcher, once per change
		cancel()
	}
}
