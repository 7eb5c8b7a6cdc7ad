// Package modecheck watches, for a handlers-svc that publishes per user
// (FANOUT_MODE=per_user), that every gateway worker subscribed to the
// shared channel runs per_user too. A worker left in shared mode reads
// only the shared channel, so its sockets get no dispatch to their users,
// and no PUBLISH shows it (a user channel nobody hears is an offline user,
// which is normal). Workers in per_user mode subscribe to
// proto.PerUserMarkerChannel as well: the difference of the two channels'
// subscriber counts is the number of workers in the wrong mode
// (dispatch.CountWorkers, which other Go backends call through
// dispatch.Dispatcher.CheckFanout).
package modecheck

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
)

// Checker counts the gateway workers subscribed in shared mode.
type Checker struct {
	rdb    redis.UniversalClient
	log    *zap.Logger
	shared atomic.Int64
	warned bool // the last check logged a mismatch (used by Run only)
}

// New returns a Checker that asks rdb and logs on log.
func New(rdb redis.UniversalClient, log *zap.Logger) *Checker {
	return &Checker{rdb: rdb, log: log}
}

// Shared returns how many gateway workers the last check found subscribed
// in shared mode: 0 when all run per_user (or none runs).
func (c *Checker) Shared() int64 { return c.shared.Load() }

// Check asks Redis once and records the answer; it logs an error when
// workers in shared mode appear and an info line when they are gone,
// once per change.
func (c *Checker) Check(ctx context.Context) error {
	w, err := dispatch.CountWorkers(ctx, c.rdb)
	if err != nil {
		return err
	}
	shared := w.Shared
	c.shared.Store(shared)
	switch {
	case shared > 0 && !c.warned:
		c.warned = true
		c.log.Error("gateway workers run FANOUT_MODE=shared while handlers-svc publishes per user: their sockets get no dispatch to their users; set FANOUT_MODE=per_user on every gateway",
			zap.Int64("shared_workers", shared))
	case shared == 0 && c.warned:
		c.warned = false
		c.log.Info("every gateway worker runs FANOUT_MODE=per_user again")
	}
	return nil
}

// Run checks every interval until ctx ends; a failed check (Redis
// unreachable, reported elsewhere) keeps the last answer.
func (c *Checker) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		_ = c.Check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
