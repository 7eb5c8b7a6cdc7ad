package fanout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Timing of the stall probe (docs/protocol.md section 4): a subscription
// that stops delivering while its connection stays up (a stalled network
// path, a wedged proxy, a frozen Redis) is noticed ProbeEvery +
// ProbeWithin after the last probe came back, at most 2 s after the stall
// began: the contract's 2 s.
const (
	// ProbeEvery is how often the worker publishes a probe on its own
	// probe channel, which its subscription also listens to.
	ProbeEvery = 500 * time.Millisecond
	// ProbeWithin is how late, past ProbeEvery, the next probe may come
	// back before the subscription counts as stalled.
	ProbeWithin = time.Second
)

// ProbeWith has the Subscriber publish its probes through rdb instead of
// the client it subscribes with (tests put a faulty path in front of the
// subscription only).
func ProbeWith(rdb redis.UniversalClient) Option { return func(s *Subscriber) { s.probe.rdb = rdb } }

// ProbeTiming changes the probe's timing (tests).
func ProbeTiming(every, within time.Duration) Option {
	return func(s *Subscriber) { s.probe.every, s.probe.within = every, within }
}

// Stalls returns how many times the subscription stopped delivering while
// its connection stayed up, and was re-established.
func (s *Subscriber) Stalls() uint64 { return s.stalls.Load() }

// Probed returns the number of the last probe the subscription delivered
// back: it grows every ProbeEvery while the subscription is healthy.
func (s *Subscriber) Probed() uint64 { return s.probe.seen.Load() }

// prober publishes numbered probes through a command connection and
// watches them come back through the subscription.
type prober struct {
	every, within time.Duration
	rdb           redis.UniversalClient
	sent          uint64        // the prober's own
	seen          atomic.Uint64 // the highest probe received, set by the reader
}

// probeChannelName returns a channel no other subscription listens to.
func probeChannelName() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails, per crypto/rand
	return "sb:probe:" + hex.EncodeToString(b[:])
}

// probeSeen records a probe the subscription delivered.
func (s *Subscriber) probeSeen(payload string) {
	n, err := strconv.ParseUint(payload, 10, 64)
	if err != nil {
		return
	}
	for {
		seen := s.probe.seen.Load()
		if n <= seen || s.probe.seen.CompareAndSwap(seen, n) {
			return
		}
	}
}

// current records the PubSub the reader uses now, for the prober to close
// on a stall (nil between connections).
func (s *Subscriber) current(ps *redis.PubSub) {
	s.psMu.Lock()
	defer s.psMu.Unlock()
	s.ps = ps
}

// probeLoop publishes a probe every interval while the subscription is
// live, and when none has come back for ProbeEvery + ProbeWithin declares
// the subscription stalled: not live (so /readyz answers 503), and its
// connection closed, so the reader subscribes anew and the worker fills
// the gap from the streams. That covers a stalled path to Redis (probes
// accepted, never delivered) and a Redis that stopped answering (probes
// not even accepted), which the reader alone would notice only after
// healthInterval.
func (s *Subscriber) probeLoop(ctx context.Context) {
	t := time.NewTicker(s.probe.every)
	defer t.Stop()
	var heard time.Time // when a probe last came back, or the watch began
	var seen uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.live.Load() {
			heard = time.Time{} // a new subscription starts a new watch
			continue
		}
		now := time.Now()
		if n := s.probe.seen.Load(); n != seen || heard.IsZero() {
			seen, heard = n, now
		}
		if silent := now.Sub(heard); silent > s.probe.every+s.probe.within {
			s.stalled(silent)
			heard = time.Time{}
			continue
		}
		s.probe.sent++
		pctx, cancel := context.WithTimeout(ctx, s.probe.every)
		_ = s.probe.rdb.Publish(pctx, s.probeChannel, strconv.FormatUint(s.probe.sent, 10)).Err()
		cancel()
	}
}

// stalled takes down a subscription that stopped delivering.
func (s *Subscriber) stalled(silent time.Duration) {
	s.stalls.Add(1)
	s.live.Store(false)
	s.log.Error("redis subscription stalled: a probe did not come back; reconnecting",
		zap.Duration("silent", silent), zap.String("probe_channel", s.probeChannel))
	s.psMu.Lock()
	ps := s.ps
	s.psMu.Unlock()
	if ps != nil {
		_ = ps.Close() // the reader's Receive fails, and it subscribes anew
	}
}

// psState is the reader's current connection, shared with the prober.
type psState struct {
	psMu sync.Mutex
	ps   *redis.PubSub
}
