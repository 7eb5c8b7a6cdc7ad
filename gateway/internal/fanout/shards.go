package fanout

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/internal/backoff"
	"github.com/switchboard/switchboard/proto"
)

// On a Redis Cluster, per-user mode's user channels are sharded channels
// (SSUBSCRIBE), each served by the master of its slot: a user's channel
// is in the slot of its partition (proto.PartitionOf), beside its
// streams. A sharded subscription lives on one node, so the Subscriber
// keeps one per partition (a shard), each with its own reader, probe and
// (un)subscription writer, besides the classic one of the shared channel,
// which any node relays. Each shard's probe is a sharded channel in its
// partition's slot, published with SPUBLISH: a shard that stops delivering
// (its connection stalled or killed, its master failed over) is noticed
// like the shared channel's subscription, Live is false until it is back,
// and OnSubscribed has the worker heal from the streams after it is
// re-established. When the node unsubscribes a channel nobody asked to
// leave (its slot moved, or the node is no longer a master), the shard
// makes its subscription anew at the slot's current master.

// shard is one partition's sharded subscription.
type shard struct {
	line
	part  int
	users *userSubs
	// Owned by the shard's reader.
	down    bool
	lostAt  time.Time
	wasLive bool // established once: until then a failure is not a loss (Subscriber.wasLive)
}

// errSlotMoved ends a shard's connection whose node unsubscribed a
// channel it still wanted.
var errSlotMoved = errors.New("redis cluster node unsubscribed a sharded channel (its slot moved, or a failover)")

// shardUsers moves the user channels of per-user mode to one shard per
// partition, for a Redis Cluster.
func (s *Subscriber) shardUsers() {
	s.shards = make([]*shard, proto.Partitions)
	for p := range s.shards {
		sh := &shard{part: p, users: &userSubs{linger: s.users.linger, sharded: true, byChan: map[string]*userSub{},
			idle: map[*userSub]struct{}{}, wake: make(chan struct{}, 1)}}
		sh.probe = prober{every: s.probe.every, within: s.probe.within, rdb: s.probe.rdb}
		sh.probeChannel = probeChannelName("sb:{" + proto.PartitionTag(p) + "}:")
		sh.sharded = true
		sh.name = "partition " + strconv.Itoa(p)
		s.shards[p] = sh
	}
	s.users = nil
}

// readShard is a shard's reader: like read, each connection a PubSub of
// its own, made anew after a loss or a stall, until ctx is done.
func (s *Subscriber) readShard(ctx context.Context, sh *shard) {
	bo := backoff.Backoff{Min: minBackoff, Max: maxBackoff}
	for ctx.Err() == nil {
		// The probe channel first: the PubSub binds to the node that
		// serves its slot, the partition's.
		ps := s.rdb.SSubscribe(ctx, sh.probeChannel)
		sh.current(ps)
		stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
		err := s.receiveShard(ctx, sh, ps, &bo)
		stop()
		sh.current(nil)
		sh.users.detach()
		_ = ps.Close()
		if ctx.Err() != nil {
			return
		}
		sh.live.Store(false)
		if !sh.down && !sh.wasLive {
			sh.down, sh.lostAt = true, time.Now()
			s.log.Warn("redis not reachable yet for a sharded subscription, subscribing in the background",
				zap.String("line", sh.name), zap.Error(err))
		} else if !sh.down {
			sh.down, sh.lostAt = true, time.Now()
			s.log.Error("redis sharded subscription lost, retrying; what is published until it is restored is filled from the streams then",
				zap.String("line", sh.name), zap.Error(err))
		}
		if cc, ok := s.rdb.(*redis.ClusterClient); ok {
			// The slot may have a new master (a failover): ask the
			// cluster before the next connection picks a node.
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			cc.ReloadState(rctx)
			cancel()
		}
		if !bo.Wait(ctx) {
			return
		}
	}
}

// receiveShard subscribes ps to every user channel of the shard wanted,
// and queues what arrives, until the connection fails or is closed. The
// subscription counts as established when the last of those (or the
// probe channel, without any) is confirmed.
func (s *Subscriber) receiveShard(ctx context.Context, sh *shard, ps *redis.PubSub, bo *backoff.Backoff) error {
	last := sh.probeChannel
	chans := sh.users.attach(ps)
	if err := batched(chans, func(c []string) error { return ps.SSubscribe(ctx, c...) }); err != nil {
		return err
	}
	if len(chans) > 0 {
		last = chans[len(chans)-1]
	}
	established := false
	for {
		msg, err := nextMessage(ctx, ps)
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Channel == sh.probeChannel {
				if m.Kind == "sunsubscribe" {
					return errSlotMoved
				}
			} else if !sh.users.confirmed(m.Kind, m.Channel) {
				return errSlotMoved
			}
			if m.Kind == "ssubscribe" && m.Channel == last && !established {
				established = true
				s.shardSubscribed(sh, bo)
			}
		case *redis.Message:
			if m.Channel == sh.probeChannel {
				sh.probeSeen(m.Payload)
				continue
			}
			s.enqueue(ctx, &sh.line, m.Payload)
		}
	}
}

// shardSubscribed records a shard's confirmed subscription: live again,
// and the worker told, so it fills what the shard's channels carried while
// nothing listened.
func (s *Subscriber) shardSubscribed(sh *shard, bo *backoff.Backoff) {
	sh.live.Store(true)
	bo.Reset()
	if s.onSubscribed != nil {
		s.onSubscribed()
	}
	first := !sh.wasLive
	sh.wasLive = true
	if !sh.down || first {
		sh.down = false
		s.log.Info("redis sharded subscription established", zap.String("line", sh.name))
		return
	}
	s.resubs.Add(1)
	d := time.Since(sh.lostAt)
	if s.onRestored != nil {
		s.onRestored(d)
	}
	s.log.Warn("redis sharded subscription restored; what was published while it was down is filled from the streams",
		zap.String("line", sh.name), zap.Duration("down", d))
	sh.down = false
}
