package streams

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeepEvery returns how often a holder of sockets refreshes the metas of
// their streams (KeepMetas) for them to be kept for ttl: an eighth of it,
// every 3 hours for MetaTTL. A meta is otherwise refreshed only by the
// scripts, at every read and write of its stream, so a user connected
// longer than ttl without an event would find it gone and get a new epoch,
// a needless "store lost events", at the next event. Refreshed that often,
// a meta outlives seven rounds that fail (Redis unreachable) in a row.
func KeepEvery(ttl time.Duration) time.Duration { return ttl / 8 }

// KeepMetas sets the TTL of each meta key in metas to ttl, in pipelined
// batches; on a Redis Cluster (rdb a *redis.ClusterClient) each batch is
// split by node, as a pipeline of keys of many slots is. A meta that is
// gone stays gone (PEXPIRE on a missing key does nothing): the next script
// to touch its stream starts a new epoch, as it must. It writes nothing
// else, and sets the TTL as the scripts do, to ttl from now.
func KeepMetas(ctx context.Context, rdb redis.Cmdable, metas []string, ttl time.Duration) error {
	for start := 0; start < len(metas); start += sweepBatch {
		end := min(start+sweepBatch, len(metas))
		pipe := rdb.Pipeline()
		for _, k := range metas[start:end] {
			pipe.PExpire(ctx, k, ttl)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}
