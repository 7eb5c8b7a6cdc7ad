package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// Workers counts the gateway workers subscribed to the dispatch channels,
// by fan-out mode. Every worker subscribes to proto.Channel; one in
// FANOUT_MODE=per_user also to proto.PerUserMarkerChannel, on which
// nothing is published, so the difference of the two counts is the
// workers in shared mode.
type Workers struct {
	Shared  int64 // workers in FANOUT_MODE=shared
	PerUser int64 // workers in FANOUT_MODE=per_user
}

// ErrFanoutMismatch is wrapped by CheckFanout's error when gateway workers
// run a fan-out mode that loses the Dispatcher's dispatches to users.
var ErrFanoutMismatch = errors.New("fan-out mode mismatch")

// CountWorkers returns the gateway workers subscribed now to rdb's
// dispatch channels, by mode (PUBSUB NUMSUB; on a Redis Cluster, whose
// nodes count only their own subscribers, summed over every node).
func CountWorkers(ctx context.Context, rdb redis.UniversalClient) (Workers, error) {
	n, err := numSub(ctx, rdb, proto.Channel, proto.PerUserMarkerChannel)
	if err != nil {
		return Workers{}, fmt.Errorf("count gateway workers: %w", err)
	}
	perUser := n[proto.PerUserMarkerChannel]
	return Workers{Shared: max(n[proto.Channel]-perUser, 0), PerUser: perUser}, nil
}

// CheckFanout checks that the gateway workers subscribed now receive d's
// dispatches, and returns their count by mode. With Options.PerUser, a
// worker in FANOUT_MODE=shared reads only the shared channel, so its
// sockets get none of d's dispatches to users: the error wraps
// ErrFanoutMismatch and names how many there are. Without PerUser every
// worker reads the shared channel, whatever its mode, so nothing is lost
// and there is no error. A failure to reach Redis is an *event.Error with
// code unavailable. handlers-svc runs the same check every 10 s in
// per_user mode (docs/operations.md, "Fan-out modes"); a backend calls it
// at start-up, and as often as it likes after.
//
// No gateway worker at all is no error (Workers{}, nil): backends and
// gateways start in no set order, so none yet is normal at start-up,
// and with none there is no mode to mismatch (dispatches meanwhile reach
// no socket, and Dispatcher.Unheard counts them). A backend that must
// not start before the gateways checks Shared+PerUser itself; one that
// starts first calls CheckFanout again later, as handlers-svc does, to
// catch a shared worker that comes after it.
func (d *Dispatcher) CheckFanout(ctx context.Context) (Workers, error) {
	w, err := CountWorkers(ctx, d.pub.rdb)
	if err != nil {
		if ctx.Err() != nil {
			return w, err
		}
		return w, &event.Error{Code: proto.CodeUnavailable, Message: "fan-out check unavailable", Err: err}
	}
	if d.perUser && w.Shared > 0 {
		return w, fmt.Errorf("%w: %d gateway workers run FANOUT_MODE=shared while this Dispatcher publishes per user (Options.PerUser): their sockets get no dispatch to their users; set FANOUT_MODE=per_user on every gateway, or PerUser false",
			ErrFanoutMismatch, w.Shared)
	}
	return w, nil
}

// numSub returns PUBSUB NUMSUB of channels. A Redis Cluster node counts
// only the subscribers connected to it (a PUBLISH reaches every node's),
// so on a cluster it is the sum over every node.
func numSub(ctx context.Context, rdb redis.UniversalClient, channels ...string) (map[string]int64, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb.PubSubNumSub(ctx, channels...).Result()
	}
	var mu sync.Mutex
	sum := make(map[string]int64, len(channels))
	err := cc.ForEachShard(ctx, func(ctx context.Context, node *redis.Client) error {
		n, err := node.PubSubNumSub(ctx, channels...).Result()
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for ch, k := range n {
			sum[ch] += k
		}
		return nil
	})
	return sum, err
}
