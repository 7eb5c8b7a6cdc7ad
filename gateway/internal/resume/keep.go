package resume

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// Keep sets the TTL of the metas of the streams of sockets (their users'
// and the broadcast stream's) to Config.MetaTTL, in pipelined batches. The
// scripts refresh a meta only when its stream is read or written, so a user
// connected for longer than the TTL without an event would otherwise lose
// it, and every socket of the user would get a needless resync (store lost
// events) at the next event; likewise every socket for a broadcast after a
// quiet day. A meta that is gone is not made again: its stream starts a
// new epoch at its next read or write, as it must.
func (r *Resumer) Keep(ctx context.Context, sockets []*Socket) error {
	if !r.enabled || len(sockets) == 0 {
		return nil
	}
	seen := make(map[string]struct{}, len(sockets))
	metas := []string{proto.BroadcastMetaKey}
	for _, s := range sockets {
		u := s.conn.User()
		if _, ok := seen[u]; !ok {
			seen[u] = struct{}{}
			metas = append(metas, proto.UserMetaKey(u))
		}
	}
	if err := streams.KeepMetas(ctx, r.rdb, metas, r.cfg.MetaTTL); err != nil {
		return fmt.Errorf("keep the streams' metas: %w", err)
	}
	return nil
}

// keepLoop runs Keep over the sockets that sockets lists about every
// streams.KeepEvery(Config.MetaTTL), until ctx is done. Each wait is
// shortened by up to a quarter at random, so that workers started
// together do not refresh all at once. A round that fails is not retried
// before the next one: a meta outlives several (streams.KeepEvery).
func (r *Resumer) keepLoop(ctx context.Context, sockets func() []*Socket) {
	every := streams.KeepEvery(r.cfg.MetaTTL)
	t := time.NewTimer(keepWait(every))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.Keep(ctx, sockets()); err != nil && ctx.Err() == nil {
			r.log.Warn("cannot refresh the TTL of the held users' stream metadata; trying again at the next round",
				zap.Duration("every", every), zap.Error(err))
		}
		t.Reset(keepWait(every))
	}
}

// keepWait returns every less up to a quarter of it, at random.
func keepWait(every time.Duration) time.Duration {
	if every < 4 {
		return max(every, 1)
	}
	return every - rand.N(every/4)
}
