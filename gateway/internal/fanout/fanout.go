// Package fanout owns a worker's Redis subscription to the dispatch channel
// (PROTOCOL section 4) and feeds every dispatch to the local sockets. One
// goroutine, the one running Run, owns the subscription; it resubscribes by
// itself after Redis goes away and comes back.
package fanout

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/proto"
)

// Deliverer takes decoded dispatches; Deliver must not block.
type Deliverer interface {
	Deliver(d *proto.Dispatch) int
}

// Retry bounds of the resubscribe back-off, and how long the channel may be
// quiet before the connection is checked with a PING.
const (
	healthInterval = 15 * time.Second
	minBackoff     = 50 * time.Millisecond
	maxBackoff     = 2 * time.Second
)

// Subscriber reads the dispatch channel and delivers each message.
type Subscriber struct {
	rdb  *redis.Client
	to   Deliverer
	log  *zap.Logger
	live atomic.Bool
}

// New returns a Subscriber reading from rdb and delivering to to.
func New(rdb *redis.Client, to Deliverer, log *zap.Logger) *Subscriber {
	return &Subscriber{rdb: rdb, to: to, log: log}
}

// Live reports whether the subscription is currently established.
func (s *Subscriber) Live() bool { return s.live.Load() }

// Run subscribes and delivers until ctx is done. Losing Redis is logged once
// and recovery once; in between it retries with back-off.
func (s *Subscriber) Run(ctx context.Context) error {
	ps := s.rdb.Subscribe(ctx)
	defer ps.Close()
	// A blocked Receive does not watch ctx; closing the PubSub ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	// Subscribe with no channel returns at once; subscribing through the
	// PubSub makes it resubscribe after every reconnect.
	backoff := minBackoff
	subscribed := false
	down := false
	for ctx.Err() == nil {
		if !subscribed {
			if err := ps.Subscribe(ctx, proto.Channel); err != nil {
				s.lost(&down, err)
				if !sleep(ctx, &backoff) {
					break
				}
				continue
			}
			subscribed = true
		}
		msg, err := ps.ReceiveTimeout(ctx, healthInterval)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Quiet channel: check that the connection still works, so
				// a Redis that vanished without a reset is noticed.
				if err = ps.Ping(ctx); err == nil {
					continue
				}
			}
			s.lost(&down, err)
			if !sleep(ctx, &backoff) {
				break
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == proto.Channel {
				s.live.Store(true)
				backoff = minBackoff
				if down {
					s.log.Info("redis subscription restored", zap.String("channel", proto.Channel))
					down = false
				} else {
					s.log.Info("redis subscribed", zap.String("channel", proto.Channel))
				}
			}
		case *redis.Message:
			s.deliver(m.Payload)
		}
	}
	s.live.Store(false)
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	return ctx.Err()
}

func (s *Subscriber) lost(down *bool, err error) {
	s.live.Store(false)
	if !*down {
		s.log.Error("redis subscription lost, retrying", zap.Error(err))
		*down = true
	}
}

func (s *Subscriber) deliver(payload string) {
	d, err := proto.DecodeDispatch([]byte(payload))
	if err != nil {
		s.log.Warn("dropping malformed dispatch", zap.Error(err), zap.Int("bytes", len(payload)))
		return
	}
	s.to.Deliver(&d)
}

func sleep(ctx context.Context, backoff *time.Duration) bool {
	t := time.NewTimer(*backoff)
	defer t.Stop()
	*backoff = min(*backoff*2, maxBackoff)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
