package service

import (
	"context"
	"time"
)

// Redis is probed every redisProbeEvery, each probe given redisProbeLimit:
// an idle handlers-svc (no dispatch to fail) logs Redis going away, and
// coming back, within about two seconds, and /readyz and the /metrics
// scrape, which read the last outcome, tell it as soon.
const (
	redisProbeEvery = time.Second
	redisProbeLimit = time.Second
)

// probeRedis calls probe at once and then every redisProbeEvery until ctx
// is done, and records each outcome with up (not one cut short by ctx,
// which says nothing of Redis). In service, probe is
// dispatch.Dispatcher's Probe, which logs an outage once, as a failed
// dispatch does.
func probeRedis(ctx context.Context, probe func(context.Context) error, up func(bool)) {
	t := time.NewTicker(redisProbeEvery)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, redisProbeLimit)
		err := probe(pctx) // an outage is logged by the dispatcher, once per change
		cancel()
		if ctx.Err() != nil {
			return
		}
		up(err == nil)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
